"""Staff see the fleet move (`TechnicianLocationUpdated` from the gateway's positions,
at most one per technician per second, the newest last) and the engine's geofence events;
a customer sees `LocationUpdated` of its own request only; nobody sees another tenant's."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import redis.asyncio as aioredis

from api.principal import Role
from devices.fix import Fix
from gateway.sinks.live import LiveWriter
from tests.support.api import Tenant, add_device
from tests.support.engine import xadd_event
from tests.support.realtime import ApiProcess, connect, create_request, raw_token

FIXES = 6


async def test_staff_see_the_fleet_move_throttled_per_technician(
    apis: list[ApiProcess],
    http: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(http, "acme")
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await add_device(pg, device, "acme")
    technician_id, _ = await acme.technician(device_id=device)
    customer_id, _, _ = await acme.customer()
    admin = await connect(apis[1].ws, raw_token(Role.ADMIN, "a", "acme"))
    other_tenant = await connect(apis[0].ws, raw_token(Role.ADMIN, "a", "beta"))
    customer = await connect(apis[0].ws, raw_token(Role.CUSTOMER, customer_id, "acme"))
    writer = LiveWriter(redis_client, redis_prefix)
    start = datetime.now(UTC)
    # The first fix of a device new to the API's map: it reloads the map (at most once a
    # second) and sends it.
    first = Fix(device_id=device, tenant_id="acme", time=start - timedelta(seconds=1),
                lat=39.0, lon=-74.0, received_at=start)  # fmt: skip
    await writer.write([first], [first])
    await admin.event("TechnicianLocationUpdated", lat=39.0, timeout_s=5)
    await asyncio.sleep(1.1)
    admin.messages.clear()
    fixes = [
        Fix(device_id=device, tenant_id="acme", time=start + timedelta(seconds=i),
            lat=40.0 + i * 1e-3, lon=-74.0, heading=90.0, speed=12.5, received_at=start)
        for i in range(FIXES)
    ]  # fmt: skip
    for fix in fixes:  # six fixes within about 0.3 s
        await writer.write([fix], [fix])
        await asyncio.sleep(0.05)
    last = await admin.event("TechnicianLocationUpdated", lat=fixes[-1].lat, timeout_s=5)
    await asyncio.sleep(1.2)
    moves = admin.events("TechnicianLocationUpdated")
    # Throttled: the first at once, the newest held for its second, nothing in between.
    assert 1 < len(moves) <= 3
    assert moves[-1] == last
    assert last["id"] is None
    assert last["data"] == {
        "technicianId": technician_id,
        "deviceId": device,
        "lat": fixes[-1].lat,
        "lon": -74.0,
        "heading": 90.0,
        "speed": 12.5,
        "availability": "Available",
        "time": fixes[-1].time.isoformat(),
    }
    assert not other_tenant.events("TechnicianLocationUpdated")
    assert not customer.events("TechnicianLocationUpdated")
    for client in (admin, other_tenant, customer):
        await client.close()


async def test_engine_events_reach_admins_and_the_request(
    apis: list[ApiProcess],
    http: httpx.AsyncClient,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(http, "acme")
    service = await acme.service()
    me, vehicle, headers = await acme.customer()
    other, _, _ = await acme.customer()
    request_id = await create_request(http, vehicle, service, headers)
    admin = await connect(apis[0].ws, raw_token(Role.DISPATCHER, "d", "acme"))
    beta = await connect(apis[1].ws, raw_token(Role.ADMIN, "a", "beta"))
    mine = await connect(apis[1].ws, raw_token(Role.CUSTOMER, me, "acme"))
    theirs = await connect(apis[0].ws, raw_token(Role.CUSTOMER, other, "acme"))
    now = datetime.now(UTC).isoformat()
    # Engine-shaped events (the contract's fields), as the position engine writes them.
    fence = {"type": "geofence_enter", "id": str(uuid.uuid4()), "tenant": "acme",
             "device": "dev-x", "geofence": "depot", "fix_time": now, "detected_at": now}  # fmt: skip
    trip = {"type": "trip_update", "id": str(uuid.uuid4()), "tenant": "acme", "device": "dev-x",
            "trip": str(uuid.uuid4()), "ref": request_id, "fix_time": now, "detected_at": now,
            "distance_m": 1500.0, "eta_s": 240, "calculation": "local", "polyline": "_p~iF~ps|U",
            "polyline_version": 3, "queue": []}  # fmt: skip
    for event in (fence, trip):
        await xadd_event(redis_client, redis_prefix, event)
    got = await admin.event("geofence_enter", geofence="depot")
    assert got["data"] == fence
    update = await mine.event("LocationUpdated", serviceRequestInfo__requestId=request_id)
    assert update["data"]["etaInSec"] == 240
    assert update["data"]["encodedPolyline"] == "_p~iF~ps|U"
    await asyncio.sleep(0.5)
    assert not beta.messages and not theirs.messages
    assert not mine.events("geofence_enter")
    assert not admin.events("LocationUpdated")  # Request group only (docs/dispatch.md)
    for client in (admin, beta, mine, theirs):
        await client.close()
