"""The request lifecycle end to end through the running app: the happy path, exception
flows, 409s, role and tenant isolation, and the concurrent accept."""

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
)
from tests.support.engine import xadd_event

ORIGIN = (40.7128, -74.0060)


async def _request(
    client: httpx.AsyncClient,
    customer: dict[str, str],
    vehicle_id: str,
    services: list[str],
    **extra: Any,
) -> str:
    body = {
        "vehicleId": vehicle_id,
        "latitude": ORIGIN[0],
        "longitude": ORIGIN[1],
        "location": "123 Main St",
        "services": services,
        **extra,
    }
    response = await client.post("/service-request", json=body, headers=customer)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["requestNumber"].startswith("REQ-")
    request_id: str = data["requestId"]
    return request_id


async def _status(client: httpx.AsyncClient, request_id: str, headers: dict[str, str]) -> str:
    response = await client.get(f"/service-request/{request_id}", headers=headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["data"]["requestStatus"]
    return status


async def _tech_near(
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    prefix: str,
    miles: float = 5.0,
) -> tuple[str, dict[str, str], str]:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await add_device(pg, device, acme.name)
    await place(redis_client, prefix, device, acme.name, *miles_north(*ORIGIN, miles))
    technician_id, token = await acme.technician(device_id=device)
    return technician_id, token, device


async def _rung(pg: asyncpg.Connection, request_id: str, technician_id: str) -> bool:
    found = await pg.fetchval(
        "SELECT true FROM technicianringlog WHERE requestid = $1 AND technicianid = $2",
        uuid.UUID(request_id),
        uuid.UUID(technician_id),
    )
    return bool(found)


async def test_happy_path_end_to_end(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    customer_id, vehicle_id, customer = await acme.customer()
    oil, brakes, wash = (
        await acme.service(49.99, 30),
        await acme.service(150.0, 60),
        await acme.service(20.0, 15),
    )
    technician_id, tech, device = await _tech_near(acme, pg, redis_client, redis_prefix)
    request_id = await _request(client, customer, vehicle_id, [oil, brakes])
    assert await _status(client, request_id, customer) == "Ringing"
    await eventually(lambda: _rung(pg, request_id, technician_id))

    accept = await client.put(f"/service-request/{request_id}/1", headers=tech)
    assert accept.status_code == 200, accept.text
    detail = (await client.get(f"/service-request/{request_id}", headers=customer)).json()["data"]
    assert detail["requestStatus"] == "Assigned"
    assert detail["technician"]["technicianId"] == technician_id
    assert detail["queuePosition"] == 1 and detail["estimatedPrice"] == 199.99

    current = (await client.get("/technician/current-request", headers=tech)).json()["data"]
    assert current["requestId"] == request_id
    queue = (await client.get(f"/service-request/{request_id}/queue", headers=customer)).json()
    assert queue["data"]["queuePosition"] == 1 and queue["data"]["etaSeconds"] is not None

    journey = await client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    assert journey.status_code == 200, journey.text
    assert await _status(client, request_id, customer) == "EnRoute"
    got = (await client.get(f"/technicians/{technician_id}", headers=acme.admin)).json()
    assert got["data"]["availabilityStatus"] == "EnRoute"

    # The engine's events, in the contract's shape: a route update, then the arrival.
    base = {
        "tenant": "acme",
        "device": device,
        "trip": "trip-1",
        "ref": request_id,
        "fix_time": "2026-01-01T00:00:00+00:00",
        "detected_at": "2026-01-01T00:00:00+00:00",
    }
    update = {
        **base,
        "type": "trip_update",
        "id": "e1",
        "distance_m": 1500.0,
        "eta_s": 300.0,
        "calculation": "local",
        "polyline": "_p~iF~ps|U",
        "polyline_version": 2,
        "queue": [],
    }
    await xadd_event(redis_client, redis_prefix, update)

    async def routed() -> Any:
        got = await client.get(f"/service-request/{request_id}/route-info", headers=customer)
        return got.json()["data"] if got.json()["data"]["etaInSec"] is not None else None

    # On the way, the customer follows the technician.
    route = await eventually(routed)
    assert route["etaInSec"] == 300 and route["distanceInMeter"] == 1500
    assert route["encodedPolyline"] == "_p~iF~ps|U"
    assert route["technicianLocation"]["latitude"] > ORIGIN[0]
    await xadd_event(redis_client, redis_prefix, {**base, "type": "trip_arrived", "id": "e2"})

    async def arrived() -> Any:
        d = (await client.get(f"/service-request/{request_id}", headers=customer)).json()["data"]
        return d["arrivedAt"]

    await eventually(arrived)
    # Arrived: the technician's position is no longer the customer's to see; staff's it is.
    after = await client.get(f"/service-request/{request_id}/route-info", headers=customer)
    assert after.json()["data"]["technicianLocation"] is None
    assert after.json()["data"]["etaInSec"] is None
    staff = await client.get(f"/service-request/{request_id}/route-info", headers=acme.admin)
    assert staff.json()["data"]["etaInSec"] == 300
    assert staff.json()["data"]["technicianLocation"]["latitude"] > ORIGIN[0]

    start = await client.put(
        f"/service-request/{request_id}", params={"workAction": 1}, headers=tech
    )
    assert start.status_code == 200, start.text
    assert await _status(client, request_id, customer) == "InProgress"
    complete = await client.put(
        f"/service-request/{request_id}",
        params={"workAction": 2},
        json={
            "mileage": 45,
            "evidences": ["https://example.com/1.jpg"],
            "completedServices": [oil],
            "additionalServices": [wash],
        },
        headers=tech,
    )
    assert complete.status_code == 200, complete.text
    assert complete.json()["data"]["totalPrice"] == 69.99
    detail = (await client.get(f"/service-request/{request_id}", headers=customer)).json()["data"]
    assert detail["requestStatus"] == "Completed" and detail["subtotal"] == 69.99
    assert {s["serviceId"]: s["serviceStatus"] for s in detail["services"]} == {
        oil: "Completed",
        brakes: "Rejected",
        wash: "Completed",
    }
    got = (await client.get(f"/technicians/{technician_id}", headers=acme.admin)).json()
    assert got["data"]["availabilityStatus"] == "Available"

    feedback = {"rating": 5, "feedback": "Quick and professional"}
    ok = await client.post(
        f"/service-request/feedback/{request_id}", json=feedback, headers=customer
    )
    assert ok.status_code == 200
    again = await client.post(
        f"/service-request/feedback/{request_id}", json=feedback, headers=customer
    )
    assert again.status_code == 409 and again.json()["data"] == {"requestStatus": "Completed"}

    audit = await pg.fetch(
        "SELECT action, oldstate, newstate, actorrole FROM dispatchaudit"
        " WHERE requestid = $1 AND outcome = 'ok' ORDER BY auditid",
        uuid.UUID(request_id),
    )
    assert [(a["action"], a["oldstate"], a["newstate"]) for a in audit] == [
        ("create", None, "Ringing"),
        ("ring", "Ringing", "Ringing"),
        ("accept", "Ringing", "Assigned"),
        ("start_journey", "Assigned", "EnRoute"),
        ("arrived", "EnRoute", "EnRoute"),
        ("start_work", "EnRoute", "InProgress"),
        ("complete", "InProgress", "Completed"),
        ("feedback", "Completed", "Completed"),
    ]
    names = [name for name, _, _ in await dispatch_events(redis_client, redis_prefix)]
    for expected in (
        "new_service_request",
        "ring_notification_received",
        "request_accepted",
        "request_status_changed",
        "journey_started",
        "LocationUpdated",
        "technician_arrived",
        "service_started",
        "service_completed",
        "QueueUpdated",
        "QueuePositionChanged",
    ):
        assert expected in names, expected
    events = await dispatch_events(redis_client, redis_prefix)
    ring = next(e for e in events if e[0] == "ring_notification_received")
    assert ring[2] == [f"Technician-{technician_id}"]
    assert ring[1]["serviceRequestInfo"]["requestId"] == request_id
    accepted = next(e for e in events if e[0] == "request_accepted")
    assert f"Request-{request_id}" in accepted[2] and "AllAdmins" in accepted[2]
    assert f"Customer-{customer_id}" in accepted[2]


async def test_illegal_transitions_are_409_with_the_current_state(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    technician_id, tech, _ = await _tech_near(acme, pg, redis_client, redis_prefix)
    request_id = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, request_id, technician_id))

    early = await client.put(
        f"/service-request/{request_id}", params={"workAction": 1}, headers=tech
    )
    assert early.status_code == 409
    assert early.json()["data"] == {"requestStatus": "Ringing"}
    journey = await client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    assert journey.status_code == 409
    feedback = await client.post(
        f"/service-request/feedback/{request_id}", json={"rating": 4}, headers=customer
    )
    assert feedback.status_code == 409
    customer_accept = await client.put(f"/service-request/{request_id}/1", headers=customer)
    assert customer_accept.status_code == 403

    assert (await client.put(f"/service-request/{request_id}/1", headers=tech)).status_code == 200
    twice = await client.put(f"/service-request/{request_id}/1", headers=tech)
    assert twice.status_code == 409 and "taken" in twice.json()["message"]
    await client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    await client.put(f"/service-request/{request_id}", params={"workAction": 1}, headers=tech)
    no_evidence = await client.put(
        f"/service-request/{request_id}",
        params={"workAction": 2},
        json={"mileage": 3, "evidences": [], "completedServices": [service]},
        headers=tech,
    )
    assert no_evidence.status_code == 400 and "evidences" in no_evidence.json()["message"]
    no_mileage = await client.put(
        f"/service-request/{request_id}",
        params={"workAction": 2},
        json={"evidences": ["x"], "completedServices": [service]},
        headers=tech,
    )
    assert no_mileage.status_code == 400 and "mileage" in no_mileage.json()["message"]
    foreign = await client.put(
        f"/service-request/{request_id}",
        params={"workAction": 2},
        json={"mileage": 3, "evidences": ["x"], "completedServices": [str(uuid.uuid4())]},
        headers=tech,
    )
    assert foreign.status_code == 422 and "completedServices" in foreign.json()["message"]
    bad_rating = await client.post(
        f"/service-request/feedback/{request_id}", json={"rating": 6}, headers=customer
    )
    assert bad_rating.status_code == 422 and "rating" in bad_rating.json()["message"]
    bad_create = await client.post(
        "/service-request",
        json={"vehicleId": vehicle_id, "latitude": 91, "longitude": 0, "services": [service]},
        headers=customer,
    )
    assert bad_create.status_code == 422 and "latitude" in bad_create.json()["message"]
    scheduled_without_time = await client.post(
        "/service-request",
        json={
            "vehicleId": vehicle_id,
            "latitude": 1,
            "longitude": 1,
            "services": [service],
            "serviceScheduleType": "Scheduled",
        },
        headers=customer,
    )
    assert scheduled_without_time.status_code == 422
    assert "scheduledAt" in scheduled_without_time.json()["message"]


async def test_customer_cancel_frees_the_technician(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    technician_id, tech, _ = await _tech_near(acme, pg, redis_client, redis_prefix)
    request_id = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, request_id, technician_id))
    await client.put(f"/service-request/{request_id}/1", headers=tech)
    await client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    cancel = await client.put(
        f"/service-request/{request_id}/3", json={"reason": "changed my mind"}, headers=customer
    )
    assert cancel.status_code == 200, cancel.text
    detail = (await client.get(f"/service-request/{request_id}", headers=customer)).json()["data"]
    assert detail["requestStatus"] == "Canceled"
    assert detail["cancelledBy"]["role"] == "customer"
    assert detail["cancellationReason"] == "changed my mind"
    got = (await client.get(f"/technicians/{technician_id}", headers=acme.admin)).json()
    assert got["data"]["availabilityStatus"] == "Available"
    assert (await client.get("/technician/current-request", headers=tech)).status_code == 404
    again = await client.put(f"/service-request/{request_id}/3", headers=customer)
    assert again.status_code == 409 and again.json()["data"] == {"requestStatus": "Canceled"}
    names = [n for n, _, _ in await dispatch_events(redis_client, redis_prefix)]
    assert "request_canceled" in names


