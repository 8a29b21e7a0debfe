"""Flow control and refusals: a client that stops reading is closed with 4408 while the
others keep receiving; a missing or bad ticket, a token in the URL or a malformed
last_event_id is refused with its close code; a technician counts as connected for the ring while, and only while, connected."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from api.auth import issue_token
from api.principal import Role
from api.realtime.endpoint import NO_TICKET
from api.realtime.protocol import CLOSE_BAD_REQUEST, CLOSE_TOO_SLOW, CLOSE_UNAUTHORIZED
from devtools.ws_client import ws_url
from tests.support.api import SECRET, Tenant, eventually
from tests.support.realtime import ApiProcess, connect, create_request, raw_token

SEND_QUEUE = 32
SERVICES_PER_REQUEST = 20
"""Big events (a request with many services), so a stalled client's buffers fill fast."""
SMALL_BUFFER_BYTES = 4096
MAX_FLOOD_REQUESTS = 2000


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} not exported"
    return float(found.group(1))


async def _stalled(url: str, token: str) -> websockets.ClientConnection:
    """A client that never reads: small socket buffer, one queued message at most."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER_BYTES)
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    sock.connect((host, int(port)))
    return await websockets.connect(await ws_url(url, token), sock=sock, max_queue=1)


async def test_a_client_that_stops_reading_is_closed_and_the_others_keep_receiving(
    start_apis: Any,
) -> None:
    with start_apis(1, FIXGATE_WS_SEND_QUEUE_MAX=str(SEND_QUEUE)) as [api]:
        async with httpx.AsyncClient(base_url=api.http, timeout=30) as http:
            acme = Tenant(http, "acme")
            services = [await acme.service() for _ in range(SERVICES_PER_REQUEST)]
            _, vehicle, customer = await acme.customer()
            token = raw_token(Role.ADMIN, "a", "acme")
            healthy = await connect(api.ws, token)
            stalled = await _stalled(api.ws, token)

            async def dropped() -> float:
                text = (await http.get("/metrics")).text
                return _metric(text, "fixgate_api_ws_slow_clients_total")

            created: list[str] = []
            started = time.monotonic()
            while not await dropped():
                assert len(created) < MAX_FLOOD_REQUESTS, "the stalled client was never closed"
                body = {"vehicleId": vehicle, "latitude": 40.7, "longitude": -74.0}
                response = await http.post(
                    "/service-request", json={**body, "services": services}, headers=customer
                )
                assert response.status_code == 200, response.text
                created.append(response.json()["data"]["requestId"])
            flood_s = time.monotonic() - started
            # The healthy client got every event, while the stalled one was being dropped.
            for request_id in created:
                await healthy.event("new_service_request", requestId=request_id)
            after = await create_request(http, vehicle, services[0], customer)
            await healthy.event("new_service_request", requestId=after)
            # The stalled client, reading at last, finds the backlog and then the close.
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(stalled.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CLOSE_TOO_SLOW
            print(f"stalled client dropped after {len(created)} requests, {flood_s:.1f} s")
            await healthy.close()


async def _refused(url: str) -> tuple[int, str]:
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_bad_tokens_and_ids_are_refused_with_their_close_code(
    apis: list[ApiProcess],
) -> None:
    url = apis[0].ws
    good = raw_token(Role.ADMIN, "a", "acme")
    expired = issue_token(SECRET, subject="a", tenant="acme", role=Role.ADMIN, ttl_s=-10)
    forged = issue_token("another-secret-" + "y" * 32, subject="a", tenant="acme",
                         role=Role.ADMIN, ttl_s=60)  # fmt: skip
    code, reason = await _refused(url)
    assert (code, reason) == (CLOSE_UNAUTHORIZED, NO_TICKET)
    # A token in the socket's URL is refused unread, even a good one (URLs reach logs).
    code, reason = await _refused(f"{url}?token={good}")
    assert code == CLOSE_UNAUTHORIZED and reason.startswith("a token never goes in a URL")
    # A bad token gets no ticket; a made-up ticket opens nothing.
    async with httpx.AsyncClient(base_url=apis[0].http) as http:
        for bad in ("not-a-jwt", expired, forged):
            refused = await http.post("/ws-ticket", headers={"Authorization": f"Bearer {bad}"})
            assert refused.status_code == 401
            assert refused.json()["message"].startswith("Invalid token")
    code, reason = await _refused(f"{url}?ticket=made-up")
    assert code == CLOSE_UNAUTHORIZED and reason.startswith("invalid ticket")
    code, _ = await _refused(await ws_url(url, good, last_event_id="yesterday"))
    assert code == CLOSE_BAD_REQUEST
    # The same token and a good id are accepted.
    client = await connect(url, good, last_event_id="0-1")
    assert client.welcome["data"]["groups"] == ["AllAdmins"]
    await client.close()


async def test_a_technician_counts_as_connected_while_connected_on_any_process(
    apis: list[ApiProcess], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    from api.realtime.presence import connected_technicians

    technician = str(uuid.uuid4())
    token = raw_token(Role.TECHNICIAN, technician, "acme")
    assert technician not in await connected_technicians(redis_client, redis_prefix, "acme")
    on_one = await connect(apis[0].ws, token)
    on_two = await connect(apis[1].ws, token)
    assert technician in await connected_technicians(redis_client, redis_prefix, "acme")
    assert technician not in await connected_technicians(redis_client, redis_prefix, "beta")
    await on_one.close()

    async def still() -> bool:
        return technician in await connected_technicians(redis_client, redis_prefix, "acme")

    assert await still()  # connected on the other process
    await on_two.close()

    async def gone() -> bool:
        return not await still()

    await eventually(gone)
