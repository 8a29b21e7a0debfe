"""Trust in the API (issue 20): personal data by need for every role, both ways; admin and
dispatcher apart; a disabled customer loses access at once; bounds an attacker could push
(bodies, methods as metric labels, open requests, creation rate, geofence vertices, fences
per tenant, evidences); no token in a URL; the pages' headers; the principal checked
before a body is parsed or a database connection taken; the demo secret kept to loopback.
(`/readyz` naming what is down without its error: tests/fault/test_redis_restart.py.)"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from api.app import ConfigError, create_app
from api.principal import Role
from api.settings import DEMO_API_SECRET, ApiSettings
from tests.e2e.api.test_api_lifecycle import ORIGIN, _tech_near
from tests.support.api import (
    Tenant,
    eventually,
    fresh_minute,
    miles_north,
    place,
    raw_token,
    running_app,
    token,
)

PERSONAL = ("firstName", "lastName", "email", "phoneNumber", "userId")


async def _rung(pg: asyncpg.Connection, request_id: str, technician_id: str) -> bool:
    return bool(
        await pg.fetchval(
            "SELECT true FROM technicianringlog WHERE requestid = $1 AND technicianid = $2"
            " AND ringendedat IS NULL",
            uuid.UUID(request_id),
            uuid.UUID(technician_id),
        )
    )


async def _detail(client: httpx.AsyncClient, request_id: str, who: dict[str, str]) -> Any:
    got = await client.get(f"/service-request/{request_id}", headers=who)
    return got.json()["data"] if got.status_code == 200 else got.status_code


async def test_each_role_sees_what_it_needs_of_a_request_and_nothing_more(
    make_settings: Any,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
) -> None:
    # Long phases: both near technicians stay rung while the test looks.
    async with running_app(make_settings(ring_phase_s=30.0, ring_poll_s=0.05)) as client:
        acme = Tenant(client, "acme")
        customer_id, vehicle_id, customer = await acme.customer()
        _, _, stranger = await acme.customer()
        service = await acme.service()
        winner_id, winner, device = await _tech_near(acme, pg, redis_client, redis_prefix, 2)
        loser_id, loser, _ = await _tech_near(acme, pg, redis_client, redis_prefix, 3)
        far_id, far, _ = await _tech_near(acme, pg, redis_client, redis_prefix, 50)
        dispatcher = token(Role.DISPATCHER, "disp-1", "acme")
        created = await client.post(
            "/service-request",
            json={"vehicleId": vehicle_id, "latitude": ORIGIN[0], "longitude": ORIGIN[1],
                  "location": "Main St 1", "services": [service]},
            headers=customer,
        )  # fmt: skip
        request_id = created.json()["data"]["requestId"]
        for rung_id in (winner_id, loser_id):
            await eventually(lambda r=rung_id: _rung(pg, request_id, r))

        # Ringing: the rung technicians see where and what, nobody's personal data.
        for who in (winner, loser):
            seen = await _detail(client, request_id, who)
            assert seen["latitude"] == ORIGIN[0] and seen["location"] == "Main St 1"
            assert seen["services"][0]["serviceId"] == service
            assert seen["vehicle"]["make"] == "BMW" and seen["vehicle"]["vin"] is None
            assert all(seen["customer"][k] is None for k in PERSONAL)
        # A technician it does not ring, and another customer: nothing, as if it did not exist.
        assert await _detail(client, request_id, far) == 404
        assert await _detail(client, request_id, stranger) == 404
        # Staff and its customer see the customer whole.
        for who in (acme.admin, dispatcher, customer):
            seen = await _detail(client, request_id, who)
            assert seen["customer"]["firstName"] == "John" and seen["vehicle"]["vin"]

        accepted = await client.put(f"/service-request/{request_id}/1", headers=winner)
        assert accepted.status_code == 200, accepted.text
        # Assigned: its technician sees it whole; the one who lost the race sees nothing of
        # it any more, its route (the winner's position) least of all; a late accept of theirs
        # still hears "taken", not "not found".
        mine = await _detail(client, request_id, winner)
        assert mine["customer"]["firstName"] == "John" and mine["vehicle"]["vin"]
        assert await _detail(client, request_id, loser) == 404
        route = await client.get(f"/service-request/{request_id}/route-info", headers=loser)
        assert route.status_code == 404
        late = await client.put(f"/service-request/{request_id}/1", headers=loser)
        assert late.status_code == 409 and "taken" in late.json()["message"]

        # The customer's view: no device of the fleet's, no user ids; no position before
        # the technician is on the way, a position while they are.
        seen = await _detail(client, request_id, customer)
        assert seen["technician"]["technicianId"] == winner_id
        assert seen["technician"]["deviceId"] is None and seen["technician"]["userId"] is None
        assert seen["customer"]["userId"] is None
        staff_view = await _detail(client, request_id, acme.admin)
        assert staff_view["technician"]["deviceId"] == device
        before = (
            await client.get(f"/service-request/{request_id}/route-info", headers=customer)
        ).json()
        assert before["data"]["technicianLocation"] is None
        journey = await client.post(f"/service-request/{request_id}/start-journey", headers=winner)
        assert journey.status_code == 200, journey.text
        await place(redis_client, redis_prefix, device, "acme", *miles_north(*ORIGIN, 1))
        on_the_way = await client.get(f"/service-request/{request_id}/route-info", headers=customer)
        assert on_the_way.json()["data"]["technicianLocation"]["latitude"] > ORIGIN[0]
        initial = await client.get("/service-request/initial-data", headers=customer)
        assert initial.json()["data"]["technicianInfo"]["deviceId"] is None
        assert initial.json()["data"]["technicianLocation"] is not None

        # Done: the customer no longer follows the technician; the technician no longer
        # reads the customer's data.
        await client.put(f"/service-request/{request_id}", params={"workAction": 1}, headers=winner)
        done = await client.put(
            f"/service-request/{request_id}", params={"workAction": 2},
            json={"mileage": 3, "evidences": ["photo"], "completedServices": [service]},
            headers=winner,
        )  # fmt: skip
        assert done.status_code == 200, done.text
        after = await client.get(f"/service-request/{request_id}/route-info", headers=customer)
        assert after.json()["data"]["technicianLocation"] is None
        assert await _detail(client, request_id, winner) == 404
        assert (await _detail(client, request_id, customer))["requestStatus"] == "Completed"
        assert far_id and customer_id


async def test_a_pending_request_is_every_technicians_to_take_without_personal_data(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    _, tech = await acme.technician()
    created = await client.post(
        "/service-request",
        json={"vehicleId": vehicle_id, "latitude": 1.0, "longitude": 2.0,
              "services": [await acme.service()], "serviceScheduleType": "Scheduled",
              "scheduledAt": "2099-01-01T10:00:00Z"},
        headers=customer,
    )  # fmt: skip
    request_id = created.json()["data"]["requestId"]
    seen = await _detail(client, request_id, tech)
    assert seen["requestStatus"] == "Pending" and seen["latitude"] == 1.0
    assert all(seen["customer"][k] is None for k in PERSONAL) and seen["vehicle"]["vin"] is None
    listed = (await client.get("/service-requests", headers=tech)).json()["data"]
    assert [r["requestId"] for r in listed] == [request_id]
    assert listed[0]["customer"]["email"] is None


async def test_only_an_admin_manages_the_fleet_a_dispatcher_runs_requests(
    client: httpx.AsyncClient,
) -> None:
    acme = Tenant(client, "acme")
    dispatcher = token(Role.DISPATCHER, "disp-1", "acme")
    technician = {"technicianCode": "T-9", "firstName": "A", "lastName": "B"}
    service = {"serviceCode": "S-9", "serviceName": "Tow", "servicePrice": 1, "durationMinutes": 1}
    for path, body in (("/technicians", technician), ("/services", service),
                       ("/vans", {"vanNumber": "V-9"})):  # fmt: skip
        refused = await client.post(path, json=body, headers=dispatcher)
        assert refused.status_code == 403, path
        assert (await client.post(path, json=body, headers=acme.admin)).status_code == 200, path
        # ... and reads them, to dispatch.
        assert (await client.get(path, headers=dispatcher)).status_code == 200, path
    # A dispatcher takes a call: the customer and their vehicle.
    customer = await client.post("/customers", json={"customerCode": "C-9"}, headers=dispatcher)
    assert customer.status_code == 200, customer.text


async def test_a_disabled_customer_loses_access_at_once(client: httpx.AsyncClient) -> None:
    acme = Tenant(client, "acme")
    customer_id, _, customer = await acme.customer()
    assert (await client.get("/service-requests", headers=customer)).status_code == 200
    disabled = await client.post(f"/customers/{customer_id}/disable", headers=acme.admin)
    assert disabled.status_code == 200, disabled.text
    refused = await client.get("/service-requests", headers=customer)
    assert refused.status_code == 401 and "disabled" in refused.json()["message"]
    assert (await client.post("/ws-ticket", headers=customer)).status_code == 401


async def test_a_customer_holds_at_most_five_open_requests(client: httpx.AsyncClient) -> None:
    acme = Tenant(client, "acme")
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    body = {"vehicleId": vehicle_id, "latitude": 1.0, "longitude": 2.0, "services": [service]}
    ids = []
    for _ in range(5):
        made = await client.post("/service-request", json=body, headers=customer)
        assert made.status_code == 200, made.text
        ids.append(made.json()["data"]["requestId"])
    sixth = await client.post("/service-request", json=body, headers=customer)
    assert sixth.status_code == 409 and "at most 5" in sixth.json()["message"]
    # One canceled: room for another.
    await client.put(f"/service-request/{ids[0]}/3", headers=customer)
    assert (await client.post("/service-request", json=body, headers=customer)).status_code == 200


async def test_request_creation_is_rate_limited_per_principal(make_settings: Any) -> None:
    async with running_app(
        make_settings(create_requests_per_min=3, customer_open_requests_max=50)
    ) as client:
        acme = Tenant(client, "acme")
        _, vehicle_id, customer = await acme.customer()
        _, other_vehicle, other = await acme.customer()
        service = await acme.service()
        await fresh_minute()
        for _ in range(3):
            body = {
                "vehicleId": vehicle_id,
                "latitude": 1.0,
                "longitude": 2.0,
                "services": [service],
            }
            assert (
                await client.post("/service-request", json=body, headers=customer)
            ).status_code == 200
        limited = await client.post("/service-request", json=body, headers=customer)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["Retry-After"]) <= 61
        assert "at most 3" in limited.json()["message"]
        # Another customer is not held up by the first one's rate.
        body = {
            "vehicleId": other_vehicle,
            "latitude": 1.0,
            "longitude": 2.0,
            "services": [service],
        }
        assert (await client.post("/service-request", json=body, headers=other)).status_code == 200


async def test_geofences_and_evidences_are_bounded_with_a_422_naming_the_limit(
    make_settings: Any,
) -> None:
    async with running_app(make_settings(geofences_per_tenant_max=2)) as client:
        acme = Tenant(client, "acme")
        ring = [[7.0 + 0.001 * (i % 100), 43.0 + 0.00001 * i] for i in range(10_001)]
        huge = {"name": "huge", "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}}
        refused = await client.post("/geofences", json=huge, headers=acme.admin)
        assert refused.status_code == 422 and "at most 10000" in refused.json()["message"]
        square = [[[7.0, 43.0], [7.01, 43.0], [7.01, 43.01], [7.0, 43.01], [7.0, 43.0]]]
        for n in range(2):
            body = {"name": f"f{n}", "geometry": {"type": "Polygon", "coordinates": square}}
            assert (
                await client.post("/geofences", json=body, headers=acme.admin)
            ).status_code == 200
        third = {"name": "f3", "geometry": {"type": "Polygon", "coordinates": square}}
        too_many = await client.post("/geofences", json=third, headers=acme.admin)
        assert too_many.status_code == 422 and "at most 2" in too_many.json()["message"]
        _, tech = await acme.technician()
        many = await client.put(
            f"/service-request/{uuid.uuid4()}", params={"workAction": 2},
            json={"mileage": 1, "evidences": ["x"] * 51, "completedServices": [str(uuid.uuid4())]},
            headers=tech,
        )  # fmt: skip
        assert many.status_code == 422 and "evidences" in many.json()["message"]


async def test_no_token_in_a_url_and_the_pages_headers(client: httpx.AsyncClient) -> None:
    admin = raw_token(Role.ADMIN, "admin-1", "acme")
    in_url = await client.get(f"/service-requests?token={admin}")
    assert in_url.status_code == 401 and "never in a URL" in in_url.json()["message"]
    both = await client.get(
        f"/service-requests?token={admin}", headers={"Authorization": f"Bearer {admin}"}
    )
    assert both.status_code == 401
    assert (await client.get(f"/console?token={admin}")).status_code == 401
    for page in ("/console", f"/track/{uuid.uuid4()}"):
        got = await client.get(page)
        assert got.status_code == 200
        assert got.headers["referrer-policy"] == "no-referrer"
        csp = got.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert (await client.get("/static/common.js")).headers["referrer-policy"] == "no-referrer"


async def test_the_principal_is_checked_before_the_body_or_a_database_connection(
    make_settings: Any,
) -> None:
    app = create_app(make_settings(api_db_pool_max=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            pool = app.state.api.pool
            async with pool.acquire():  # the API's only connection, held
                async with asyncio.timeout(5):
                    bad_body = await client.post(
                        "/service-request",
                        content=b"{not json",
                        headers={"Content-Type": "application/json"},
                    )
                    assert bad_body.status_code == 401  # not 422: the body was never parsed
                    no_token = await client.get("/service-requests")
                    assert no_token.status_code == 401  # not stuck waiting for the pool


async def test_made_up_methods_add_no_metric_series(services: Any, make_settings: Any) -> None:
    settings = make_settings()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:

            async def series() -> int:
                text = (await client.get("/metrics")).text
                return len(re.findall(r"^fixgate_api_request_seconds_count\{", text, re.M))

            await client.request("MADEUP", "/healthz")  # the one series of unknown methods
            await series()  # and the scrape's own
            before = await series()
            for n in range(200):
                await client.request(f"M{n}X", "/healthz")
            assert await series() == before
            text = (await client.get("/metrics")).text
            assert 'method="other"' in text and 'method="M1X"' not in text


def _raw(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        return s.recv(65536)


def test_a_64_mib_body_is_refused_unread(api_server: str) -> None:
    port = int(api_server.rsplit(":", 1)[1])
    admin = raw_token(Role.ADMIN, "admin-1", "acme")
    head = (
        f"POST /customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {64 << 20}\r\n\r\n"
    ).encode()
    # Only the headers and a few bytes go out: the answer comes without the 64 MiB.
    answer = _raw(port, head, b'{"customerCode": ')
    assert answer.startswith(b"HTTP/1.1 413")
    chunked = (
        f"POST /customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"x" * (256 << 10)
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(5))
    assert _raw(port, chunked, body).startswith(b"HTTP/1.1 413")


def test_the_demo_secret_stays_on_loopback(services: Any) -> None:
    with pytest.raises(ConfigError, match="demo"):
        create_app(ApiSettings(api_secret=DEMO_API_SECRET, api_host="0.0.0.0"))
    create_app(ApiSettings(api_secret=DEMO_API_SECRET, api_host="127.0.0.1"))
