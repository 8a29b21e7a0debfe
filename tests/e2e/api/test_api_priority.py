"""Call priorities (seed 000) through the running app: set at creation, filtered on,
escalated by staff only upwards (audited, with its event), and the ring taking the most
urgent due phase first."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

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

ORIGIN = (40.7128, -74.0060)


async def _priority(client: httpx.AsyncClient, acme: Tenant, request_id: str) -> str:
    response = await client.get(f"/service-request/{request_id}", headers=acme.admin)
    assert response.status_code == 200, response.text
    priority: str = response.json()["data"]["priority"]
    return priority


def _tomorrow() -> dict[str, Any]:
    return {
        "serviceScheduleType": "Scheduled",
        "scheduledAt": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    }


async def test_priority_at_creation_filter_and_escalation(
    make_settings: Any, pg: asyncpg.Connection, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    async with running_app(make_settings()) as client:
        acme, other = Tenant(client, "acme"), Tenant(client, "other")
        customer = await acme.customer()
        usual = await acme.request(customer, ORIGIN, **_tomorrow())
        urgent = await acme.request(customer, ORIGIN, priority="High", **_tomorrow())
        assert await _priority(client, acme, usual) == "Medium"
        assert await _priority(client, acme, urgent) == "High"

        listed = await client.get(
            "/service-requests", params={"priority": "High"}, headers=acme.admin
        )
        assert listed.status_code == 200, listed.text
        assert [r["requestId"] for r in listed.json()["data"]] == [urgent]
        bad = await client.post(
            "/service-request",
            json={"vehicleId": customer[1], "latitude": 1, "longitude": 1,
                  "services": [await acme.service()], "priority": "Urgent"},
            headers=customer[2],
        )  # fmt: skip
        assert bad.status_code == 422, bad.text
        assert "priority" in bad.json()["message"]

        path = f"/service-request/{usual}/priority"
        escalated = await client.put(
            path, json={"priority": "Critical", "reason": "on the hard shoulder"},
            headers=acme.admin,
        )  # fmt: skip
        assert escalated.status_code == 200, escalated.text
        assert await _priority(client, acme, usual) == "Critical"
        # Only upwards: the same or a lower priority is a conflict with the current one.
        for lower in ("Critical", "Low"):
            refused = await client.put(path, json={"priority": lower}, headers=acme.admin)
            assert refused.status_code == 409, refused.text
            assert "Critical" in refused.json()["message"]
        # Staff only; another tenant's request does not exist for them.
        technician_id, technician = await acme.technician()
        for who, status in (
            (customer[2], 403),
            (technician, 403),
            (token(Role.DISPATCHER, "d-1", "acme"), 200),
            (other.admin, 404),
        ):
            response = await client.put(
                f"/service-request/{urgent}/priority", json={"priority": "Critical"}, headers=who
            )
            assert response.status_code == status, (who, response.text)
        # A finished request keeps its priority.
        canceled = await client.put(f"/service-request/{urgent}/3", json={}, headers=customer[2])
        assert canceled.status_code == 200, canceled.text
        late = await client.put(
            f"/service-request/{urgent}/priority", json={"priority": "Critical"}, headers=acme.admin
        )
        assert late.status_code == 409, late.text

    audited = await pg.fetch(
        "SELECT actorrole, outcome, detail FROM dispatchaudit WHERE requestid = $1"
        " AND action = 'escalate' ORDER BY auditid",
        uuid.UUID(usual),
    )
    assert [tuple(r) for r in audited] == [
        ("admin", "ok", "priority Medium -> Critical: on the hard shoulder"),
        ("admin", "conflict", "Can only escalate to a higher priority (it is Critical)"),
        ("admin", "conflict", "Can only escalate to a higher priority (it is Critical)"),
    ]
    events = [
        (payload, groups)
        for name, payload, groups in await dispatch_events(redis_client, redis_prefix)
        if name == "request_escalated"
    ]
    assert [(p["serviceRequestInfo"]["requestId"], p["previousPriority"], p["priority"])
            for p, _ in events] == [(usual, "Medium", "Critical"), (urgent, "High", "Critical")]  # fmt: skip
    assert {f"Request-{usual}", "AllAdmins"} <= set(events[0][1])
    assert technician_id  # a technician of the tenant, refused above


async def test_the_ring_takes_the_most_urgent_due_phase_first(
    make_settings: Any, pg: asyncpg.Connection, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    # One worker: due phases run one at a time, in the order the ring takes them.
    async with running_app(make_settings(ring_workers=1, ring_poll_s=0.05)) as client:
        acme = Tenant(client, "acme")
        device = f"dev-{uuid.uuid4().hex[:8]}"
        await add_device(pg, device, acme.name)
        await place(redis_client, redis_prefix, device, "acme", *miles_north(*ORIGIN, 5))
        technician_id, _ = await acme.technician(device_id=device)
        customer = await acme.customer()
        low = await acme.request(customer, ORIGIN, priority="Low", **_tomorrow())
        critical = await acme.request(customer, ORIGIN, priority="Critical", **_tomorrow())
        # Both due at once, the Low one for longer: Critical still rings first.
        await pg.execute(
            "UPDATE ringschedule SET dueat = CASE WHEN requestid = $1"
            " THEN now() - interval '1 minute' ELSE now() - interval '1 second' END"
            " WHERE requestid = ANY($2::uuid[])",
            uuid.UUID(low),
            [uuid.UUID(low), uuid.UUID(critical)],
        )

        async def both_rung() -> bool:
            found = await pg.fetchval(
                "SELECT count(*) FROM technicianringlog WHERE technicianid = $1",
                uuid.UUID(technician_id),
            )
            return bool(found == 2)

        await eventually(both_rung, timeout_s=10)
    order = await pg.fetch(
        "SELECT requestid FROM dispatchaudit WHERE action = 'ring' ORDER BY auditid"
    )
    assert [str(r["requestid"]) for r in order] == [critical, low]


async def test_an_accept_while_the_request_is_escalated_still_wins(
    make_settings: Any, pg: asyncpg.Connection
) -> None:
    # The accept reads the request, then its conditional update waits for the escalation
    # that holds the row; the version it read is gone, but nobody took the request.
    async with running_app(make_settings()) as client:
        acme = Tenant(client, "acme")
        customer = await acme.customer()
        request_id = await acme.request(customer, ORIGIN, **_tomorrow())
        technician_id, technician = await acme.technician()
        escalation = pg.transaction()
        await escalation.start()
        await pg.execute(
            "UPDATE servicerequests SET priority = 3, version = version + 1 WHERE requestid = $1",
            uuid.UUID(request_id),
        )
        accept = asyncio.create_task(
            client.put(f"/service-request/{request_id}/1", json={}, headers=technician)
        )

        async def waiting() -> bool:
            found = await pg.fetchval(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
            )
            return bool(found)

        await eventually(waiting)
        await escalation.commit()
        response = await accept
        assert response.status_code == 200, response.text
        detail = (await client.get(f"/service-request/{request_id}", headers=acme.admin)).json()
        assert detail["data"]["requestStatus"] == "Assigned"
        assert detail["data"]["technician"]["technicianId"] == technician_id
        assert detail["data"]["priority"] == "Critical"
