"""Service areas (seed 000) through the running app: an area is a service_area geofence with
a response-time SLA; a request made inside one carries it and its due time (the higher
priority level where areas overlap); past that time with nobody there the request is
violated once, escalated one step, audited and announced to the staff, and the arrival
resolves the violation with its actual minutes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from api.principal import Role
from tests.support.api import (
    Tenant,
    add_device,
    dispatch_events,
    eventually,
    miles_north,
    place,
    running_app,
    token,
)
from tests.support.engine import xadd_event

ORIGIN = (40.7128, -74.0060)
SQUARE = 0.05  # degrees each way around ORIGIN: ~5.5 km north-south


def _square(lat: float, lon: float, half: float) -> dict[str, Any]:
    ring = [
        [lon - half, lat - half],
        [lon + half, lat - half],
        [lon + half, lat + half],
        [lon - half, lat + half],
        [lon - half, lat - half],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


async def _fence(acme: Tenant, name: str, kind: str, **shape: Any) -> int:
    return int(await acme.post("/geofences", {"name": name, "kind": kind, **shape}))


async def _area(acme: Tenant, geofence_id: int, **fields: Any) -> str:
    return await acme.post("/service-areas", {"geofenceId": geofence_id, **fields})


async def _request(
    client: httpx.AsyncClient,
    acme: Tenant,
    customer: tuple[str, str, dict[str, str]],
    at: tuple[float, float] = ORIGIN,
    **extra: Any,
) -> dict[str, Any]:
    """Create a request at `at`; its detail as the admin reads it."""
    request_id = await acme.request(customer, at, **extra)
    detail = await client.get(f"/service-request/{request_id}", headers=acme.admin)
    assert detail.status_code == 200, detail.text
    data: dict[str, Any] = detail.json()["data"]
    return data


def _minutes_after(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds() / 60


async def test_areas_hold_the_requests_made_inside_them_with_their_due_time(
    make_settings: Any,
) -> None:
    async with running_app(make_settings()) as client:
        acme, other = Tenant(client, "acme"), Tenant(client, "other")
        city = await _fence(acme, "City", "service_area", geometry=_square(*ORIGIN, SQUARE))
        centre = await _fence(
            acme,
            "Centre",
            "service_area",
            geometry={"type": "Point", "coordinates": [ORIGIN[1], ORIGIN[0]]},
            radiusM=2000,
        )
        depot = await _fence(acme, "Depot", "depot", geometry=_square(*ORIGIN, 0.001))
        theirs = await _fence(other, "Theirs", "service_area", geometry=_square(*ORIGIN, 1))

        # Only a service_area geofence of one's own tenant, and only once.
        for geofence_id, says in ((depot, "of kind depot"), (theirs, "no such geofence")):
            refused = await client.post(
                "/service-areas", json={"geofenceId": geofence_id}, headers=acme.admin
            )
            assert refused.status_code == 422, refused.text
            assert "geofenceId" in refused.json()["message"] and says in refused.text
        city_area = await _area(acme, city, responseTimeSlaMinutes=45, description="All of it")
        again = await client.post("/service-areas", json={"geofenceId": city}, headers=acme.admin)
        assert again.status_code == 409, again.text
        centre_area = await _area(acme, centre, responseTimeSlaMinutes=15, priorityLevel=5)

        got = await client.get(f"/service-areas/{city_area}", headers=acme.admin)
        assert got.status_code == 200, got.text
        assert got.json()["data"] == {
            "serviceAreaId": city_area,
            "geofenceId": city,
            "name": "City",
            "description": "All of it",
            "priorityLevel": 1,
            "responseTimeSlaMinutes": 45,
            "enabled": True,
        }
        listed = (await client.get("/service-areas", headers=acme.admin)).json()
        assert [a["serviceAreaId"] for a in listed["data"]] == [city_area, centre_area]
        assert (await client.get("/service-areas", headers=other.admin)).json()["data"] == []
        hidden = await client.get(f"/service-areas/{city_area}", headers=other.admin)
        assert hidden.status_code == 404

        customer = await acme.customer()
        # Where both hold the point, the higher priority level: the centre's 15 minutes.
        inside_both = await _request(client, acme, customer)
        assert inside_both["serviceAreaId"] == centre_area
        assert inside_both["serviceAreaName"] == "Centre"
        due = _minutes_after(inside_both["slaDueAt"], inside_both["requestedAt"])
        assert abs(due - 15) < 1 / 60
        assert inside_both["slaViolatedAt"] is None
        # 3 miles north: in the city, out of the centre's 2 km.
        city_only = await _request(client, acme, customer, miles_north(*ORIGIN, 3))
        assert city_only["serviceAreaId"] == city_area
        assert abs(_minutes_after(city_only["slaDueAt"], city_only["requestedAt"]) - 45) < 1 / 60
        outside = await _request(client, acme, customer, miles_north(*ORIGIN, 30))
        assert outside["serviceAreaId"] is None and outside["slaDueAt"] is None
        # A scheduled visit is due its SLA after its time.
        at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
        scheduled = await _request(
            client,
            acme,
            customer,
            miles_north(*ORIGIN, 3),
            serviceScheduleType="Scheduled",
            scheduledAt=at.isoformat(),
        )
        assert datetime.fromisoformat(scheduled["slaDueAt"]) == at + timedelta(minutes=45)

        in_city = await client.get(
            "/service-requests", params={"serviceAreaId": city_area}, headers=acme.admin
        )
        assert in_city.status_code == 200, in_city.text
        assert {r["requestId"] for r in in_city.json()["data"]} == {
            city_only["requestId"],
            scheduled["requestId"],
        }

        # Updates apply to requests made afterwards; a disabled area holds no new ones.
        nothing = await client.patch(f"/service-areas/{city_area}", json={}, headers=acme.admin)
        assert nothing.status_code == 400, nothing.text
        null = await client.patch(
            f"/service-areas/{city_area}", json={"priorityLevel": None}, headers=acme.admin
        )
        assert null.status_code == 422 and "priorityLevel" in null.text
        changed = await client.patch(
            f"/service-areas/{city_area}", json={"responseTimeSlaMinutes": 30}, headers=acme.admin
        )
        assert changed.status_code == 200, changed.text
        off = await client.post(f"/service-areas/{centre_area}/disable", headers=acme.admin)
        assert off.status_code == 200, off.text
        now_city = await _request(client, acme, customer)
        assert now_city["serviceAreaId"] == city_area
        assert abs(_minutes_after(now_city["slaDueAt"], now_city["requestedAt"]) - 30) < 1 / 60
        kept = await client.get(f"/service-request/{inside_both['requestId']}", headers=acme.admin)
        assert kept.json()["data"]["serviceAreaId"] == centre_area
        assert kept.json()["data"]["slaDueAt"] == inside_both["slaDueAt"]

        # Staff only.
        as_customer = await client.get("/service-areas", headers=customer[2])
        assert as_customer.status_code == 403
        as_technician = await client.get(
            "/sla-violations", headers=token(Role.TECHNICIAN, str(uuid.uuid4()), "acme")
        )
        assert as_technician.status_code == 403


async def _travel_back(pg: asyncpg.Connection, request_id: str, minutes: float) -> None:
    """The request was made `minutes` earlier (its due time with it)."""
    await pg.execute(
        "UPDATE servicerequests SET requestedat = requestedat - make_interval(mins => $2),"
        " sladueat = sladueat - make_interval(mins => $2) WHERE requestid = $1",
        uuid.UUID(request_id),
        minutes,
    )


async def test_a_request_past_its_sla_is_violated_once_escalated_and_resolved_on_arrival(
    make_settings: Any, pg: asyncpg.Connection, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    settings = make_settings(sla_poll_s=0.1)
    counted = REGISTRY.get_sample_value("fixgate_api_sla_violations_total") or 0.0
    # Two API processes watch the same database: each violation happens once.
    async with running_app(settings) as client, running_app(settings) as _second:
        acme = Tenant(client, "acme")
        city = await _fence(acme, "City", "service_area", geometry=_square(*ORIGIN, SQUARE))
        area_id = await _area(acme, city, responseTimeSlaMinutes=30)
        customer = await acme.customer()
        late = await _request(client, acme, customer)
        on_time = await _request(client, acme, customer)
        done_early = await _request(client, acme, customer)
        assert late["priority"] == "Medium"
        cancel = await client.put(
            f"/service-request/{done_early['requestId']}/3",
            json={"reason": "fixed it myself"},
            headers=customer[2],
        )
        assert cancel.status_code == 200, cancel.text
        await _travel_back(pg, late["requestId"], 31)
        await _travel_back(pg, done_early["requestId"], 31)

        async def violated() -> Any:
            got = await client.get(f"/service-request/{late['requestId']}", headers=acme.admin)
            return got.json()["data"]["slaViolatedAt"] and got.json()["data"]

        detail = await eventually(violated)
        assert detail["priority"] == "High"
        violations = await client.get("/sla-violations", headers=acme.admin)
        assert violations.status_code == 200, violations.text
        [violation] = violations.json()["data"]
        assert violation["requestId"] == late["requestId"]
        assert violation["serviceAreaId"] == area_id
        assert violation["violationType"] == "ArrivalTime"
        assert violation["targetMinutes"] == 30 and violation["actualMinutes"] is None
        # Neither the one still in time nor the canceled one.
        for request_id in (on_time["requestId"], done_early["requestId"]):
            got = await client.get(f"/service-request/{request_id}", headers=acme.admin)
            assert got.json()["data"]["slaViolatedAt"] is None

        audit = await pg.fetch(
            "SELECT actorrole, detail FROM dispatchaudit WHERE requestid = $1"
            " AND action = 'sla_violation'",
            uuid.UUID(late["requestId"]),
        )
        assert [(r["actorrole"], r["detail"]) for r in audit] == [
            ("system", "nobody there 30 min after the request; priority Medium -> High")
        ]

        async def announced() -> Any:
            events = await dispatch_events(redis_client, redis_prefix)
            return [e for e in events if e[0] in ("sla_violated", "request_escalated")]

        [(name, payload, groups), escalated] = await eventually(announced)
        assert name == "sla_violated" and groups == ["AllAdmins"]
        assert payload["serviceRequestInfo"]["requestId"] == late["requestId"]
        assert payload["targetMinutes"] == 30 and payload["serviceAreaName"] == "City"
        assert escalated[0] == "request_escalated"
        assert escalated[1]["previousPriority"] == "Medium" and escalated[1]["priority"] == "High"
        assert f"Customer-{customer[0]}" in escalated[2]

        # The technician gets there: the violation is resolved with the minutes it took.
        device = f"dev-{uuid.uuid4().hex[:8]}"
        await add_device(pg, device, "acme")
        await place(redis_client, redis_prefix, device, "acme", *miles_north(*ORIGIN, 1))
        technician_id, tech = await acme.technician(device_id=device)
        assign = await client.post(
            "/service-request/assign",
            json={"requestId": late["requestId"], "technicianId": technician_id},
            headers=acme.admin,
        )
        assert assign.status_code == 200, assign.text
        journey = await client.post(
            f"/service-request/{late['requestId']}/start-journey", headers=tech
        )
        assert journey.status_code == 200, journey.text
        arrival = {
            "type": "trip_arrived",
            "id": "e-arrived",
            "tenant": "acme",
            "device": device,
            "trip": "trip-1",
            "ref": late["requestId"],
            "fix_time": datetime.now(UTC).isoformat(),
            "detected_at": datetime.now(UTC).isoformat(),
        }
        await xadd_event(redis_client, redis_prefix, arrival)

        async def resolved() -> Any:
            got = (await client.get("/sla-violations", headers=acme.admin)).json()["data"]
            return got[0]["resolvedAt"] and got[0]

        violation = await eventually(resolved)
        assert violation["actualMinutes"] == 31
    count = await pg.fetchval("SELECT count(*) FROM slaviolations")
    assert count == 1
    assert REGISTRY.get_sample_value("fixgate_api_sla_violations_total") == counted + 1
    escalations = await pg.fetchval(
        "SELECT count(*) FROM dispatchaudit WHERE action = 'sla_violation'"
    )
    assert escalations == 1
