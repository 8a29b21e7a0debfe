"""Service areas and their SLA violations, scoped to a tenant; the area a point lies in."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from api.errors import conflict, invalid

_COLUMNS = (
    "a.serviceareaid AS service_area_id, a.geofenceid AS geofence_id, g.name, a.description,"
    " a.prioritylevel AS priority_level, a.responsetimeslaminutes AS response_time_sla_minutes,"
    " a.enabled"
)
_FROM = "serviceareas a JOIN geofences g ON g.id = a.geofenceid"

AREA_AT = """
SELECT a.serviceareaid, a.responsetimeslaminutes
FROM serviceareas a JOIN geofences g ON g.id = a.geofenceid
WHERE a.tenant_id = {tenant} AND a.enabled AND CASE
    WHEN g.radius_m IS NULL
        THEN ST_Covers(g.geom, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326))
    ELSE ST_DWithin(g.geom::geography,
                    ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326)::geography, g.radius_m)
    END
ORDER BY a.prioritylevel DESC, a.responsetimeslaminutes, a.serviceareaid
LIMIT 1
"""
"""The enabled area of a tenant that holds a point: (id, SLA minutes), the highest priority
level first, then the shortest promise. A template of the caller's parameter markers."""


async def create(conn: asyncpg.Connection, tenant: str, values: dict[str, Any]) -> UUID:
    kind = await conn.fetchval(
        "SELECT kind FROM geofences WHERE tenant_id = $1 AND id = $2",
        tenant,
        values["geofence_id"],
    )
    if kind is None:
        raise invalid("geofenceId", "no such geofence")
    if kind != "service_area":
        raise invalid("geofenceId", f"the geofence is of kind {kind}, not service_area")
    row_id: UUID | None = await conn.fetchval(
        "INSERT INTO serviceareas (tenant_id, geofenceid, description, prioritylevel,"
        " responsetimeslaminutes) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (geofenceid) DO NOTHING RETURNING serviceareaid",
        tenant,
        values["geofence_id"],
        values["description"],
        values["priority_level"],
        values["response_time_sla_minutes"],
    )
    if row_id is None:
        raise conflict("That geofence is a service area already")
    return row_id


async def get(conn: asyncpg.Connection, tenant: str, area_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE a.tenant_id = $1 AND a.serviceareaid = $2",
        tenant,
        area_id,
    )
    return row


_UPDATABLE = {
    "description": "description",
    "priority_level": "prioritylevel",
    "response_time_sla_minutes": "responsetimeslaminutes",
    "enabled": "enabled",
}


async def update(
    conn: asyncpg.Connection, tenant: str, area_id: UUID, values: dict[str, Any]
) -> bool:
    """Set the given fields; False when the tenant has no such area. The SLA of requests
    already made stays what it was when they were made."""
    args: list[Any] = [tenant, area_id]
    sets = ["version = version + 1", "updatedat = now()"]
    for name, value in values.items():
        args.append(value)
        sets.append(f"{_UPDATABLE[name]} = ${len(args)}")
    status: str = await conn.execute(
        f"UPDATE serviceareas SET {', '.join(sets)} WHERE tenant_id = $1 AND serviceareaid = $2",
        *args,
    )
    return status != "UPDATE 0"


async def page(
    conn: asyncpg.Connection, tenant: str, enabled: bool | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    where = "a.tenant_id = $1 AND ($2::boolean IS NULL OR a.enabled = $2)"
    total: int = await conn.fetchval(f"SELECT count(*) FROM {_FROM} WHERE {where}", tenant, enabled)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where}"
        " ORDER BY a.createdat, a.serviceareaid LIMIT $3 OFFSET $4",
        tenant, enabled, limit, offset,
    )  # fmt: skip
    return list(rows), total


async def violations(
    conn: asyncpg.Connection,
    tenant: str,
    filters: dict[str, Any],
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """A page of the tenant's SLA violations, newest first."""
    where = (
        "v.tenant_id = $1 AND ($2::uuid IS NULL OR v.serviceareaid = $2)"
        " AND ($3::timestamptz IS NULL OR v.detectedat >= $3)"
        " AND ($4::timestamptz IS NULL OR v.detectedat <= $4)"
    )
    args = (
        tenant,
        filters.get("service_area_id"),
        filters.get("from_date"),
        filters.get("to_date"),
    )
    total: int = await conn.fetchval(f"SELECT count(*) FROM slaviolations v WHERE {where}", *args)
    rows = await conn.fetch(
        "SELECT v.violationid AS violation_id, v.requestid AS request_id,"
        " r.requestnumber AS request_number, v.serviceareaid AS service_area_id,"
        " v.violationtype AS violation_type, v.targetminutes AS target_minutes,"
        " v.actualminutes AS actual_minutes, v.detectedat AS detected_at,"
        " v.resolvedat AS resolved_at"
        f" FROM slaviolations v JOIN servicerequests r ON r.requestid = v.requestid WHERE {where}"
        f" ORDER BY v.detectedat DESC, v.violationid LIMIT {limit} OFFSET {offset}",
        *args,
    )
    return list(rows), total


# ---- the SLA watcher's statements -------------------------------------------------------------


async def take_overdue(
    conn: asyncpg.Connection, states: list[str], limit: int
) -> list[asyncpg.Record]:
    """Requests past their SLA due time with nobody there yet, not violated before, locked
    for this transaction (skipping those another process holds), the longest overdue first;
    each with its tenant, area and the area's promise in minutes (`target`)."""
    from api.store.requests import VIEW_COLUMNS

    rows = await conn.fetch(
        f"""
        SELECT {VIEW_COLUMNS}, false AS rung, r.tenant_id, r.serviceareaid,
               round(extract(epoch FROM r.sladueat - coalesce(r.scheduledat, r.requestedat))
                     / 60)::int AS target
        FROM servicerequests r
        WHERE r.sladueat <= now() AND r.slaviolatedat IS NULL AND r.arrivedat IS NULL
          AND r.requeststatus = ANY($1::text[])
        ORDER BY r.sladueat LIMIT {int(limit)} FOR UPDATE SKIP LOCKED
        """,
        states,
    )
    return list(rows)


async def record_violation(
    conn: asyncpg.Connection, tenant: str, request_id: UUID, area_id: UUID | None, target: int
) -> None:
    """One violation of a request's response-time SLA (once: the arrival fills in when)."""
    await conn.execute(
        "INSERT INTO slaviolations (tenant_id, requestid, serviceareaid, targetminutes)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (requestid, violationtype) DO NOTHING",
        tenant,
        request_id,
        area_id,
        target,
    )
