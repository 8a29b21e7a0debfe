"""Staff take a call (issue 22 item 2): a dispatcher creates a request for a customer they
name (the lifecycle's create gains the staff party): it rings like a customer's, the audit
names the dispatcher, and the customer is checked against the tenant; the customer's own
path keeps its limits."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from api.principal import Role
from tests.support.api import Tenant, token

ORIGIN = (43.7384, 7.4246)


async def test_a_dispatcher_creates_a_request_for_a_named_customer(
    client: httpx.AsyncClient, pg: asyncpg.Connection
) -> None:
    acme = Tenant(client, "acme")
    customer_id, vehicle_id, _ = await acme.customer()
    service = await acme.service()
    dispatcher = token(Role.DISPATCHER, "dispatcher-7", "acme")
    body = {"customerId": customer_id, "vehicleId": vehicle_id, "latitude": ORIGIN[0],
            "longitude": ORIGIN[1], "services": [service], "priority": "High",
            "location": "Boulevard du Larvotto", "description": "flat tyre, phoned in"}  # fmt: skip
    made = await client.post("/service-request", json=body, headers=dispatcher)
    assert made.status_code == 200, made.text
    request_id = made.json()["data"]["requestId"]
    detail = (await client.get(f"/service-request/{request_id}", headers=dispatcher)).json()["data"]
    assert detail["customerId"] == customer_id
    assert (detail["requestStatus"], detail["priority"]) == ("Ringing", "High")
    audit = await pg.fetchrow(
        "SELECT actorrole, actorsubject, newstate, detail FROM dispatchaudit"
        " WHERE requestid = $1 AND action = 'create'",
        uuid.UUID(request_id),
    )
    assert dict(audit) == {"actorrole": "dispatcher", "actorsubject": "dispatcher-7",
                           "newstate": "Ringing", "detail": f"for customer {customer_id}"}  # fmt: skip
    assert await pg.fetchval("SELECT true FROM ringschedule WHERE requestid = $1",
                             uuid.UUID(request_id))  # fmt: skip


async def test_staff_must_name_a_customer_of_the_tenant_and_its_vehicle(
    client: httpx.AsyncClient,
) -> None:
    acme, globex = Tenant(client, "acme"), Tenant(client, "globex")
    customer_id, vehicle_id, _ = await acme.customer()
    other_id, other_vehicle, _ = await acme.customer()
    foreign_id, foreign_vehicle, _ = await globex.customer()
    service = await acme.service()
    base = {"vehicleId": vehicle_id, "latitude": ORIGIN[0], "longitude": ORIGIN[1],
            "services": [service]}  # fmt: skip
    dispatcher = token(Role.DISPATCHER, "dispatcher-7", "acme")

    async def create(**fields: object) -> httpx.Response:
        return await client.post("/service-request", json={**base, **fields}, headers=dispatcher)

    nameless = await create()
    assert nameless.status_code == 422 and "customerId" in nameless.json()["message"]
    assert (await create(customerId=foreign_id, vehicleId=foreign_vehicle)).status_code == 404
    wrong_vehicle = await create(customerId=customer_id, vehicleId=other_vehicle)
    assert wrong_vehicle.status_code == 422
    assert "no such vehicle of this customer" in wrong_vehicle.json()["message"]
    await client.post(f"/customers/{customer_id}/disable", headers=acme.admin)
    assert (await create(customerId=customer_id)).status_code == 404
    assert other_id  # the second customer only lent a vehicle


async def test_a_customer_still_creates_for_themselves_only(client: httpx.AsyncClient) -> None:
    acme = Tenant(client, "acme")
    mine = await acme.customer()
    other_id, _, _ = await acme.customer()
    service = await acme.service()
    body = {"vehicleId": mine[1], "latitude": ORIGIN[0], "longitude": ORIGIN[1],
            "services": [service]}  # fmt: skip
    theirs = await client.post(
        "/service-request", json={**body, "customerId": other_id}, headers=mine[2]
    )
    assert theirs.status_code == 403
    own = await client.post("/service-request", json={**body, "customerId": mine[0]},
                            headers=mine[2])  # fmt: skip
    assert own.status_code == 200, own.text
    technician, tech_token = await acme.technician()
    assert technician
    refused = await client.post(
        "/service-request", json={**body, "customerId": mine[0]}, headers=tech_token
    )
    assert refused.status_code == 403
