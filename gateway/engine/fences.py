"""Geofences in PostgreSQL/PostGIS: add, list, remove, and load as the core's FenceSpecs."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import msgspec
import shapely
from shapely.geometry.base import BaseGeometry

from gateway.db import DbConnection
from geofence.index import FENCE_KINDS, FenceSpec


class GeofenceRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tenant_id: str
    name: str
    kind: str
    geometry_type: str
    radius_m: float | None
    dwell_s: float


class BadGeofence(Exception):
    pass


def geometry_from_geojson(doc: dict[str, Any], radius_m: float | None) -> BaseGeometry:
    """A Polygon/MultiPolygon, or a Point with a radius, from GeoJSON (a geometry, a
    Feature, or a FeatureCollection of exactly one feature)."""
    if doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
        if len(features) != 1:
            raise BadGeofence("a FeatureCollection must hold exactly one feature")
        doc = features[0]
    if doc.get("type") == "Feature":
        doc = doc.get("geometry") or {}
    try:
        geom = shapely.from_geojson(json.dumps(doc))
    except Exception as e:  # shapely's GEOSException and ValueError both mean bad input
        raise BadGeofence(f"not a GeoJSON geometry: {e}") from None
    kind = geom.geom_type
    if kind == "Point":
        if radius_m is None or radius_m <= 0:
            raise BadGeofence("a Point needs --radius-m > 0 (a circle fence)")
    elif kind in ("Polygon", "MultiPolygon"):
        if radius_m is not None:
            raise BadGeofence("--radius-m is for Point fences only")
        if not geom.is_valid:
            raise BadGeofence(f"invalid polygon: {shapely.is_valid_reason(geom)}")
    else:
        raise BadGeofence(f"a geofence is a Polygon, MultiPolygon or Point, not a {kind}")
    return geom


async def add_geofence(
    conn: DbConnection,
    *,
    tenant: str,
    name: str,
    geometry: BaseGeometry,
    kind: str = "other",
    radius_m: float | None = None,
    dwell_s: float = 0.0,
) -> int:
    if kind not in FENCE_KINDS:
        raise BadGeofence(f"kind must be one of {', '.join(FENCE_KINDS)}")
    if dwell_s < 0:
        raise BadGeofence("dwell_s must be >= 0")
    try:
        fid: int = await conn.fetchval(
            "INSERT INTO geofences (tenant_id, name, kind, geom, radius_m, dwell_s)"
            " VALUES ($1, $2, $3, ST_SetSRID(ST_GeomFromWKB($4), 4326), $5, $6) RETURNING id",
            tenant, name, kind, shapely.to_wkb(geometry), radius_m, dwell_s,
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise BadGeofence(f"tenant {tenant!r} already has a geofence named {name!r}") from None
    return fid


async def remove_geofence(conn: DbConnection, fid: int, *, tenant: str | None = None) -> bool:
    done = await conn.execute(
        "DELETE FROM geofences WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2)", fid, tenant
    )
    return bool(done.endswith(" 1"))


async def list_geofences(conn: DbConnection, *, tenant: str | None = None) -> list[GeofenceRow]:
    rows = await conn.fetch(
        "SELECT id, tenant_id, name, kind, GeometryType(geom) AS geometry_type, radius_m, dwell_s"
        " FROM geofences WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY tenant_id, id",
        tenant,
    )
    return [GeofenceRow(**dict(r)) for r in rows]


async def load_fences(
    conn: DbConnection, *, tenant: str | None = None
) -> dict[str, list[FenceSpec]]:
    """Every fence (or one tenant's), as the core's FenceSpecs, by tenant."""
    rows = await conn.fetch(
        "SELECT id, tenant_id, name, kind, dwell_s, radius_m,"
        "       CASE WHEN radius_m IS NULL THEN ST_AsBinary(geom) END AS wkb,"
        "       CASE WHEN radius_m IS NOT NULL THEN ST_Y(geom) END AS lat,"
        "       CASE WHEN radius_m IS NOT NULL THEN ST_X(geom) END AS lon"
        " FROM geofences WHERE ($1::text IS NULL OR tenant_id = $1)",
        tenant,
    )
    out: dict[str, list[FenceSpec]] = {}
    for r in rows:
        spec = FenceSpec(
            id=r["id"], tenant=r["tenant_id"], name=r["name"], kind=r["kind"], dwell_s=r["dwell_s"],
            wkb=r["wkb"], lat=r["lat"] or 0.0, lon=r["lon"] or 0.0, radius_m=r["radius_m"] or 0.0,
        )  # fmt: skip
        out.setdefault(r["tenant_id"], []).append(spec)
    if tenant is not None:
        out.setdefault(tenant, [])
    return out
