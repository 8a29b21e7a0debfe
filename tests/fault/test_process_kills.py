"""The whole flow through the loss of one process of each kind: two gateways on a shared
MQTT subscription, two engines, two API processes, under a steady MQTT QoS 1 load with
service requests being created; a gateway, an engine and an API process are killed with
SIGKILL in turn and restarted, then Redis is killed with SIGKILL and restarted (from its
AOF), then TimescaleDB is stopped for 3 s. What users see: no acknowledged fix lost or stored twice,
each device's geofence events as one engine would emit them (one enter for the device
that stays inside, one for the device that drives in, none for the one outside), every
request's event reaching a dispatcher's WebSocket exactly once across its reconnect (with
`last_event_id`) to the surviving API process, every request in the state it was made in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.principal import Role
from devtools.stack.native import NativeStack
from tests.fault.test_faults import assert_exactly_once, base_time, topic
from tests.fault.test_redis_restart import FENCE, RADIUS_M, Fleet, _events, _kill_redis
from tests.support.api import Tenant
from tests.support.engine import EngineProcess, fixgate, wait_split
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import register_fleet
from tests.support.realtime import api_processes, connect, create_request, raw_token

pytestmark = pytest.mark.fault

COUNT = 600
"""30 s of fixes per device at the fleet's 20 per second."""
KILL_GATEWAY_AT_S, KILL_ENGINE_AT_S, KILL_API_AT_S = 3.0, 8.0, 14.0
KILL_REDIS_AT_S, REDIS_BACK_AT_S = 18.0, 21.0
STOP_DATABASE_AT_S, DATABASE_BACK_AT_S = 23.0, 26.0


async def test_one_gateway_engine_and_api_killed_in_turn_then_redis_and_the_database(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url, redis_url, prefix = await asyncio.to_thread(register_fleet, fault_env)
    point = tmp_path / "fence.geojson"
    point.write_text(json.dumps({"type": "Point", "coordinates": [FENCE[1], FENCE[0]]}))
    fence = await asyncio.to_thread(
        fixgate, fault_env, "geofence", "add", "--tenant", "acme", "--name", "yard",
        "--radius-m", str(RADIUS_M), str(point),
    )  # fmt: skip
    shared = {**fault_env, "FIXGATE_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:6]}"}
    a_env = {**shared, "FIXGATE_MQTT_CLIENT_ID": f"gw-a-{uuid.uuid4().hex[:6]}"}
    b_env = {**shared, "FIXGATE_MQTT_CLIENT_ID": f"gw-b-{uuid.uuid4().hex[:6]}"}
    a_spool = str(tmp_path / "spool-a")
    engines = [EngineProcess(fault_env, tmp_path / f"engine-{n}.log") for n in range(2)]
    created: list[str] = []
    with contextlib.ExitStack() as stack:
        gateway_a = stack.enter_context(running_gateway(a_env, tmp_path, spool_dir=a_spool))
        stack.enter_context(running_gateway(b_env, tmp_path))
        doomed_api, api = stack.enter_context(api_processes(2, db_url, redis_url, prefix))
        try:
            for engine in engines:
                await asyncio.to_thread(engine.wait_ready)
            await wait_split(*engines)
            admin_token = raw_token(Role.ADMIN, "dispatcher", "acme")
            async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
                acme = Tenant(http, "acme")
                service = await acme.service()
                _, vehicle, customer = await acme.customer()
                watcher = await connect(doomed_api.ws, admin_token)
                pub = Fleet(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time(), devices=3)
                started = time.monotonic()
                pub.start(count=COUNT, rate=20)

                async def requests() -> None:
                    """One every half second; refused ones (503 while a service is away)
                    were not made, and say so."""
                    while time.monotonic() - started < COUNT / 20 - 2:
                        with contextlib.suppress(AssertionError, httpx.HTTPError):
                            created.append(await create_request(http, vehicle, service, customer))
                        await asyncio.sleep(0.5)

                making = asyncio.create_task(requests())

                async def at(seconds: float) -> None:
                    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))

                await at(KILL_GATEWAY_AT_S)
                os.kill(gateway_a.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(gateway_a.proc.wait, 10)
                stack.enter_context(running_gateway(a_env, tmp_path, spool_dir=a_spool))
                await at(KILL_ENGINE_AT_S)
                await asyncio.to_thread(engines[0].kill)
                engines[0] = EngineProcess(fault_env, tmp_path / "engine-0b.log")
                await asyncio.to_thread(engines[0].wait_ready)
                await at(KILL_API_AT_S)
                os.kill(doomed_api.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(doomed_api.proc.wait, 10)
                await asyncio.wait_for(watcher.closed.wait(), 10)
                before = list(watcher.messages)
                watcher = await connect(api.ws, admin_token, last_event_id=watcher.last_id)
                stack.enter_context(api_processes(1, db_url, redis_url, prefix))
                await at(KILL_REDIS_AT_S)
                await asyncio.to_thread(_kill_redis, fault_stack)
                await at(REDIS_BACK_AT_S)
                await asyncio.to_thread(fault_stack.start_redis)  # from its AOF
                await at(STOP_DATABASE_AT_S)
                await asyncio.to_thread(fault_stack.stop_pg)
                await at(DATABASE_BACK_AT_S)
                await asyncio.to_thread(fault_stack.start_pg)
                await making
                await asyncio.to_thread(pub.join)

                def made(messages: list[dict[str, Any]]) -> set[str]:
                    return {
                        m["data"]["requestId"] for m in messages
                        if m["event"] == "new_service_request"
                    }  # fmt: skip

                await watcher.wait_for(lambda got: set(created) <= made(before + got), 30)
                seen = [
                    m["data"]["requestId"] for m in before + watcher.messages
                    if m["event"] == "new_service_request"
                ]  # fmt: skip
                states = {
                    (
                        await http.get(f"/service-request/{rid}", headers=_bearer(admin_token))
                    ).json()["data"]["requestStatus"]
                    for rid in created
                }
                await watcher.close()
            for d in range(3):
                assert await asyncio.to_thread(
                    wait_for, lambda d=d: len(pub.stored(db_url, f"dev-{d}")) == COUNT, 60
                )

            def enters(device: str) -> list[str]:
                return [
                    e["type"] for e in _events(redis_url, prefix)
                    if e["device"] == device and e.get("geofence") == int(fence)
                ]  # fmt: skip

            assert await asyncio.to_thread(wait_for, lambda: enters("dev-1"), 30)
            await asyncio.sleep(3.0)  # anything more would have come by now
            fence_events = {d: enters(d) for d in ("dev-0", "dev-1", "dev-2")}
        finally:
            for engine in engines:
                engine.stop()
    assert fence_events == {"dev-0": ["geofence_enter"], "dev-1": ["geofence_enter"], "dev-2": []}
    assert len(created) > 20
    assert sorted(seen) == sorted(created), "a request's event was lost or delivered twice"
    assert states <= {"Ringing", "Pending"}, states
    for d in range(3):
        assert_exactly_once(pub, db_url, f"dev-{d}")


def _bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}
