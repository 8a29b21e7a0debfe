"""A technician's queue: FIFO order (admins may reorder), positions and queue ETAs.

ETA of the request at position p (the specification's formula): the travel and service
time of everything ahead of it, plus the travel to it, plus a buffer. The leg being
driven uses the engine's latest `trip_update` ETA for it; other legs are straight-line
distance at a fallback speed (the specification's 25 mph).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from api.settings import ApiSettings
from api.store.requests import QUEUED_STATES
from contracts import live
from contracts.geodesy import haversine_m
from contracts.keys import Keys
from gateway.redis_link import AnyRedis


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def route_key(prefix: str, request_id: str) -> str:
    """The latest `trip_update` of a request's trip, kept by the engine-event consumer."""
    return f"{prefix}dispatch:route:{request_id}"


async def renumber(conn: asyncpg.Connection, tenant: str, technician_id: UUID) -> None:
    """Positions 1..n over the technician's queued requests, keeping their order; requests
    that left the queue lose their position. Not a state change: versions stay."""
    await conn.execute(
        """
        UPDATE servicerequests r SET queueposition = q.rn
        FROM (SELECT requestid, row_number() OVER (
                  ORDER BY queueposition NULLS LAST, assignedat, requestid) AS rn
              FROM servicerequests
              WHERE tenant_id = $1 AND currenttechnicianid = $2
                AND requeststatus = ANY($3::text[])) q
        WHERE r.requestid = q.requestid AND r.queueposition IS DISTINCT FROM q.rn
        """,
        tenant,
        technician_id,
        list(QUEUED_STATES),
    )


async def live_position(
    client: AnyRedis, keys: Keys, device_id: str | None
) -> dict[str, Any] | None:
    """The device's live position (contracts.live) in the API's shape; None if none."""
    if device_id is None:
        return None
    found = live.decode(await client.hgetall(keys.device(device_id)))
    if found is None:
        return None
    return {
        "latitude": found.lat, "longitude": found.lon, "updatedAt": found.time,
        "tenant": found.tenant, "heading": found.heading, "speed": found.speed,
        "accuracy": found.accuracy,
    }  # fmt: skip


async def latest_route(client: AnyRedis, prefix: str, request_id: str) -> dict[str, Any] | None:
    raw = await client.get(route_key(prefix, request_id))
    if raw is None:
        return None
    route: dict[str, Any] = json.loads(raw)
    return route


async def entries(
    conn: asyncpg.Connection,
    client: AnyRedis,
    settings: ApiSettings,
    tenant: str,
    technician_id: UUID,
) -> list[dict[str, Any]]:
    """The technician's queue in order, each with its position and ETA (None if unknown)."""
    # One round trip: the technician's device (its live position is where the queue
    # starts) and the queue; the device's row comes alone when the queue is empty.
    found = await conn.fetch(
        """
        SELECT t.device_id, q.*
        FROM technicianmaster t
        LEFT JOIN LATERAL (
            SELECT r.requestid, r.customerid, r.requeststatus, r.queueposition, r.startedat,
                   r.assignedat, r.latitude::float8 AS lat, r.longitude::float8 AS lon,
                   coalesce((SELECT sum(durationminutes) FROM requestedservices rs
                             WHERE rs.requestid = r.requestid
                               AND rs.servicestatus <> 'Rejected'), 0) AS minutes
            FROM servicerequests r
            WHERE r.tenant_id = $1 AND r.currenttechnicianid = t.technicianid
              AND r.requeststatus = ANY($3::text[])
        ) q ON true
        WHERE t.technicianid = $2
        ORDER BY q.queueposition NULLS LAST, q.assignedat, q.requestid
        """,
        tenant,
        technician_id,
        list(QUEUED_STATES),
    )
    device_id = found[0]["device_id"] if found else None
    rows = [row for row in found if row["requestid"] is not None]
    here = await live_position(client, settings.keys(), device_id)
    now = datetime.now(UTC)
    at: tuple[float, float] | None = (here["latitude"], here["longitude"]) if here else None
    elapsed_s: float | None = 0.0
    result: list[dict[str, Any]] = []
    for position, row in enumerate(rows, start=1):
        service_s = float(row["minutes"]) * 60.0
        eta_s: float | None = None
        if elapsed_s is not None:
            if row["requeststatus"] == "InProgress":
                done_s = (now - row["startedat"]).total_seconds() if row["startedat"] else 0.0
                eta_s = 0.0
                elapsed_s += max(0.0, service_s - done_s)
            else:
                route = None
                if row["requeststatus"] == "EnRoute":
                    route = await latest_route(client, settings.redis_prefix, str(row["requestid"]))
                if route is not None and route.get("eta_s") is not None:
                    travel_s: float | None = float(route["eta_s"])
                elif at is not None:
                    meters = haversine_m(at[0], at[1], row["lat"], row["lon"])
                    travel_s = meters / settings.fallback_speed_mps
                else:
                    travel_s = None  # nowhere to start from: no live position
                if travel_s is None:
                    elapsed_s = None
                else:
                    elapsed_s += travel_s
                    eta_s = elapsed_s + settings.eta_buffer_s
                    elapsed_s += service_s
        at = (row["lat"], row["lon"])
        entry: dict[str, Any] = {
            "requestId": str(row["requestid"]),
            "customerId": str(row["customerid"]),
            "technicianId": str(technician_id),
            "requestStatus": row["requeststatus"],
            "queuePosition": position,
            "queueLength": len(rows),
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
