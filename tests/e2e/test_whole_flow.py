"""The dispatch happy path through real processes: `fixgate gateway`, `fixgate engine` (on
OSRM) and `fixgate api`, sharing this test's database and Redis prefix. The technician's
device sends NMEA over TCP to the gateway while it drives an OSRM route through Monaco;
the customer and the technician are on /ws.

Also, with the gateway and the engine alone: a pass-by at 60 km/h does not arrive, and a
trip goes on with `local` ETAs after its OSRM is stopped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from api.principal import Role
from contracts.geodesy import haversine_m
from gateway.engine.routing import route
from gateway.engine.trips import start_trip
from geofence.polyline import decode
from tests.support.api import Tenant, eventually
from tests.support.engine import EngineProcess, events
from tests.support.flow import NmeaDevice, Point, along, remaining_m
from tests.support.gateway import GatewayProcess, running_gateway
from tests.support.ingest import register
from tests.support.osrm import own_osrm_routed, stack_extract_points
from tests.support.realtime import api_processes, connected, raw_token
from tests.support.services import Services

TENANT = "acme"
SPEED_MPS = 15.0  # 54 km/h: a van on Monaco's through roads
PASS_BY_MPS = 60 / 3.6
FIX_PAUSE_S = 0.05  # wall time between fixes: 20 s of fix time a second, within the skew
ROUTE_TIMEOUT_S = 5.0
DETOUR_M = 300.0  # off the route by far more than the engine's 50 m margin
ARRIVAL_RADIUS_M = 30.0
MATCH_M = 60.0
"""How close the API's remaining distance must come to ours: OSRM's own route from the
device's first fix, plus the destination's snap to the road, plus NMEA's rounding."""


@pytest.fixture
def gateway(fixgate_env: dict[str, str], tmp_path: Path) -> Iterator[GatewayProcess]:
    # The van's fix time goes on a second per fix, a few fixes per second of wall time: its
    # clock runs minutes ahead of ours by the end, past the default 30 s allowance.
    with running_gateway(fixgate_env, tmp_path, max_clock_skew_s="3600") as gw:
        yield gw


async def _osrm_path(routing_url: str, a: Point, b: Point) -> list[Point]:
    async with httpx.AsyncClient() as client:
        found = await route(client, routing_url, a, b, ROUTE_TIMEOUT_S)
    assert found is not None, "OSRM found no route between the extract's known points"
    return found.points


async def test_the_dispatch_happy_path_through_real_processes(
    services: Services,
    db_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    fixgate_env: dict[str, str],
    gateway: GatewayProcess,
    routing_url: str,
    tmp_path: Path,
) -> None:
    where = stack_extract_points()
    road = await _osrm_path(routing_url, where.origin, where.destination)
    drive = along(road, SPEED_MPS)
    customer_at = where.destination
    assert haversine_m(*drive[-1], *customer_at) < ARRIVAL_RADIUS_M  # the road ends there
    device = f"van-{uuid.uuid4().hex[:6]}"
    device_token = await asyncio.to_thread(register, db_url, device, TENANT, "service_van")

    engine = EngineProcess(fixgate_env, tmp_path / "engine.log", FIXGATE_ROUTING_URL=routing_url)
    fast_ring = {"FIXGATE_RING_PHASE_S": "4", "FIXGATE_RING_POLL_S": "0.05"}
    try:
        await asyncio.to_thread(engine.wait_ready)
        with api_processes(1, db_url, services.redis_url, redis_prefix, **fast_ring) as [api]:
            async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
                await _happy_path(
                    http, api.ws, gateway, device, device_token, drive, customer_at, db_url
                )
    finally:
        assert engine.stop() == 0
    # Every engine event of the run is in the documented schema (events() validates).
    kinds = [e["type"] for e in await events(redis_client, redis_prefix)]
    assert kinds.count("trip_arrived") == 1 and kinds.count("trip_update") >= 10


