"""Reading a tenant's geofences with their shapes (the engine's fences.py writes them)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import shapely
from shapely.geometry.base import BaseGeometry

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


async def update(
    conn: asyncpg.Connection, tenant: str, geofence_id: int, *, name: str | None,
    geometry: BaseGeometry | None, radius_m: float | None, dwell_s: float | None,
) -> bool:  # fmt: skip
    """Change what is given (a new geometry brings its radius: none for a polygon); the
    table's trigger tells the engines. False: no such fence of the tenant."""
    status = await conn.execute(
        "UPDATE geofences SET name = coalesce($3, name),"
        " geom = CASE WHEN $4::bytea IS NULL THEN geom"
        "        ELSE ST_SetSRID(ST_GeomFromWKB($4), 4326) END,"
        " radius_m = CASE WHEN $4::bytea IS NULL THEN radius_m ELSE $5 END,"
        " dwell_s = coalesce($6, dwell_s)"
        " WHERE tenant_id = $1 AND id = $2",
        tenant, geofence_id, name, shapely.to_wkb(geometry) if geometry is not None else None,
        radius_m, dwell_s,
    )  # fmt: skip
    return status == "UPDATE 1"
