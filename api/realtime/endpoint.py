"""`POST /ws-ticket` (bearer token) then `/ws?ticket=T[&last_event_id=ID]`: authenticate,
join the hub, replay what was missed (or say `resync`), send `welcome` with the seam id,
then the live feed until the client leaves, its token expires or its principal is disabled
(docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import asyncpg
from fastapi import WebSocket
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect

from api.deps import PrincipalDep, StateDep
from api.guard import guarded_router
from api.metrics import WS_CLIENTS, WS_DELIVERY_SECONDS, WS_MESSAGES, WS_REPLAYED, WS_SLOW
from api.models.common import CamelModel, Envelope
from api.principal import Principal, Role
from api.realtime import replay, tickets
from api.realtime.groups import home_groups
from api.realtime.hub import Connection
from api.realtime.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    StreamId,
    format_stream_id,
    message,
    parse_stream_id,
)
from api.realtime.store import initial_groups
from api.state import ApiState

log = logging.getLogger("fixgate.api.realtime")

router = guarded_router()

CLOSE_TIMEOUT_S = 5.0
"""A slow client's close frame waits behind what it has not read: give it this long, then
drop the connection without the handshake."""
MAX_REASON_CHARS = 120
"""A close reason must fit a control frame (123 bytes, RFC 6455 5.5)."""


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await ws.close(code, reason[:MAX_REASON_CHARS])


async def _pump(ws: WebSocket, conn: Connection, seam: StreamId) -> None:
    """Queue to socket; entries up to the seam came with the replay (or before connect)."""
    role = conn.principal.role.value
    while True:
        item = await conn.queue.get()
        if item.sid is not None and item.sid <= seam:
            continue
        await ws.send_text(item.text)
        WS_MESSAGES.labels(role).inc()
        if item.at is not None:
            WS_DELIVERY_SECONDS.observe(max(0.0, time.time() - item.at))


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, to see it leave."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


NO_TICKET = "missing ticket: POST /ws-ticket with your token, then connect to /ws?ticket=..."


async def _principal(state: ApiState, ws: WebSocket) -> Principal | str:
    """The ticket's principal, or why not (a token in the URL is refused, never read)."""
    if "token" in ws.query_params:
        return "a token never goes in a URL: " + NO_TICKET
    ticket = ws.query_params.get("ticket")
    if not ticket:
        return NO_TICKET
    principal = await tickets.redeem(state.redis, state.settings.redis_prefix, ticket)
    if principal is None:
        return "invalid ticket: unknown, used or expired (a ticket works once, within 30 s)"
    if state.principals.disabled(principal):
        return "your account is disabled"
    if principal.expires_at is not None and principal.expires_at <= time.time():
        return "invalid ticket: its token has expired"
    return principal


class TicketResponse(CamelModel):
    ticket: str
    expires_in: int


@router.post("/ws-ticket", tags=["real time"])
async def ws_ticket(state: StateDep, principal: PrincipalDep) -> Envelope[TicketResponse]:
    """A single-use ticket for `/ws?ticket=...`, valid 30 s (docs/realtime.md)."""
    ticket = await tickets.issue(state.redis, state.settings.redis_prefix, principal)
    data = TicketResponse(ticket=ticket, expires_in=tickets.TICKET_TTL_S)
    return Envelope[TicketResponse](status=200, message="OK", data=data)


async def _expiry(principal: Principal) -> None:
    """Returns when the principal's token expires (never, without an expiry)."""
    if principal.expires_at is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(max(0.0, principal.expires_at - time.time()))


async def _catch_up(
    state: ApiState, ws: WebSocket, conn: Connection, last: StreamId | None, at: replay.Seam
) -> int:
    """Send what was missed, or `resync`; how many events were replayed."""
    if last is None or last >= at.sid:
        return 0
    stream = f"{state.settings.redis_prefix}dispatch"
    if replay.must_resync(last, at, state.settings.ws_replay_window_s):
        data = {
            "reason": "events after last_event_id are past the retention window;"
            " reload state over REST",
            "lastEventId": format_stream_id(last),
            "retentionSeconds": state.settings.ws_replay_window_s,
        }
        await ws.send_text(message("resync", None, json.dumps(data)))
        return 0
    sent = 0
    async for entry in replay.missed(
        state.redis, stream, conn.principal, conn.groups, last, at.sid
    ):
        await ws.send_text(entry.text)
        sent += 1
    WS_REPLAYED.inc(sent)
    return sent


@router.websocket("/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    state: ApiState = ws.app.state.api
    rt = state.realtime
    # Accept first: a close code and reason can only be sent on an open WebSocket.
    await ws.accept()
    try:
        who = await _principal(state, ws)
    except (RedisError, OSError):
        await _close(ws, CLOSE_UNAVAILABLE, "try again later")
        return
    if isinstance(who, str):
        await _close(ws, CLOSE_UNAUTHORIZED, who)
        return
    principal = who
    last: StreamId | None = None
    if (raw_last := ws.query_params.get("last_event_id")) is not None:
        try:
            last = parse_stream_id(raw_last)
        except ValueError:
            await _close(ws, CLOSE_BAD_REQUEST, "last_event_id must be a stream id (ms-seq)")
            return
    conn = Connection(principal, home_groups(principal), state.settings.ws_send_queue_max)
    technician = principal.role is Role.TECHNICIAN
    rt.hub.add(conn)
    WS_CLIENTS.labels(principal.role.value).inc()
    present = False
    try:
        try:
            async with state.conn() as db:
                rt.hub.join(conn, await initial_groups(db, principal))
            if technician:
                await rt.presence.join(principal.tenant, principal.subject)
                present = True
            at = await replay.seam(state.redis, f"{state.settings.redis_prefix}dispatch")
            replayed = await _catch_up(state, ws, conn, last, at)
        except (RedisError, OSError, asyncpg.PostgresError):
            log.exception("websocket setup")
            await _close(ws, CLOSE_UNAVAILABLE, "try again later")
            return
        welcome = {
            "role": principal.role.value,
            "tenant": principal.tenant,
            "subject": principal.subject,
            "groups": sorted(conn.groups),
            "replayed": replayed,
        }
        await ws.send_text(message("welcome", format_stream_id(at.sid), json.dumps(welcome)))
        pump = asyncio.create_task(_pump(ws, conn, at.sid))
        drain = asyncio.create_task(_drain(ws))
        slow = asyncio.create_task(conn.overflowed.wait())
        revoked = asyncio.create_task(conn.revoked.wait())
        expired = asyncio.create_task(_expiry(principal))
        done, pending = await asyncio.wait(
            {pump, drain, slow, revoked, expired}, return_when="FIRST_COMPLETED"
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done - {slow, revoked, expired}:
            if not task.cancelled() and task.exception() is not None:
                log.debug("websocket ended: %r", task.exception())
        if slow in done:
            WS_SLOW.inc()
            log.info("closing a slow %s client of %s", principal.role.value, principal.tenant)
            await _close(ws, CLOSE_TOO_SLOW, "too slow: send queue full")
        elif revoked in done:
            await _close(ws, CLOSE_UNAUTHORIZED, "your account is disabled")
        elif expired in done:
            await _close(ws, CLOSE_UNAUTHORIZED, "token expired: sign in again")
    except WebSocketDisconnect:
        pass
    finally:
        rt.hub.remove(conn)
        WS_CLIENTS.labels(principal.role.value).dec()
        if present:
            with contextlib.suppress(RedisError, OSError):
                await rt.presence.leave(principal.tenant, principal.subject)