async def _happy_path(
    http: httpx.AsyncClient,
    ws_url: str,
    gateway: GatewayProcess,
    device: str,
    device_token: str,
    drive: list[Point],
    customer_at: Point,
    db_url: str,
) -> None:
    acme = Tenant(http, TENANT)
    oil = await acme.service(49.99, 30)
    customer_id, vehicle_id, customer = await acme.customer()
    technician_id, tech = await acme.technician(device_id=device)
    tech_raw = raw_token(Role.TECHNICIAN, technician_id, TENANT)
    customer_raw = raw_token(Role.CUSTOMER, customer_id, TENANT)

    async with (
        NmeaDevice(gateway.tcp_port, device, device_token, datetime.now(UTC)) as van,
        connected(ws_url, tech_raw) as tech_ws,
        connected(ws_url, customer_raw) as customer_ws,
    ):
        # The van parked at the route's start: a live position through the gateway.
        await van.stop(2, FIX_PAUSE_S, at=drive[0])
        await eventually(lambda: _live(acme, device))

        # The customer asks; the ring reaches the connected technician on /ws.
        created = await http.post(
            "/service-request",
            json={
                "vehicleId": vehicle_id,
                "latitude": customer_at[0],
                "longitude": customer_at[1],
                "location": "Avenue Princesse Grace",
                "services": [oil],
            },
            headers=customer,
        )
        assert created.status_code == 200, created.text
        request_id = created.json()["data"]["requestId"]
        ring = await tech_ws.event("ring_notification_received", timeout_s=15)
        assert ring["data"]["serviceRequestInfo"]["requestId"] == request_id

        accept = await http.put(f"/service-request/{request_id}/1", headers=tech)
        assert accept.status_code == 200, accept.text
        accepted = await customer_ws.event("request_accepted", timeout_s=10)
        assert mentions_technician(accepted, technician_id)

        journey = await http.post(f"/service-request/{request_id}/start-journey", headers=tech)
        assert journey.status_code == 200, journey.text
        await customer_ws.event("journey_started", timeout_s=10)
        assert await _status(http, request_id, customer) == "EnRoute"

        # The van drives the route in four legs; after each, the customer's socket and the
        # REST route info agree with where it is.
        remaining: list[float] = []
        etas: list[float] = []
        step = -(-len(drive) // 4)
        legs = [drive[i : i + step] for i in range(0, len(drive), step)]
        assert len(legs) == 4
        for k, leg in enumerate(legs[:-1]):
            await van.drive(leg, SPEED_MPS, FIX_PAUSE_S)
            expected = remaining_m(drive, k * step + len(leg) - 1)

            async def caught_up(expected: float = expected) -> dict[str, Any] | None:
                info = (
                    await http.get(f"/service-request/{request_id}/route-info", headers=customer)
                ).json()["data"]
                d = info["distanceInMeter"]
                return info if d is not None and abs(d - expected) < MATCH_M else None

            info = await eventually(caught_up, timeout_s=15)
            assert info["calculationStrategy"] == "osrm"
            assert info["etaInSec"] > 0 and info["encodedPolyline"]
            line = decode(info["encodedPolyline"])
            assert haversine_m(*line[-1], *customer_at) < ARRIVAL_RADIUS_M
            remaining.append(info["distanceInMeter"])
            etas.append(info["etaInSec"])
        assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == 3
        assert etas == sorted(etas, reverse=True) and len(set(etas)) == 3
        # A sensible ETA: the remaining road at a town's speeds (5-70 km/h).
        assert all(d / 19.5 < e < d / 1.4 for d, e in zip(remaining, etas, strict=True))

        updates = customer_ws.events("LocationUpdated")
        assert len(updates) >= 3
        # `local` for the first fix or two (while the engine's route request is in flight),
        # then `osrm` for good.
        calcs = [u["data"]["calculation"] for u in updates]
        assert "osrm" in calcs and set(calcs[calcs.index("osrm") :]) == {"osrm"}, calcs
        assert all(u["data"]["serviceRequestInfo"]["requestId"] == request_id for u in updates)
        assert all(u["data"]["encodedPolyline"] and u["data"]["etaInSec"] for u in updates)
        assert updates[-1]["data"]["technicianLocation"] is not None
        assert not customer_ws.events("technician_arrived")

        # The last leg, then the van stops at the customer's.
        await van.drive(legs[-1], SPEED_MPS, FIX_PAUSE_S)
        await van.stop(3, FIX_PAUSE_S)
        arrived = await customer_ws.event("technician_arrived", timeout_s=15)
        assert arrived["data"]["requestId"] == request_id
        detail = (await http.get(f"/service-request/{request_id}", headers=customer)).json()
        assert detail["data"]["arrivedAt"] is not None
        assert van.at is not None and haversine_m(*van.at, *customer_at) <= ARRIVAL_RADIUS_M

        start = await http.put(
            f"/service-request/{request_id}", params={"workAction": 1}, headers=tech
        )
        assert start.status_code == 200, start.text
        await customer_ws.event("service_started", timeout_s=10)
        complete = await http.put(
            f"/service-request/{request_id}",
            params={"workAction": 2},
            json={"mileage": 3, "evidences": ["https://example.com/oil.jpg"],
                  "completedServices": [oil]},
            headers=tech,
        )  # fmt: skip
        assert complete.status_code == 200, complete.text
        assert complete.json()["data"]["totalPrice"] == 49.99
        await customer_ws.event("service_completed", timeout_s=10)
        feedback = await http.post(
            f"/service-request/feedback/{request_id}",
            json={"rating": 5, "feedback": "On time, as the ETA said"},
            headers=customer,
        )
        assert feedback.status_code == 200, feedback.text
        assert await _status(http, request_id, customer) == "Completed"

    conn = await asyncpg.connect(db_url)
    try:
        trip = await conn.fetchrow("SELECT state, ref FROM trips WHERE device_id = $1", device)
        audit = await conn.fetch(
            "SELECT action FROM dispatchaudit WHERE requestid = $1 AND outcome = 'ok'"
            " ORDER BY auditid",
            uuid.UUID(request_id),
        )
    finally:
        await conn.close()
    assert trip is not None and (trip["state"], trip["ref"]) == ("arrived", request_id)
    assert [a["action"] for a in audit] == [
        "create", "ring", "accept", "start_journey", "arrived", "start_work", "complete",
        "feedback",
    ]  # fmt: skip


def mentions_technician(message: dict[str, Any], technician_id: str) -> bool:
    return technician_id in str(message["data"])


async def _live(acme: Tenant, device: str) -> bool:
    got = await acme.client.get(f"/devices/{device}/live", headers=acme.admin)
    return got.status_code == 200


async def _status(http: httpx.AsyncClient, request_id: str, headers: dict[str, str]) -> str:
    got = await http.get(f"/service-request/{request_id}", headers=headers)
    assert got.status_code == 200, got.text
    status: str = got.json()["data"]["requestStatus"]
    return status


async def _trip_events(client: aioredis.Redis, prefix: str, trip: str) -> list[dict[str, Any]]:
    return [e for e in await events(client, prefix) if e.get("trip") == trip]


async def test_a_pass_by_at_60_kmh_does_not_arrive_and_a_stop_does(
    db_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    fixgate_env: dict[str, str],
    gateway: GatewayProcess,
    routing_url: str,
    tmp_path: Path,
) -> None:
    where = stack_extract_points()
    road = along(await _osrm_path(routing_url, where.origin, where.destination), PASS_BY_MPS)
    # The destination: a point on the road halfway; the van drives through it at 60 km/h.
    dest = road[len(road) // 2]
    device = f"van-{uuid.uuid4().hex[:6]}"
    device_token = await asyncio.to_thread(register, db_url, device, TENANT, "service_van")
    conn = await asyncpg.connect(db_url)
    try:
        trip = await start_trip(conn, tenant=TENANT, device=device, lat=dest[0], lon=dest[1])
    finally:
        await conn.close()
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log", FIXGATE_ROUTING_URL=routing_url)
    try:
        await asyncio.to_thread(engine.wait_ready)
        async with NmeaDevice(gateway.tcp_port, device, device_token, datetime.now(UTC)) as van:
            await van.drive(road, PASS_BY_MPS, FIX_PAUSE_S)
            last_fix = van.time - timedelta(seconds=1)

            async def all_seen() -> list[dict[str, Any]]:
                got = await _trip_events(redis_client, redis_prefix, trip)
                late = [e for e in got if _at(e) >= last_fix - timedelta(seconds=2)]
                return got if late else []

            await eventually(all_seen, timeout_s=20)
            await asyncio.sleep(1.0)
            seen = await _trip_events(redis_client, redis_prefix, trip)
            close = [haversine_m(*p, *dest) for p in road if haversine_m(*p, *dest) <= 30.0]
            assert close, "the drive never came within the radius"  # it did pass by
            assert [e for e in seen if e["type"] == "trip_update"]
            assert not [e for e in seen if e["type"] == "trip_arrived"]
            # Back to the destination, and a stop there: that arrives, once.
            back = along(list(reversed(road[len(road) // 2 :])), 8.0)
            await van.drive(back, 8.0, FIX_PAUSE_S)
            await van.stop(3, FIX_PAUSE_S)

            async def arrived() -> list[dict[str, Any]]:
                got = await _trip_events(redis_client, redis_prefix, trip)
                return [e for e in got if e["type"] == "trip_arrived"]

            await eventually(arrived, timeout_s=20)
            await asyncio.sleep(1.0)
            assert len(await arrived()) == 1
    finally:
        assert engine.stop() == 0


async def test_a_trip_goes_on_with_local_etas_after_osrm_is_stopped(
    db_url: str,
    redis_prefix: str,
    redis_client: aioredis.Redis,
    fixgate_env: dict[str, str],
    gateway: GatewayProcess,
    tmp_path: Path,
) -> None:
    where = stack_extract_points()
    device = f"van-{uuid.uuid4().hex[:6]}"
    device_token = await asyncio.to_thread(register, db_url, device, TENANT, "service_van")
    with own_osrm_routed() as osrm:
        url = f"http://127.0.0.1:{osrm.settings.stack_osrm_port}"
        road = along(await _osrm_path(url, where.origin, where.destination), SPEED_MPS)
        conn = await asyncpg.connect(db_url)
        try:
            trip = await start_trip(
                conn, tenant=TENANT, device=device, lat=road[-1][0], lon=road[-1][1]
            )
        finally:
            await conn.close()
        engine = EngineProcess(fixgate_env, tmp_path / "engine.log", FIXGATE_ROUTING_URL=url)
        try:
            await asyncio.to_thread(engine.wait_ready)
            async with NmeaDevice(gateway.tcp_port, device, device_token, datetime.now(UTC)) as van:
                third = len(road) // 3
                await van.drive(road[:third], SPEED_MPS, FIX_PAUSE_S)

                async def on_osrm() -> list[dict[str, Any]]:
                    got = await _trip_events(redis_client, redis_prefix, trip)
                    return [e for e in got if e.get("calculation") == "osrm"]

                await eventually(on_osrm, timeout_s=20)
                assert osrm.stop()  # by its PID
                stopped_at = van.time
                # A detour well off the route, so the engine asks OSRM again and gets
                # nothing; then back onto the road and on to the destination, and a stop.
                detour = _sideways(road[third - 1], road[third], DETOUR_M)
                path = along([road[third - 1], detour, road[2 * third]], SPEED_MPS)
                await van.drive(path, SPEED_MPS, FIX_PAUSE_S)
                await van.drive(road[2 * third :], SPEED_MPS, FIX_PAUSE_S)
                await van.stop(3, FIX_PAUSE_S)

                async def arrived() -> list[dict[str, Any]]:
                    got = await _trip_events(redis_client, redis_prefix, trip)
                    return [e for e in got if e["type"] == "trip_arrived"]

                await eventually(arrived, timeout_s=30)
        finally:
            assert engine.stop() == 0
    got = await _trip_events(redis_client, redis_prefix, trip)
    updates = [e for e in got if e["type"] == "trip_update"]
    before = [u["calculation"] for u in updates if _at(u) < stopped_at]
    after = [u["calculation"] for u in updates if _at(u) >= stopped_at]
    assert before[-1] == "osrm"
    # Off the route with OSRM gone: the engine's own estimate, fix after fix.
    assert after.count("local") >= 5, after
    assert [e["type"] for e in got].count("trip_arrived") == 1


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["fix_time"])


def _sideways(a: Point, b: Point, metres: float) -> Point:
    """The midpoint of a-b moved `metres` to the left of the direction a -> b."""
    from contracts.geodesy import metres_per_degree

    mlat, mlon = metres_per_degree(a[0])
    dy, dx = (b[0] - a[0]) * mlat, (b[1] - a[1]) * mlon
    norm = (dx * dx + dy * dy) ** 0.5 or 1.0
    mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
    return mid[0] + dx / norm * metres / mlat, mid[1] - dy / norm * metres / mlon
