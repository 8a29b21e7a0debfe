"""Engine events into the lifecycle: `trip_arrived` records the arrival of the request whose
id is the trip's `ref`; `trip_update` keeps the request's latest route (for route info and
queue ETAs) and goes out as `LocationUpdated`.

Read with a consumer group on `{prefix}events`, so several API processes split the events
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
import uuid
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from api import lifecycle
from api.metrics import ENGINE_EVENTS
from api.notify import Notifier
from api.queue import live_position, route_key
from api.state import ApiState
from api.unit_of_work import unit_of_work

log = logging.getLogger("fixgate.api.consumer")

GROUP = "fixgate-api"
READ_COUNT = 100
"""Entries per read: a batch per round trip, small enough to keep latency low."""
BLOCK_MS = 1000
CLAIM_IDLE_MS = 30_000
"""An entry pending this long belongs to a consumer that is gone: take it over."""
ROUTE_TTL_S = 24 * 3600
"""A request's latest route outlives any journey, then goes."""
RETRY_S = 1.0
EVENT_ID_NAMESPACE = uuid.UUID("5b0f3e52-6a43-4d3c-9a43-0d7e8f1c2a61")
"""Dispatch event ids derived from engine event ids (uuid5), stable across redelivery."""


Entries = list[tuple[bytes | str, dict[Any, Any]]]


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
    location = await live_position(state.redis, prefix, device if isinstance(device, str) else None)
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


async def _ensure_group(client: aioredis.Redis, stream: str) -> None:
    try:
        # From the start of the stream: arrivals that happened while no API ran still count.
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def _handle_entries(state: ApiState, stream: str, entries: Entries) -> None:
    for entry_id, fields in entries:
        raw = fields.get(b"event", fields.get("event"))
        try:
            if raw is not None:
                await handle(state, json.loads(raw))
        except (ValueError, TypeError):
            log.warning("unreadable engine event %s", _text(entry_id))
        await state.redis.xack(stream, GROUP, entry_id)


async def worker(state: ApiState) -> None:
    stream = f"{state.settings.redis_prefix}events"
    consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    while True:
        try:
            await _ensure_group(state.redis, stream)
            claimed = await state.redis.xautoclaim(
                stream, GROUP, consumer, min_idle_time=CLAIM_IDLE_MS, count=READ_COUNT
            )
            if claimed and claimed[1]:
                await _handle_entries(state, stream, claimed[1])
            replies = await state.redis.xreadgroup(
                GROUP, consumer, {stream: ">"}, count=READ_COUNT, block=BLOCK_MS
            )
            # [[stream, [(id, fields), ...]]]; redis-py types the reply loosely.
            for _, entries in cast(list[tuple[Any, Entries]], replies or []):
                await _handle_entries(state, stream, entries)
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis or the database away: retry
            log.exception("engine event consumer")
            await asyncio.sleep(RETRY_S)