async def test_isolation_between_customers_technicians_and_tenants(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme, other = Tenant(client, "acme"), Tenant(client, "other")
    _, vehicle_id, customer = await acme.customer()
    _, _, stranger = await acme.customer()
    service = await acme.service()
    near_id, near, _ = await _tech_near(acme, pg, redis_client, redis_prefix, miles=5)
    _, far, _ = await _tech_near(acme, pg, redis_client, redis_prefix, miles=500)
    _, foreign_tech = await other.technician()
    request_id = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, request_id, near_id))

    path = f"/service-request/{request_id}"
    assert (await client.get(path, headers=customer)).status_code == 200
    assert (await client.get(path, headers=near)).status_code == 200  # rung to them
    for outsider in (stranger, far, foreign_tech, other.admin):
        response = await client.get(path, headers=outsider)
        assert response.status_code == 404, response.text
    assert (await client.put(f"{path}/1", headers=foreign_tech)).status_code == 404
    assert (await client.put(f"{path}/1", headers=far)).status_code == 404
    assert (await client.put(f"{path}/3", headers=stranger)).status_code == 404
    listed = (await client.get("/service-requests", headers=stranger)).json()
    assert listed["totalNumber"] == 0
    mine = (await client.get("/service-requests", headers=customer)).json()
    assert [r["requestId"] for r in mine["data"]] == [request_id]
    assert (await client.get("/service-requests", headers=other.admin)).json()["totalNumber"] == 0
    assert (await client.get("/service-requests", headers=acme.admin)).json()["totalNumber"] == 1
    # Another customer's vehicle cannot be booked.
    _, other_vehicle, _ = await acme.customer()
    response = await client.post(
        "/service-request",
        json={"vehicleId": other_vehicle, "latitude": 1, "longitude": 1, "services": [service]},
        headers=customer,
    )
    assert response.status_code == 422 and "vehicleId" in response.json()["message"]


