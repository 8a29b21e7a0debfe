"""Each event reaches exactly the groups it should, once, whichever of two API processes a
client is on; tenants and customers never see each other's events; a technician rung,
disconnected and reconnected within the phase still gets the ring."""

from __future__ import annotations

import asyncio
import collections
import json

import asyncpg
import httpx
import redis.asyncio as aioredis
import websockets

from api.principal import Role
from devtools.ws_client import ws_url
from tests.support.api import Tenant
from tests.support.realtime import (
    ApiProcess,
    Client,
    bearer,
    connect,
    create_request,
    mentions,
    raw_token,
    technician_near,
)

SETTLE_S = 1.0
"""After the last awaited event: time for any stray (wrong, duplicate) one to show up."""


def _count(client: Client, event: str, request_id: str) -> int:
    return sum(1 for m in client.events(event) if mentions(m, request_id))


def _no_duplicates(client: Client) -> None:
    ids = [m["id"] for m in client.messages if m["id"] is not None]
    assert len(ids) == len(set(ids)), collections.Counter(ids).most_common(3)


async def test_each_event_reaches_exactly_its_groups_once(
    apis: list[ApiProcess],
    http: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    one, two = apis
    acme, beta = Tenant(http, "acme"), Tenant(http, "beta")
    service = await acme.service()
    c1_id, vehicle1, c1_headers = await acme.customer()
    c2_id, _, _ = await acme.customer()
    t1_id, t1_token, _ = await technician_near(acme, pg, redis_client, redis_prefix, 3)
    t2_id, t2_token, _ = await technician_near(acme, pg, redis_client, redis_prefix, 4)
    beta_service = await beta.service()
    bc_id, beta_vehicle, bc_headers = await beta.customer()

    admin1 = await connect(one.ws, raw_token(Role.ADMIN, "a1", "acme"))
    admin2 = await connect(two.ws, raw_token(Role.DISPATCHER, "d2", "acme"))
    cust1 = await connect(one.ws, raw_token(Role.CUSTOMER, c1_id, "acme"))
    cust2 = await connect(two.ws, raw_token(Role.CUSTOMER, c2_id, "acme"))
    tech1 = await connect(two.ws, t1_token)
    tech2 = await connect(one.ws, t2_token)
    beta_admin = await connect(one.ws, raw_token(Role.ADMIN, "a1", "beta"))
    beta_cust = await connect(two.ws, raw_token(Role.CUSTOMER, bc_id, "beta"))
    everyone = [admin1, admin2, cust1, cust2, tech1, tech2, beta_admin, beta_cust]

    request_id = await create_request(http, vehicle1, service, c1_headers)
    beta_request = await create_request(http, beta_vehicle, beta_service, bc_headers)
    await tech1.event("ring_notification_received", serviceRequestInfo__requestId=request_id)
    await tech2.event("ring_notification_received", serviceRequestInfo__requestId=request_id)
    accepted = await http.put(f"/service-request/{request_id}/1", headers=bearer(t1_token))
    assert accepted.status_code == 200, accepted.text
    journey = await http.post(
        f"/service-request/{request_id}/start-journey", headers=bearer(t1_token)
    )
    assert journey.status_code == 200, journey.text
    for client in (admin1, admin2, cust1, tech1):
        await client.event("journey_started", requestId=request_id)
    await tech2.event("request_status_changed", requestId=request_id)
    await beta_admin.event("new_service_request", requestId=beta_request)
    await asyncio.sleep(SETTLE_S)

    for client in everyone:
        _no_duplicates(client)
    # Admins of acme, one on each process: the same events in the same order.
    assert [m["id"] for m in admin1.messages] == [m["id"] for m in admin2.messages]
    for client in (admin1, admin2, cust1):
        assert _count(client, "new_service_request", request_id) == 1
        assert _count(client, "request_accepted", request_id) == 1
        assert _count(client, "journey_started", request_id) == 1
    for client in (cust1, admin1, admin2):
        assert _count(client, "ring_notification_received", request_id) == 0
    accepted_event = await cust1.event("request_accepted")
    assert accepted_event["data"]["serviceRequestInfo"]["technicianId"] == t1_id
    assert f"Technician-{t2_id}" in tech2.welcome["data"]["groups"]
    assert _count(tech1, "ring_notification_received", request_id) == 1
    assert _count(tech1, "request_accepted", request_id) == 1
    assert _count(tech1, "journey_started", request_id) == 1
    # The other rung technician learns the request is taken, and nothing after.
    assert _count(tech2, "ring_notification_received", request_id) == 1
    assert _count(tech2, "request_status_changed", request_id) == 1
    assert _count(tech2, "request_accepted", request_id) == 0
    assert _count(tech2, "journey_started", request_id) == 0
    # Another customer, another tenant: nothing of this request, ever.
    for client in (cust2, beta_admin, beta_cust):
        assert not [m for m in client.messages if mentions(m, request_id)]
    for client in (admin1, admin2, cust1, cust2, tech1, tech2):
        assert not [m for m in client.messages if mentions(m, beta_request)]
    assert _count(beta_cust, "new_service_request", beta_request) == 1
    # The queue events: the technician's queue to them and the admins, the position to
    # the customer.
    assert tech1.events("QueueUpdated") and admin1.events("QueueUpdated")
    assert cust1.events("QueuePositionChanged")
    assert not tech2.events("QueueUpdated") and not cust2.events("QueuePositionChanged")
    for client in everyone:
        await client.close()


async def test_a_technician_rung_while_disconnected_gets_the_ring_on_reconnect(
    apis: list[ApiProcess],
    http: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    one, two = apis
    acme = Tenant(http, "acme")
    service = await acme.service()
    _, vehicle, customer = await acme.customer()
    _, token, _ = await technician_near(acme, pg, redis_client, redis_prefix, 3)
    # Connected (so the ring picks them), but the app's socket dies without reading:
    # the ring goes into a connection nobody reads.
    lost = await websockets.connect(await ws_url(one.ws, token))
    welcome = json.loads(await lost.recv())
    assert welcome["event"] == "welcome"
    request_id = await create_request(http, vehicle, service, customer)

    async def rung() -> bool:
        got = await pg.fetchval(
            "SELECT count(*) FROM technicianringlog WHERE requestid = $1::uuid", request_id
        )
        return bool(got)

    from tests.support.api import eventually

    await eventually(rung)
    await lost.close()
    # Back, on the other process, within the ring phase: the ring is replayed.
    back = await connect(two.ws, token, last_event_id=welcome["id"])
    assert back.welcome["data"]["replayed"] >= 1
    ring = [m for m in back.messages if m["event"] == "ring_notification_received"]
    assert [m["data"]["serviceRequestInfo"]["requestId"] for m in ring] == [request_id]
    assert f"Request-{request_id}" in back.welcome["data"]["groups"]
    # ... and the technician can still take it.
    accepted = await http.put(f"/service-request/{request_id}/1", headers=bearer(token))
    assert accepted.status_code == 200, accepted.text
    await back.event("request_accepted", serviceRequestInfo__requestId=request_id)
    await back.close()


async def test_ring_only_rings_connected_technicians(
    apis: list[ApiProcess],
    http: httpx.AsyncClient,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    acme = Tenant(http, "acme")
    service = await acme.service()
    _, vehicle, customer = await acme.customer()
    online_id, online_token, _ = await technician_near(acme, pg, redis_client, redis_prefix, 3)
    offline_id, _, _ = await technician_near(acme, pg, redis_client, redis_prefix, 3)
    online = await connect(apis[1].ws, online_token)
    request_id = await create_request(http, vehicle, service, customer)
    await online.event("ring_notification_received", serviceRequestInfo__requestId=request_id)
    rows = await pg.fetch(
        "SELECT technicianid::text AS t FROM technicianringlog WHERE requestid = $1::uuid",
        request_id,
    )
    assert [r["t"] for r in rows] == [online_id]
    assert offline_id != online_id
    await online.close()
