"""Geofences (admins and dispatchers): the engine's fences of the principal's tenant.

Writes go through the engine's own functions (gateway/engine/fences.py), whose trigger
tells every engine to reload the tenant's fences within a second."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from shapely.geometry.base import BaseGeometry

from api.deps import AdminDep, DbDep, StaffDep, StateDep
from api.errors import conflict, invalid, not_found
from api.guard import guarded_router
from api.models.common import Envelope, IdData, ServerPaginatedData, paginated
from api.models.geofences import GeofenceCreate, GeofenceFilter, GeofenceInfo, GeofenceUpdate
from api.routes.catalog import done
from api.settings import ApiSettings
from api.store import geofences as store
from gateway.engine.fences import BadGeofence, add_geofence, geometry_from_geojson, remove_geofence

router = guarded_router(prefix="/geofences", tags=["geofences"])

MAX_ID = 2**63 - 1  # bigserial
GeofenceId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _shape(
    settings: ApiSettings, geometry_doc: dict[str, Any], radius_m: float | None
) -> BaseGeometry:
    """The fence's shape from GeoJSON, bounded and checked (422 naming the field)."""
    limit = settings.geofence_max_vertices
    if (vertices := _vertices(geometry_doc)) > limit:
        raise invalid("geometry", f"{vertices} vertices: at most {limit} per geofence")
    try:
        geometry = geometry_from_geojson(geometry_doc, radius_m)
    except BadGeofence as e:
        field = "radiusM" if "radius" in str(e) else "geometry"
        raise invalid(field, str(e).replace("--radius-m", "radiusM")) from None
    if geometry.is_empty:
        raise invalid("geometry", "an empty geometry encloses nothing")
    west, south, east, north = geometry.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise invalid("geometry", "coordinates are (longitude, latitude) in degrees, WGS 84")
    return geometry


@router.post("")
async def create_geofence(
    body: GeofenceCreate, state: StateDep, db: DbDep, principal: AdminDep
) -> Envelope[IdData]:
    """Every tenant's fences share the engine: a fence's vertices and a tenant's fences are
    bounded (`FIXGATE_GEOFENCE_MAX_VERTICES`, `FIXGATE_GEOFENCES_PER_TENANT_MAX`)."""
    geometry = _shape(state.settings, body.geometry, body.radius_m)
    most = state.settings.geofences_per_tenant_max
    if await store.count(db, principal.tenant) >= most:
        raise invalid("geometry", f"the tenant has {most} geofences: at most {most}")
    exists = await db.fetchval(
        "SELECT true FROM geofences WHERE tenant_id = $1 AND name = $2", principal.tenant, body.name
    )
    if exists:
        raise conflict(f"A geofence named {body.name!r} already exists")
    fid = await add_geofence(
        db, tenant=principal.tenant, name=body.name, geometry=geometry, kind=body.kind.value,
        radius_m=body.radius_m, dwell_s=body.dwell_s,
    )  # fmt: skip
    return Envelope[IdData](status=200, message="Geofence created", data=IdData(id=str(fid)))


@router.patch("/{geofenceId}")
async def update_geofence(
    geofenceId: GeofenceId, body: GeofenceUpdate, state: StateDep, db: DbDep,
    principal: AdminDep,
) -> Envelope[None]:  # fmt: skip
    """Change a fence's name, shape (`geometry`, with `radiusM` for a circle) or dwell in
    place: its id, kind and service area stay; the engines reload it within a second."""
    if body.radius_m is not None and body.geometry is None:
        raise invalid("radiusM", "give the circle's geometry (its centre) with its radius")
    geometry = _shape(state.settings, body.geometry, body.radius_m) if body.geometry else None
    if body.name is not None and await db.fetchval(
        "SELECT true FROM geofences WHERE tenant_id = $1 AND name = $2 AND id <> $3",
        principal.tenant, body.name, geofenceId,
    ):  # fmt: skip
        raise conflict(f"A geofence named {body.name!r} already exists")
    if not await store.update(db, principal.tenant, geofenceId, name=body.name,
                              geometry=geometry, radius_m=body.radius_m, dwell_s=body.dwell_s):  # fmt: skip
        raise not_found("Geofence")
    return done("Geofence updated")


def _vertices(value: object) -> int:
    """Positions in a GeoJSON document (before it is parsed: a huge one is refused cheaply)."""
    if isinstance(value, dict):
        return sum(_vertices(v) for k, v in value.items() if k != "properties")
    if isinstance(value, list):
        if len(value) >= 2 and all(isinstance(c, int | float) for c in value):
            return 1
        return sum(_vertices(v) for v in value)
    return 0


@router.get("")
async def list_geofences(
    db: DbDep, principal: StaffDep, filters: Annotated[GeofenceFilter, Query()]
) -> ServerPaginatedData[GeofenceInfo]:
    kind = filters.kind.value if filters.kind else None
    rows, total = await store.page(
        db, principal.tenant, kind, filters.rows_per_page, filters.offset
    )
    return paginated([GeofenceInfo.model_validate(r) for r in rows], total, filters)


@router.get("/{geofenceId}")
async def get_geofence(
    geofenceId: GeofenceId, db: DbDep, principal: StaffDep
) -> Envelope[GeofenceInfo]:
    row = await store.get(db, principal.tenant, geofenceId)
    if row is None:
        raise not_found("Geofence")
    return Envelope[GeofenceInfo](status=200, message="OK", data=GeofenceInfo.model_validate(row))


@router.delete("/{geofenceId}")
async def delete_geofence(geofenceId: GeofenceId, db: DbDep, principal: AdminDep) -> Envelope[None]:
    if not await remove_geofence(db, geofenceId, tenant=principal.tenant):
        raise not_found("Geofence")
    return done("Geofence removed")