async def test_twenty_concurrent_accepts_one_wins(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    techs = [
        await _tech_near(acme, pg, redis_client, redis_prefix, miles=3 + i / 10) for i in range(20)
    ]
    request_id = await _request(client, customer, vehicle_id, [service])

    async def all_rung() -> bool:
        n = await pg.fetchval(
            "SELECT count(*) FROM technicianringlog WHERE requestid = $1", uuid.UUID(request_id)
        )
        return bool(n == 20)

    await eventually(all_rung)
    responses = await asyncio.gather(
        *(client.put(f"/service-request/{request_id}/1", headers=t[1]) for t in techs)
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 19
    losers = [r for r in responses if r.status_code == 409]
    assert all("taken" in r.json()["message"] for r in losers)
    assert all(r.json()["data"] == {"requestStatus": "Assigned"} for r in losers)
    attempts = await pg.fetch(
        "SELECT outcome, count(*) AS n FROM dispatchaudit WHERE requestid = $1"
        " AND action = 'accept' GROUP BY outcome",
        uuid.UUID(request_id),
    )
    assert {a["outcome"]: a["n"] for a in attempts} == {"ok": 1, "conflict": 19}
    winner = techs[[r.status_code for r in responses].index(200)][0]
    assigned = await pg.fetch(
        "SELECT technicianid FROM technicianengagementdetails WHERE requestid = $1"
        " AND action = 'ACCEPTED'",
        uuid.UUID(request_id),
    )
    assert [str(a["technicianid"]) for a in assigned] == [winner]
    detail = (await client.get(f"/service-request/{request_id}", headers=customer)).json()["data"]
    assert detail["technician"]["technicianId"] == winner
