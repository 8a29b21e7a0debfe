"""Admin overrides and the queue: manual assignment, unassign, reorder, FIFO positions and
ETAs that move when a request ahead completes or is canceled; a full queue refuses."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import redis.asyncio as aioredis

from tests.support.api import Tenant, add_device, miles_north, place

ORIGIN = (40.7128, -74.0060)


async def _pending_request(
    client: httpx.AsyncClient, acme: Tenant, service: str
) -> tuple[str, dict[str, str]]:
    """A Scheduled request (it waits: no ring) and its customer's token."""
    _, vehicle_id, customer = await acme.customer()
    response = await client.post(
        "/service-request",
        json={
            "vehicleId": vehicle_id,
            "latitude": ORIGIN[0],
            "longitude": ORIGIN[1],
            "services": [service],
            "serviceScheduleType": "Scheduled",
            "locationPreference": "ServiceCenter",
            "scheduledAt": "2099-01-01T10:00:00Z",
        },
        headers=customer,
    )
    assert response.status_code == 200, response.text
    request_id: str = response.json()["data"]["requestId"]
    return request_id, customer


async def _position(
    client: httpx.AsyncClient, request_id: str, headers: dict[str, str]
) -> tuple[int | None, int | None]:
    data = (await client.get(f"/service-request/{request_id}/queue", headers=headers)).json()[
        "data"
    ]
    return data["queuePosition"], data["etaSeconds"]


async def test_assign_reorder_unassign_and_fifo_queue(
    client: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(client, "acme")
    service = await acme.service(minutes=30)
    await add_device(pg, "van-1", "acme")
    await place(redis_client, redis_prefix, "van-1", "acme", *miles_north(*ORIGIN, 2))
    technician_id, tech = await acme.technician(device_id="van-1")
    requests = [await _pending_request(client, acme, service) for _ in range(3)]
    assert [
        (await client.get(f"/service-request/{r}", headers=c)).json()["data"]["requestStatus"]
        for r, c in requests
    ] == ["Pending"] * 3
    for request_id, _ in requests:
        response = await client.post(
            "/service-request/assign",
            json={"requestId": request_id, "technicianId": technician_id},
            headers=acme.admin,
        )
        assert response.status_code == 200, response.text
    positions = [await _position(client, r, c) for r, c in requests]
    assert [p for p, _ in positions] == [1, 2, 3]
    etas = [e for _, e in positions]
    assert all(e is not None for e in etas) and etas == sorted(etas)  # FIFO: later is later

    # Reorder: the last goes first.
    order = [requests[2][0], requests[0][0], requests[1][0]]
    reordered = await client.put(
        f"/technician/{technician_id}/queue", json={"requestIds": order}, headers=acme.admin
    )
    assert reordered.status_code == 200, reordered.text
    assert [(await _position(client, r, c))[0] for r, c in requests] == [2, 3, 1]
    incomplete = await client.put(
        f"/technician/{technician_id}/queue", json={"requestIds": order[:2]}, headers=acme.admin
    )
    assert incomplete.status_code == 422 and "requestIds" in incomplete.json()["message"]

    # The one ahead is canceled: everyone behind moves up, their ETA shrinks.
    before = await _position(client, requests[0][0], requests[0][1])
    canceled = await client.put(f"/service-request/{requests[2][0]}/3", headers=requests[2][1])
    assert canceled.status_code == 200
    after = await _position(client, requests[0][0], requests[0][1])
    assert after[0] == 1 and before[1] is not None and after[1] is not None and after[1] < before[1]

    # Work through the head; the next one moves to position 1.
    head = requests[0][0]
    assert (
        await client.post(f"/service-request/{head}/start-journey", headers=tech)
    ).status_code == 200
    second = await client.post(f"/service-request/{requests[1][0]}/start-journey", headers=tech)
    assert second.status_code == 409 and "Finish" in second.json()["message"]
    await client.put(f"/service-request/{head}", params={"workAction": 1}, headers=tech)
    done = await client.put(
        f"/service-request/{head}",
        params={"workAction": 2},
        json={"mileage": 1, "evidences": ["e"], "completedServices": [service]},
        headers=tech,
    )
    assert done.status_code == 200, done.text
    assert (await _position(client, requests[1][0], requests[1][1]))[0] == 1

    # Unassign: back to Pending, out of the queue, visible to every technician.
    back = await client.post(f"/service-request/{requests[1][0]}/unassign", headers=acme.admin)
    assert back.status_code == 200, back.text
    detail = (await client.get(f"/service-request/{requests[1][0]}", headers=acme.admin)).json()[
        "data"
    ]
    assert detail["requestStatus"] == "Pending" and detail["technician"] is None
    again = await client.post(f"/service-request/{requests[1][0]}/unassign", headers=acme.admin)
    assert again.status_code == 409 and again.json()["data"] == {"requestStatus": "Pending"}
    audit = await pg.fetch(
        "SELECT action, oldstate, newstate, actorrole FROM dispatchaudit WHERE requestid = $1"
        " AND outcome = 'ok' ORDER BY auditid",
        uuid.UUID(requests[1][0]),
    )
    assert [(a["action"], a["oldstate"], a["newstate"], a["actorrole"]) for a in audit] == [
        ("create", None, "Pending", "customer"),
        ("assign", "Pending", "Assigned", "admin"),
        ("reorder", "Assigned", "Assigned", "admin"),
        ("unassign", "Assigned", "Pending", "admin"),
    ]
    # A technician accepts the Pending request later.
    accepted = await client.put(f"/service-request/{requests[1][0]}/1", headers=tech)
    assert accepted.status_code == 200, accepted.text


async def test_a_full_queue_refuses_accept_and_assign(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    service = await acme.service()
    technician_id, tech = await acme.technician()
    for _ in range(5):
        request_id, _ = await _pending_request(client, acme, service)
        assert (
            await client.put(f"/service-request/{request_id}/1", headers=tech)
        ).status_code == 200
    sixth, _ = await _pending_request(client, acme, service)
    refused = await client.put(f"/service-request/{sixth}/1", headers=tech)
    assert refused.status_code == 409 and "queue is full" in refused.json()["message"]
    assign = await client.post(
        "/service-request/assign",
        json={"requestId": sixth, "technicianId": technician_id},
        headers=acme.admin,
    )
    assert assign.status_code == 409 and "full" in assign.json()["message"]
    _, offline = await acme.technician(availability="Offline")
    off = await client.put(f"/service-request/{sixth}/1", headers=offline)
    assert off.status_code == 409 and "Offline" in off.json()["message"]
