"""The ring through the running app: phases by distance, who is left out, the timeout to
Pending, a restart mid-ring and two API instances on one database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from tests.support.api import (
    Tenant,
    add_device,
    dispatch_events,
    eventually,
    miles_north,
    place,
    running_app,
)

ORIGIN = (40.7128, -74.0060)
FAST = {"ring_phase_s": 1.0, "ring_poll_s": 0.05}


async def _technician(
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    prefix: str,
    miles: float,
    availability: str = "Available",
    age_s: float = 0,
) -> str:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await add_device(pg, device, acme.name)
    await place(redis_client, prefix, device, acme.name, *miles_north(*ORIGIN, miles), age_s=age_s)
    technician_id, _ = await acme.technician(device_id=device, availability=availability)
    return technician_id


async def _create(client: httpx.AsyncClient, acme: Tenant) -> str:
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    response = await client.post(
        "/service-request",
        json={
            "vehicleId": vehicle_id,
            "latitude": ORIGIN[0],
            "longitude": ORIGIN[1],
            "services": [service],
        },
        headers=customer,
    )
    assert response.status_code == 200, response.text
    request_id: str = response.json()["data"]["requestId"]
    return request_id


async def _pending(pg: asyncpg.Connection, request_id: str) -> bool:
    row = await pg.fetchrow(
        "SELECT requeststatus, ringendtime FROM servicerequests WHERE requestid = $1",
        uuid.UUID(request_id),
    )
    return row is not None and row["requeststatus"] == "Pending" and row["ringendtime"] is not None


async def _ring_log(pg: asyncpg.Connection, request_id: str) -> dict[str, tuple[int, int, int]]:
    rows = await pg.fetch(
        "SELECT technicianid, phase, ringminradius, ringmaxradius FROM technicianringlog"
        " WHERE requestid = $1",
        uuid.UUID(request_id),
    )
    return {
        str(r["technicianid"]): (r["phase"], r["ringminradius"], r["ringmaxradius"]) for r in rows
    }


async def _ring_audit(pg: asyncpg.Connection, request_id: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT action, detail FROM dispatchaudit WHERE requestid = $1"
        " AND action IN ('ring', 'ring_timeout') ORDER BY auditid",
        uuid.UUID(request_id),
    )
    return [
        r["action"] if r["action"] == "ring_timeout" else r["detail"].split(":")[0] for r in rows
    ]


async def test_ring_by_distance_leaves_out_offline_stale_full_and_far(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    async with running_app(make_settings(queue_limit=1, **FAST)) as client:
        acme = Tenant(client, "acme")
        rings = {
            miles: await _technician(acme, pg, redis_client, redis_prefix, miles)
            for miles in (10, 30, 50, 70, 90)
        }
        offline = await _technician(acme, pg, redis_client, redis_prefix, 5, "Offline")
        stale = await _technician(acme, pg, redis_client, redis_prefix, 5, age_s=600)
        full = await _technician(acme, pg, redis_client, redis_prefix, 200)
        first = await _create(client, acme)
        assigned = await client.post(
            "/service-request/assign",
            json={"requestId": first, "technicianId": full},
            headers=acme.admin,
        )
        assert assigned.status_code == 200, assigned.text
        # Now the full technician drives nearby: their queue (limit 1) keeps them out.
        device = (await client.get(f"/technicians/{full}", headers=acme.admin)).json()["data"][
            "deviceId"
        ]
        await place(redis_client, redis_prefix, device, "acme", *miles_north(*ORIGIN, 5))

        request_id = await _create(client, acme)
        await eventually(lambda: _pending(pg, request_id), timeout_s=15)
        log = await _ring_log(pg, request_id)
        assert log == {
            rings[10]: (0, 0, 20),
            rings[30]: (1, 20, 40),
            rings[50]: (2, 40, 60),
            rings[70]: (3, 60, 80),
        }
        for left_out in (rings[90], offline, stale, full):
            assert left_out not in log
        assert await _ring_audit(pg, request_id) == [
            "phase 1",
            "phase 2",
            "phase 3",
            "phase 4",
            "ring_timeout",
        ]
        # Pending after the ring: visible to every technician of the tenant, and acceptable.
        _, far_token = await acme.technician()
        listed = await client.get(
            "/service-requests", params={"requestStatus": "Pending"}, headers=far_token
        )
        assert request_id in [r["requestId"] for r in listed.json()["data"]]


async def test_phases_follow_the_configured_timing(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    async with running_app(make_settings(**FAST)) as client:
        acme = Tenant(client, "acme")
        near = await _technician(acme, pg, redis_client, redis_prefix, 10)
        mid = await _technician(acme, pg, redis_client, redis_prefix, 30)
        request_id = await _create(client, acme)
        await eventually(lambda: _pending(pg, request_id), timeout_s=15)
        rows = await pg.fetch(
            "SELECT technicianid, ringstartedat FROM technicianringlog WHERE requestid = $1",
            uuid.UUID(request_id),
        )
        started = {str(r["technicianid"]): r["ringstartedat"] for r in rows}
        requested = await pg.fetchval(
            "SELECT requestedat FROM servicerequests WHERE requestid = $1", uuid.UUID(request_id)
        )
        # Phase 1 within a second of creation; phase 2 one phase (1 s) later.
        assert (started[near] - requested).total_seconds() < 1.0
        gap = (started[mid] - started[near]).total_seconds()
        assert 0.9 <= gap < 2.0


async def test_rejects_are_recorded_and_when_all_rung_said_no_the_ring_moves_on(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    # Phases of a minute: only the rejects can bring phase 2 this soon.
    async with running_app(make_settings(ring_phase_s=60.0, ring_poll_s=0.05)) as client:
        acme = Tenant(client, "acme")
        tokens: dict[str, dict[str, str]] = {}
        for miles in (5, 10, 30):
            device = f"dev-{uuid.uuid4().hex[:8]}"
            await add_device(pg, device, acme.name)
            await place(redis_client, redis_prefix, device, "acme", *miles_north(*ORIGIN, miles))
            _, tokens[str(miles)] = await acme.technician(device_id=device)
        near, nearer = tokens["10"], tokens["5"]
        request_id = await _create(client, acme)
        await eventually(lambda: _ring_log(pg, request_id))
        first = await _ring_log(pg, request_id)
        assert sorted(p for p, _, _ in first.values()) == [0, 0]
        rejected = await client.put(
            f"/service-request/{request_id}/2", json={"reason": "flat tyre"}, headers=nearer
        )
        assert rejected.status_code == 200, rejected.text
        await asyncio.sleep(0.5)  # one of two said no: phase 2 waits for its time
        assert len(await _ring_log(pg, request_id)) == 2
        rejected = await client.put(
            f"/service-request/{request_id}/2", json={"reason": "off shift"}, headers=near
        )
        assert rejected.status_code == 200, rejected.text

        async def phase_two() -> bool:
            return len(await _ring_log(pg, request_id)) == 3

        await eventually(phase_two, timeout_s=5)
        # The ringing request is still open to the rest: a reject is no state change.
        state = await pg.fetchval(
            "SELECT requeststatus FROM servicerequests WHERE requestid = $1",
            uuid.UUID(request_id),
        )
        assert state == "Ringing"
        engagements = await pg.fetch(
            "SELECT technicianid, reason FROM technicianengagementdetails"
            " WHERE requestid = $1 AND action = 'REJECTED'",
            uuid.UUID(request_id),
        )
        assert sorted(r["reason"] for r in engagements) == ["flat tyre", "off shift"]
        ended = await pg.fetch(
            "SELECT technicianid FROM technicianringlog WHERE requestid = $1 AND phase = 0"
            " AND ringendedat IS NOT NULL",
            uuid.UUID(request_id),
        )
        assert {str(r["technicianid"]) for r in ended} == set(first)
        audited = await pg.fetch(
            "SELECT actorrole, oldstate, newstate, detail FROM dispatchaudit"
            " WHERE requestid = $1 AND action = 'reject' ORDER BY auditid",
            uuid.UUID(request_id),
        )
        assert [tuple(r) for r in audited] == [
            ("technician", "Ringing", "Ringing", "flat tyre"),
            ("technician", "Ringing", "Ringing", "off shift"),
        ]
        # A reject of a request no longer ringing or pending: 409 with its state.
        won = await client.put(f"/service-request/{request_id}/1", json={}, headers=near)
        assert won.status_code == 200, won.text
        late = await client.put(f"/service-request/{request_id}/2", json={}, headers=nearer)
        assert late.status_code == 409, late.text


async def test_a_restart_mid_ring_neither_loses_nor_repeats_a_phase(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    settings = make_settings(ring_phase_s=1.5, ring_poll_s=0.05)
    async with running_app(settings) as client:
        acme = Tenant(client, "acme")
        techs = [
            await _technician(acme, pg, redis_client, redis_prefix, m) for m in (10, 30, 50, 70)
        ]
        request_id = await _create(client, acme)
        await eventually(lambda: _ring_log(pg, request_id))
    assert set(await _ring_log(pg, request_id)) == {techs[0]}
    await asyncio.sleep(2.0)  # the API is down past the next phase's time
    async with running_app(settings):
        await eventually(lambda: _pending(pg, request_id), timeout_s=15)
    log = await _ring_log(pg, request_id)
    assert {t: log[t][0] for t in techs} == {techs[0]: 0, techs[1]: 1, techs[2]: 2, techs[3]: 3}
    assert await _ring_audit(pg, request_id) == [
        "phase 1",
        "phase 2",
        "phase 3",
        "phase 4",
        "ring_timeout",
    ]


async def test_two_api_instances_ring_each_technician_once(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    settings = make_settings(**FAST)
    async with running_app(settings) as one, running_app(settings) as two:
        acme = Tenant(one, "acme")
        techs = [
            await _technician(acme, pg, redis_client, redis_prefix, m)
            for m in (5, 6, 7, 25, 45, 65)
        ]
        requests = [await _create(one if i % 2 else two, acme) for i in range(6)]
        for request_id in requests:
            await eventually(lambda r=request_id: _pending(pg, r), timeout_s=20)
    for request_id in requests:
        log = await _ring_log(pg, request_id)
        assert set(log) == set(techs)
        assert await _ring_audit(pg, request_id) == [
            "phase 1",
            "phase 2",
            "phase 3",
            "phase 4",
            "ring_timeout",
        ]
    notified = await pg.fetchval(
        "SELECT count(*) FROM technicianengagementdetails WHERE action = 'NOTIFIED'"
    )
    assert notified == len(techs) * len(requests)
    # One ring event per phase, addressed to each technician it rang: every technician
    # is notified once per request, by either process.
    notifications = [
        (payload["serviceRequestInfo"]["requestId"], group)
        for name, payload, groups in await dispatch_events(redis_client, redis_prefix)
        if name == "ring_notification_received"
        for group in groups
    ]
    assert sorted(notifications) == sorted(
        (str(r), f"Technician-{t}") for r in requests for t in techs
    )
