"""Geofences (admins and dispatchers): the engine's fences of the principal's tenant.

Writes go through the engine's own functions (gateway/engine/fences.py), whose trigger
tells every engine to reload the tenant's fences within a second."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import DbDep, StaffDep
from api.errors import conflict, invalid, not_found
from api.models.common import Envelope, IdData, ServerPaginatedData, paginated
from api.models.geofences import GeofenceCreate, GeofenceFilter, GeofenceInfo
from api.routes.catalog import done
from api.store import geofences as store
from gateway.engine.fences import BadGeofence, add_geofence, geometry_from_geojson, remove_geofence

router = APIRouter(prefix="/geofences", tags=["geofences"])

MAX_ID = 2**63 - 1  # bigserial
GeofenceId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("")
async def create_geofence(body: GeofenceCreate, db: DbDep, principal: StaffDep) -> Envelope[IdData]:
    try:
        geometry = geometry_from_geojson(body.geometry, body.radius_m)
    except BadGeofence as e:
        field = "radiusM" if "radius" in str(e) else "geometry"
        raise invalid(field, str(e).replace("--radius-m", "radiusM")) from None
    if geometry.is_empty:
        raise invalid("geometry", "an empty geometry encloses nothing")
    west, south, east, north = geometry.bounds
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise invalid("geometry", "coordinates are (longitude, latitude) in degrees, WGS 84")
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
async def delete_geofence(geofenceId: GeofenceId, db: DbDep, principal: StaffDep) -> Envelope[None]:
    if not await remove_geofence(db, geofenceId, tenant=principal.tenant):
        raise not_found("Geofence")
    return done("Geofence removed")
