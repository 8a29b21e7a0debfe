"""Engine events into the lifecycle: `trip_arrived` records the arrival of the request whose
id is the trip's `ref`; `trip_update` keeps the request's latest route (for route info and
queue ETAs) and goes out as `LocationUpdated`.

Read with a consumer group on each shard's events stream (contracts.keys), so several API processes split the events
and an entry is acknowledged only once handled; entries left pending by a dead process are
claimed after `CLAIM_IDLE_MS`. Handling is idempotent (arrival is recorded once; the
`LocationUpdated` of a redelivered `trip_update` has the same event id, which the outbox
relay adds to the stream once), so a redelivery does no harm.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from typing import Any

from api import lifecycle
from api.metrics import ENGINE_EVENTS
from api.notify import Notifier
from api.queue import live_position, route_key
from api.state import ApiState
from api.unit_of_work import unit_of_work
from contracts import events
from gateway.redis_link import Entries, Poll, ensure_groups, nogroup, read_group

log = logging.getLogger("fixgate.api.consumer")

GROUP = "fixgate-api"
READ_COUNT = 100
"""Entries per read: a batch per round trip, small enough to keep latency low."""
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000
"""An entry pending this long belongs to a consumer that is gone: take it over."""
CLAIM_EVERY_S = 5.0
"""How often the streams are searched for such entries."""
ROUTE_TTL_S = 24 * 3600
"""A request's latest route outlives any journey, then goes."""
RETRY_S = 1.0
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3e52-6a43-4d3c-9a43-0d7e8f1c2a61")
"""Dispatch event ids derived from engine event ids (uuid5), stable across redelivery."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def handle(state: ApiState, event: dict[str, Any]) -> None:
    kind, ref, tenant = event.get("type"), event.get("ref"), event.get("tenant")
    if kind not in ("trip_arrived", "trip_update") or not ref or not isinstance(tenant, str):
        return
    try:
        request_id = uuid.UUID(str(ref))
    except ValueError:
        return  # a trip someone else started, not a dispatch request
    ENGINE_EVENTS.labels(kind).inc()
    if kind == "trip_arrived":
        await lifecycle.arrived(state, tenant, request_id)
        return
    prefix = state.settings.redis_prefix
    await state.redis.set(route_key(prefix, str(request_id)), json.dumps(event), ex=ROUTE_TTL_S)
    device = event.get("device")
    location = await live_position(
        state.redis, state.keys, device if isinstance(device, str) else None
    )
    payload = {
        "serviceRequestInfo": {"requestId": str(request_id)},
        "technicianLocation": location,
        "distanceInMeter": event.get("distance_m"),
        "etaInSec": event.get("eta_s"),
        "encodedPolyline": event.get("polyline"),
        "polylineVersion": event.get("polyline_version"),
        "calculation": event.get("calculation"),
    }
    engine_id = event.get("id")
    event_id = uuid.uuid5(EVENT_ID_NAMESPACE, engine_id) if isinstance(engine_id, str) else None
    async with unit_of_work(state, tenant) as uow:
        Notifier(uow).location_updated(tenant, str(request_id), payload, event_id)


async def _handle_entries(state: ApiState, stream: str, entries: Entries) -> None:
    for entry_id, fields in entries:
        raw = events.raw_event(fields)
        try:
            if raw is not None:
                await handle(state, json.loads(raw))
        except (ValueError, TypeError):
            log.warning("unreadable engine event %s", _text(entry_id))
        await state.redis.xack(stream, GROUP, entry_id)


async def _claim(state: ApiState, streams: list[str], consumer: str) -> None:
    """Entries a gone consumer left pending (one XAUTOCLAIM per shard's stream)."""
    for stream in streams:
        claimed = await state.redis.xautoclaim(
            stream, GROUP, consumer, min_idle_time=CLAIM_IDLE_MS, count=READ_COUNT
        )
        if claimed and claimed[1]:
            await _handle_entries(state, stream, [e for e in claimed[1] if e and e[1]])


async def worker(state: ApiState) -> None:
    """The engine's events of every shard (contracts.events), in order per shard."""
    streams = state.keys.all_events()
    consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    grouped = False
    poll = Poll()
    next_claim = 0.0
    while True:
        try:
            if not grouped:
                await ensure_groups(state.redis, streams, GROUP)
                grouped = True
            if time.monotonic() >= next_claim:
                await _claim(state, streams, consumer)
                next_claim = time.monotonic() + CLAIM_EVERY_S
            replies = await read_group(
                state.redis, GROUP, consumer, dict.fromkeys(streams, ">"),
                count=READ_COUNT, block_ms=BLOCK_MS, poll=poll,
            )  # fmt: skip
            for stream, entries in replies:
                await _handle_entries(state, stream, entries)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Redis or the database away: retry
            if nogroup(e):  # Redis restarted empty: the groups again, from the start
                grouped = False
                log.warning("engine event consumer: %s; creating the groups again", e)
            else:
                log.exception("engine event consumer")
            await asyncio.sleep(RETRY_S)
