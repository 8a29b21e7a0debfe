"""A technician's queue: FIFO order (admins may reorder), positions and queue ETAs.

ETA of the request at position p (the specification's formula): the travel and service
time of everything ahead of it, plus the travel to it, plus a buffer. The leg being
driven uses the engine's latest `trip_update` ETA for it; other legs are straight-line
distance at a fallback speed (the specification's 25 mph). What the ETAs need of Redis
(the technician's live position, the routes being driven) comes in one round trip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg

from api.machine import RequestStatus
from api.settings import ApiSettings
from api.store import requests as store
from api.store.requests import QueuedRequest
from contracts import live
from contracts.geodesy import haversine_m
from contracts.keys import Keys
from gateway.redis_link import AnyRedis


def route_key(prefix: str, request_id: str) -> str:
    """The latest `trip_update` of a request's trip, kept by the engine-event consumer."""
    return f"{prefix}dispatch:route:{request_id}"


def _position(raw: Mapping[Any, Any]) -> dict[str, Any] | None:
    """A device's live position (contracts.live) in the API's shape; None if none."""
    found = live.decode(raw)
    if found is None:
        return None
    return {
        "latitude": found.lat, "longitude": found.lon, "updatedAt": found.time,
        "tenant": found.tenant, "heading": found.heading, "speed": found.speed,
        "accuracy": found.accuracy,
    }  # fmt: skip


async def live_position(
    client: AnyRedis, keys: Keys, device_id: str | None
) -> dict[str, Any] | None:
    if device_id is None:
        return None
    return _position(await client.hgetall(keys.device(device_id)))


async def live_positions(
    client: AnyRedis, keys: Keys, device_ids: Sequence[str | None]
) -> list[dict[str, Any] | None]:
    """The live positions of many devices in one round trip (None: no device, none known)."""
    known = [d for d in device_ids if d is not None]
    if not known:
        return [None] * len(device_ids)
    pipe = client.pipeline(transaction=False)
    for device in known:
        pipe.hgetall(keys.device(device))
    found = iter(await pipe.execute())
    return [_position(next(found)) if d is not None else None for d in device_ids]


async def live_fields(
    client: AnyRedis, keys: Keys, device_ids: Sequence[str]
) -> list[dict[str, str] | None]:
    """The live hashes of many devices as text (contracts.live's fields), in one round trip
    (None: none known)."""
    if not device_ids:
        return []
    pipe = client.pipeline(transaction=False)
    for device in device_ids:
        pipe.hgetall(keys.device(device))
    found = await pipe.execute()
    return [{_text(k): _text(v) for k, v in raw.items()} if raw else None for raw in found]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def latest_route(client: AnyRedis, prefix: str, request_id: str) -> dict[str, Any] | None:
    raw = await client.get(route_key(prefix, request_id))
    if raw is None:
        return None
    route: dict[str, Any] = json.loads(raw)
    return route


async def read(
    conn: asyncpg.Connection, tenant: str, technician_id: UUID
) -> tuple[str | None, list[QueuedRequest]]:
    """(the technician's device, their queue in order), in one statement."""
    device, rows = await store.queue_of(conn, tenant, technician_id)
    return device, [QueuedRequest.of(r) for r in rows]


class LiveRead(NamedTuple):
    """A device's live position as read ahead of the action that needs it (`entries`)."""

    device_id: str
    position: dict[str, Any] | None


async def read_live(client: AnyRedis, keys: Keys, device_id: str) -> LiveRead:
    return LiveRead(device_id, await live_position(client, keys, device_id))


async def entries(
    client: AnyRedis,
    settings: ApiSettings,
    technician_id: UUID,
    device_id: str | None,
    queued: Sequence[QueuedRequest],
    now: datetime | None = None,
    *,
    ahead: LiveRead | None = None,
) -> list[dict[str, Any]]:
    """The technician's queue in order, each with its position and ETA (None if unknown).
    `ahead`: the live position read meanwhile, used when it is `device_id`'s (then, with
    no leg being driven, no round trip at all)."""
    keys, prefix = settings.keys(), settings.redis_prefix
    driving = [q for q in queued if q.status is RequestStatus.EN_ROUTE]
    fetch = device_id if ahead is None or ahead.device_id != device_id else None
    pipe = client.pipeline(transaction=False)
    if fetch is not None:
        pipe.hgetall(keys.device(fetch))
    for q in driving:
        pipe.get(route_key(prefix, str(q.request_id)))
    found = list(await pipe.execute()) if fetch is not None or driving else []
    if fetch is not None:
        here = _position(found.pop(0))
    else:
        here = ahead.position if ahead is not None and device_id is not None else None
    routes = {q.request_id: json.loads(raw) for q, raw in zip(driving, found, strict=True) if raw}
    return _etas(settings, technician_id, here, routes, queued, now or datetime.now(UTC))


def _etas(
    settings: ApiSettings,
    technician_id: UUID,
    here: dict[str, Any] | None,
    routes: Mapping[UUID, dict[str, Any]],
    queued: Sequence[QueuedRequest],
    now: datetime,
) -> list[dict[str, Any]]:
    at: tuple[float, float] | None = (here["latitude"], here["longitude"]) if here else None
    elapsed_s: float | None = 0.0
    result: list[dict[str, Any]] = []
    for position, q in enumerate(queued, start=1):
        service_s = q.minutes * 60.0
        eta_s: float | None = None
        if elapsed_s is not None:
            if q.status is RequestStatus.IN_PROGRESS:
                done_s = (now - q.started_at).total_seconds() if q.started_at else 0.0
                eta_s = 0.0
                elapsed_s += max(0.0, service_s - done_s)
            else:
                route = routes.get(q.request_id)
                if route is not None and route.get("eta_s") is not None:
                    travel_s: float | None = float(route["eta_s"])
                elif at is not None:
                    meters = haversine_m(at[0], at[1], q.lat, q.lon)
                    travel_s = meters / settings.fallback_speed_mps
                else:
                    travel_s = None  # nowhere to start from: no live position
                if travel_s is None:
                    elapsed_s = None
                else:
                    elapsed_s += travel_s
                    eta_s = elapsed_s + settings.eta_buffer_s
                    elapsed_s += service_s
        at = (q.lat, q.lon)
        entry: dict[str, Any] = {
            "requestId": str(q.request_id),
            "customerId": str(q.customer_id),
            "technicianId": str(technician_id),
            "requestStatus": q.status.value,
            "queuePosition": position,
            "queueLength": len(queued),
            "etaSeconds": None if eta_s is None else round(eta_s),
            "etaWindowStart": None,
            "etaWindowEnd": None,
        }
        if eta_s is not None:
            start = now + timedelta(seconds=eta_s)
            entry["etaWindowStart"] = start.isoformat()
            entry["etaWindowEnd"] = (start + timedelta(seconds=settings.eta_window_s)).isoformat()
        result.append(entry)
    return result
