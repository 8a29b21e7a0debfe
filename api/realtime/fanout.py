"""Each API process reads the dispatch stream (and the gateway's positions and the
engine's events, one stream of each per shard: contracts.keys) with its own XREAD, not a consumer group: every process must see every
event to serve its own clients; the hub routes each to the local connections."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from api.metrics import WS_ROUTED
from api.realtime.protocol import message, parse_entry, text
from api.state import ApiState
from contracts import events
from contracts.positions import entry_fixes
from gateway.redis_link import AnyRedis, Poll, read_streams

log = logging.getLogger("fixgate.api.realtime.fanout")

READ_COUNT = 1000
"""Entries per stream per read: a burst (a ring to a thousand technicians) in one trip."""
BLOCK_MS = 250
"""Longest read wait: also how late a held fleet position may go out, and how often the
fleet map checks whether it is due for a reload."""
RETRY_S = 1.0
POSITIONS_REPLAY_MS = 1000
"""When a first staff client connects, positions are read from this long before (Redis's
clock): it connected at most one read (`BLOCK_MS`) ago, so none of its positions is
missed."""


async def last_id(client: AnyRedis, stream: str) -> str:
    newest = await client.xrevrange(stream, count=1)
    if not newest or newest[0][0] is None:
        return "0-0"
    return text(newest[0][0])


def _geofence(state: ApiState, raw: bytes | str) -> None:
    try:
        event = json.loads(raw)
    except ValueError:
        return
    if not isinstance(event, dict):
        return
    kind, tenant = event.get("type"), event.get("tenant")
    if (
        isinstance(kind, str)
        and kind.startswith(events.GEOFENCE_PREFIX)
        and isinstance(tenant, str)
    ):
        hub = state.realtime.hub
        if hub.has_admins(tenant):
            hub.to_admins(tenant, message(kind, None, text(raw)), None)


async def _watch_positions(
    client: AnyRedis, ids: dict[str, str], positions: list[str], wanted: bool
) -> None:
    """Read the gateway's positions only while staff are connected: they go to nobody else,
    and every API process would otherwise read and parse every fix of the fleet for
    nobody. Watching starts shortly before now, by Redis's clock."""
    if not wanted:
        for stream in positions:
            ids.pop(stream, None)
    elif positions[0] not in ids:
        seconds, micros = await client.time()
        since = f"{seconds * 1000 + micros // 1000 - POSITIONS_REPLAY_MS}-0"
        ids.update(dict.fromkeys(positions, since))


async def run(state: ApiState) -> None:
    keys = state.keys
    dispatch, positions, engine = keys.dispatch, keys.all_positions(), set(keys.all_events())
    rt, client = state.realtime, state.redis
    ids: dict[str, str] = {}
    poll = Poll()
    while not ids:
        try:
            ids = {s: await last_id(client, s) for s in (dispatch, *engine)}
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("fan-out start")
            await asyncio.sleep(RETRY_S)
    while True:
        try:
            await _watch_positions(client, ids, positions, rt.hub.any_admins())
            replies = await read_streams(
                client, ids, count=READ_COUNT, block_ms=BLOCK_MS, poll=poll
            )
            for stream, entries in replies:
                ids[stream] = text(entries[-1][0])
                for entry_id, fields in entries:
                    if stream == dispatch:
                        entry = parse_entry(entry_id, fields)
                        if entry is not None:
                            WS_ROUTED.inc(rt.hub.route(entry))
                    elif stream in engine:
                        raw = events.raw_event(fields)
                        if raw is not None:
                            _geofence(state, raw)
                    elif rt.hub.any_admins():
                        rt.fleet.offer(entry_fixes(fields), rt.hub, time.time())
            rt.fleet.flush(rt.hub, time.time())
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis away: resume from the ids read so far
            log.exception("fan-out")
            await asyncio.sleep(RETRY_S)


async def fleet_maps(state: ApiState) -> None:
    """Reload the device -> technician map apart from the fan-out, so a database outage
    never holds up the events."""
    rt = state.realtime
    while True:
        try:
            if rt.fleet.due(time.time()):
                await rt.fleet.reload(state.pool, time.time())
                rt.fleet.retry_waiting(rt.hub, time.time())
        except asyncio.CancelledError:
            raise
        except Exception:  # the database away: the map stays as it was
            log.exception("fleet map")
            await asyncio.sleep(RETRY_S)
        await asyncio.sleep(BLOCK_MS / 1000)
