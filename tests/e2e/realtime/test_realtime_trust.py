"""Who keeps a socket: a ticket opens one socket once, a socket closes (4401) when the
token behind it expires, and a technician disabled by an admin loses REST and their open
socket at once, on every API process."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import websockets

from api.auth import issue_token
from api.principal import Role
from api.realtime.protocol import CLOSE_UNAUTHORIZED
from devtools.ws_client import ws_url
from tests.support.api import SECRET, Tenant, eventually
from tests.support.realtime import ApiProcess, raw_token

CLOSE_WITHIN_S = 5.0


async def _welcome(ws: websockets.ClientConnection) -> None:
    while True:
        message = await asyncio.wait_for(ws.recv(), 10)
        if '"event":"welcome"' in str(message):
            return


async def _closed(ws: websockets.ClientConnection, within_s: float) -> tuple[int, str]:
    """The close the server sends within `within_s` (reading whatever comes before it)."""
    try:
        async with asyncio.timeout(within_s):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as e:
        assert e.rcvd is not None
        return e.rcvd.code, e.rcvd.reason
    raise AssertionError("not closed")  # pragma: no cover


async def _refused(http: httpx.AsyncClient, headers: dict[str, str]) -> bool:
    return (await http.get("/technician/current-request", headers=headers)).status_code == 401


async def test_a_ticket_opens_one_socket_once(apis: list[ApiProcess]) -> None:
    token = raw_token(Role.ADMIN, "a", "acme")
    url = await ws_url(apis[0].ws, token)
    async with websockets.connect(url) as first:
        await _welcome(first)
        # The same ticket again (a replayed URL, a log line): refused, on any process.
        for api in apis:
            again = url.replace(apis[0].ws, api.ws)
            async with websockets.connect(again) as second:
                code, reason = await _closed(second, CLOSE_WITHIN_S)
            assert code == CLOSE_UNAUTHORIZED and reason.startswith("invalid ticket")


async def test_a_socket_closes_when_its_token_expires(apis: list[ApiProcess]) -> None:
    short = issue_token(SECRET, subject="a", tenant="acme", role=Role.ADMIN, ttl_s=3)
    async with websockets.connect(await ws_url(apis[1].ws, short)) as ws:
        await _welcome(ws)
        code, reason = await _closed(ws, 3 + CLOSE_WITHIN_S)
    assert (code, reason) == (CLOSE_UNAUTHORIZED, "token expired: sign in again")


async def test_a_disabled_technician_loses_rest_and_sockets_at_once(
    apis: list[ApiProcess], http: httpx.AsyncClient
) -> None:
    acme = Tenant(http, "acme")
    technician_id, headers = await acme.technician()
    token = headers["Authorization"].removeprefix("Bearer ")
    other_id, other = await acme.technician()
    sockets: list[Any] = []
    for api in apis:  # one socket on each API process
        ws = await websockets.connect(await ws_url(api.ws, token))
        await _welcome(ws)
        sockets.append(ws)
    assert (await http.get("/technician/current-request", headers=headers)).status_code == 404

    disabled = await http.post(f"/technicians/{technician_id}/disable", headers=acme.admin)
    assert disabled.status_code == 200, disabled.text
    # At once on the process that disabled them; within a moment on the other (NOTIFY).
    refused = await http.get("/technician/current-request", headers=headers)
    assert refused.status_code == 401 and "disabled" in refused.json()["message"]
    for ws in sockets:
        code, reason = await _closed(ws, CLOSE_WITHIN_S)
        assert (code, reason) == (CLOSE_UNAUTHORIZED, "your account is disabled")
    async with httpx.AsyncClient(base_url=apis[1].http) as second:
        assert await eventually(lambda: _refused(second, headers), timeout_s=CLOSE_WITHIN_S)
        assert (await second.post("/ws-ticket", headers=headers)).status_code == 401
    # Nobody else is touched.
    assert (await http.get("/technician/current-request", headers=other)).status_code == 404
    assert other_id != technician_id
