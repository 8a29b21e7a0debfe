"""Reading a tenant's geofences with their shapes (the engine's fences.py writes them)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

_COLUMNS = (
    "id AS geofence_id, name, kind, GeometryType(geom) AS geometry_type, radius_m, dwell_s,"
    " ST_AsGeoJSON(geom) AS geometry"
)


def _row(r: asyncpg.Record) -> dict[str, Any]:
    return {**dict(r), "geometry": json.loads(r["geometry"])}


async def page(
    conn: asyncpg.Connection, tenant: str, kind: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the tenant's fences (by id) and the count of all that match."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, count(*) OVER () AS total FROM geofences"
        " WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2)"
        " ORDER BY id LIMIT $3 OFFSET $4",
        tenant, kind, limit, offset,
    )  # fmt: skip
    if rows:
        return [{k: v for k, v in _row(r).items() if k != "total"} for r in rows], rows[0]["total"]
    total = await conn.fetchval(
        "SELECT count(*) FROM geofences WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2)",
        tenant,
        kind,
    )
    return [], int(total)


async def get(conn: asyncpg.Connection, tenant: str, geofence_id: int) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM geofences WHERE tenant_id = $1 AND id = $2", tenant, geofence_id
    )
    return None if row is None else _row(row)


async def count(conn: asyncpg.Connection, tenant: str) -> int:
    found: int = await conn.fetchval("SELECT count(*) FROM geofences WHERE tenant_id = $1", tenant)
    return found
