"""Redis killed with SIGKILL and restarted (from its append-only file) under a steady MQTT
QoS 1 load, with a gateway, an engine and an API process running: each says not ready
while Redis is away and ready after, without a restart of its own; no acknowledged fix is
lost or stored twice; a device that drove into a fence while Redis was away gets exactly
one enter event, one that stayed inside none more, one that stayed outside none."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from contracts.keys import Keys
from devtools.stack.native import NativeStack
from tests.fault.test_faults import assert_exactly_once, base_time, topic
from tests.support.engine import EngineProcess, fixgate
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import NumberedPublisher, register_fleet
from tests.support.realtime import api_processes

pytestmark = pytest.mark.fault

FENCE = (47.0, 8.0)
"""A circle of `RADIUS_M` around it."""
RADIUS_M = 300
START_M = 550.0
"""dev-1 starts this far north of the fence's centre and drives south at `SPEED_MPS`,
entering (past its edge by more than the fix's assumed 10 m error) at about 10.4 s."""
SPEED_MPS = 25.0
OUTSIDE_M = 600.0
"""dev-2 stays this far north."""
M_PER_DEG_LAT = 111_200.0
RATE = 20
"""Fixes per second per device."""
COUNT = 500
"""25 s of fixes per device."""
KILL_AT_S, CROSS_AT_S, RESTART_AT_S = 6.0, 10.0, 13.0


class Fleet(NumberedPublisher):
    """dev-0 stays inside the fence, dev-1 drives into it after `CROSS_AT_S` (while Redis
    is away), dev-2 stays outside; numbered fixes at `RATE` per second."""

    FIXES_PER_S = RATE

    def payload(self, n: int, device: str) -> bytes:
        north_m = {
            "dev-0": 0.0,
            "dev-1": max(0.0, START_M - SPEED_MPS * n / RATE),
            "dev-2": OUTSIDE_M,
        }[device]
        lat = FENCE[0] + north_m / M_PER_DEG_LAT + (n % 7) * 1e-6  # a little jitter
        at = (self.base + timedelta(seconds=n / RATE)).isoformat().replace("+00:00", "Z")
        return json.dumps({"time": at, "lat": lat, "lon": FENCE[1], "speed": 0.5}).encode()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _events(redis_url: str, prefix: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries = [e for s in Keys(prefix).all_events() for e in client.xrange(s)]
    finally:
        client.close()
    return [json.loads(fields[b"event"]) for _, fields in entries]


def _debug(redis_url: str, prefix: str, engine: EngineProcess) -> str:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    lines = [f"events: {[(e['device'], e['type']) for e in _events(redis_url, prefix)]}"]
    for s in keys.all_positions():
        groups = client.xinfo_groups(s) if client.exists(s) else []
        lines.append(f"{s}: len {client.xlen(s)} groups {groups}")
    return "\n".join(lines) + engine.log.read_text()[-1500:]


def _kill_redis(stack: NativeStack) -> None:
    pid = stack.redis_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: stack.redis_pid() is None, 10)


def test_redis_kill_9_and_restart_under_load_every_process_goes_on_by_itself(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url, redis_url, prefix = register_fleet(fault_env)
    point = tmp_path / "fence.geojson"
    point.write_text(json.dumps({"type": "Point", "coordinates": [FENCE[1], FENCE[0]]}))
    fence = fixgate(
        fault_env, "geofence", "add", "--tenant", "acme", "--name", "yard",
        "--radius-m", str(RADIUS_M), str(point),
    )  # fmt: skip
    engine = EngineProcess(fault_env, tmp_path / "engine.log")
    with (
        running_gateway(fault_env, tmp_path) as gw,
        api_processes(1, db_url, redis_url, prefix) as [api],
    ):
        try:
            engine.wait_ready()
            ready = {
                "gateway": f"http://127.0.0.1:{gw.metrics_port}/readyz",
                "engine": f"http://127.0.0.1:{engine.port}/readyz",
                "api": f"{api.http}/readyz",
            }
            pub = Fleet(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time(), devices=3)
            started = time.monotonic()
            pub.start(count=COUNT, rate=RATE)
            time.sleep(KILL_AT_S)
            _kill_redis(fault_stack)
            for name, url in ready.items():
                assert wait_for(lambda url=url: _status(url) == 503, 10), f"{name} still ready"
            time.sleep(max(0.0, RESTART_AT_S - (time.monotonic() - started)))
            fault_stack.start_redis()  # from its append-only file
            for name, url in ready.items():
                assert wait_for(lambda url=url: _status(url) == 200, 30), f"{name} not ready again"
            pub.join()
            for d in range(3):
                assert wait_for(lambda d=d: len(pub.stored(db_url, f"dev-{d}")) == COUNT, 60)

            def enters(device: str) -> list[dict[str, Any]]:
                return [
                    e for e in _events(redis_url, prefix)
                    if e["device"] == device and e.get("geofence") == int(fence)
                ]  # fmt: skip

            assert wait_for(lambda: len(enters("dev-1")) >= 1, 30), _debug(
                redis_url, prefix, engine
            )
            time.sleep(3.0)  # anything more would have come by now
            assert [e["type"] for e in enters("dev-1")] == ["geofence_enter"]
            entered_at = datetime.fromisoformat(
                enters("dev-1")[0]["fix_time"].replace("Z", "+00:00")
            )
            assert entered_at >= pub.base + timedelta(seconds=CROSS_AT_S)
            assert [e["type"] for e in enters("dev-0")] == ["geofence_enter"]  # before the kill
            assert enters("dev-2") == []
            alive = {"gateway": gw.proc, "engine": engine.proc, "api": api.proc}
            assert {name: p.poll() for name, p in alive.items()} == dict.fromkeys(alive)
        finally:
            engine.stop()
    for d in range(3):
        assert_exactly_once(pub, db_url, f"dev-{d}")
