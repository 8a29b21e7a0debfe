"""The accept decides in one statement and announces what it did before it did it (api/
lifecycle.py `accept`): its events must tell the request as the accept left it, and the
queue as it is after it, exactly as a read afterwards shows them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from tests.e2e.api.test_api_lifecycle import ORIGIN, _request, _rung, _tech_near
from tests.support.api import Tenant, add_device, dispatch_events, eventually, miles_north, place


def _without(payload: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in keys}


async def test_the_accepts_events_tell_the_request_and_the_queue_as_a_read_after_it(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service(minutes=45)
    van = await acme.post("/vans", {"vanNumber": "VAN-7", "registrationNumber": "AB-123"})
    technician_id, tech, _ = await _tech_near(acme, pg, redis_client, redis_prefix)
    patched = await client.patch(
        f"/technicians/{technician_id}", json={"vanId": van}, headers=acme.admin
    )
    assert patched.status_code == 200, patched.text
    # Something in the technician's queue already: the new request goes second.
    first = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, first, technician_id))
    assert (await client.put(f"/service-request/{first}/1", headers=tech)).status_code == 200
    second = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, second, technician_id))
    accepted = await client.put(f"/service-request/{second}/1", headers=tech)
    assert accepted.status_code == 200, accepted.text

    detail = (await client.get(f"/service-request/{second}", headers=acme.admin)).json()["data"]
    assert detail["requestStatus"] == "Assigned" and detail["queuePosition"] == 2
    assert detail["van"]["vanId"] == van  # the technician's van, joined at the accept

    async def events_of_second() -> list[tuple[str, dict[str, Any], list[str]]]:
        found = await dispatch_events(redis_client, redis_prefix)
        return [e for e in found if e[0] in ("request_accepted", "request_status_changed")
                and e[1].get("serviceRequestInfo", e[1])["requestId"] == second]  # fmt: skip

    announced = await eventually(events_of_second)
    [(_, accept_payload, groups), (_, status_payload, _)] = announced
    assert accept_payload["technicianInfo"] == detail["technician"]
    assert accept_payload["customerInfo"] == detail["customer"]
    assert accept_payload["vanInfo"] == detail["van"]
    assert status_payload["requestStatus"] == "Assigned"
    assert status_payload["technicianId"] == technician_id
    assert f"Technician-{technician_id}" in groups and f"Request-{second}" in groups

    queue = (await client.get(f"/service-request/{second}/queue", headers=acme.admin)).json()
    queue_updates = [e for e in await dispatch_events(redis_client, redis_prefix)
                     if e[0] == "QueueUpdated"]  # fmt: skip
    last = queue_updates[-1][1]["queue"]
    assert [q["requestId"] for q in last] == [first, second]
    assert [q["queuePosition"] for q in last] == [1, 2]
    assert last[1]["etaSeconds"] is not None
    # The same queue ETA as the queue endpoint's (the read a moment later: within seconds).
    assert abs(last[1]["etaSeconds"] - queue["data"]["etaSeconds"]) <= 5
    assert queue["data"]["queuePosition"] == 2


async def test_a_refused_accept_is_audited_with_the_state_it_found(
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
    offline = await client.put(
        "/technician/availability", json={"availabilityStatus": "Offline"}, headers=tech
    )
    assert offline.status_code == 200, offline.text
    refused = await client.put(f"/service-request/{request_id}/1", headers=tech)
    assert refused.status_code == 409 and "Offline" in refused.json()["message"]
    audit = await pg.fetch(
        "SELECT action, oldstate, newstate, outcome, detail FROM dispatchaudit"
        " WHERE requestid = $1 AND action = 'accept'",
        uuid.UUID(request_id),
    )
    assert [tuple(a) for a in audit] == [
        ("accept", "Ringing", "Ringing", "conflict", "You are Offline: set your availability first")
    ]


async def test_the_queue_etas_start_from_the_device_the_technician_has_now(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    """The accept reads the live position of the technician's last device while it reads
    the request (api/lifecycle.py `_accept_reads`); a technician given another device
    meanwhile has their queue's ETAs from the new one, as a read afterwards has them."""
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service(minutes=30)
    technician_id, tech, _ = await _tech_near(acme, pg, redis_client, redis_prefix)
    first = await _request(client, customer, vehicle_id, [service])
    await eventually(lambda: _rung(pg, first, technician_id))
    assert (await client.put(f"/service-request/{first}/1", headers=tech)).status_code == 200

    # Now in another van, 35 miles north of the first request; the second is near it.
    far = miles_north(*ORIGIN, 30.0)
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await add_device(pg, device, acme.name)
    await place(redis_client, redis_prefix, device, acme.name, *miles_north(*far, 5.0))
    moved = await client.patch(
        f"/technicians/{technician_id}", json={"deviceId": device}, headers=acme.admin
    )
    assert moved.status_code == 200, moved.text
    second = await _request(
        client, customer, vehicle_id, [service], latitude=far[0], longitude=far[1]
    )
    await eventually(lambda: _rung(pg, second, technician_id))
    accepted = await client.put(f"/service-request/{second}/1", headers=tech)
    assert accepted.status_code == 200, accepted.text

    queue = (await client.get(f"/service-request/{first}/queue", headers=acme.admin)).json()
    queue_updates = [e for e in await dispatch_events(redis_client, redis_prefix)
                     if e[0] == "QueueUpdated" and e[1]["technicianId"] == technician_id]  # fmt: skip
    last = queue_updates[-1][1]["queue"]
    assert [q["requestId"] for q in last] == [first, second]
    # 35 miles to the first request: over an hour at the fallback speed, not 5 miles' 12 min.
    assert last[0]["etaSeconds"] > 3600
    assert abs(last[0]["etaSeconds"] - queue["data"]["etaSeconds"]) <= 5
