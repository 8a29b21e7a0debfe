"""Service areas (seed 000; admins and dispatchers): a service_area geofence with a
response-time SLA. A request made inside one carries it and its due time; the SLA watcher
(api/sla.py) records a violation and escalates when nobody is there by then."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from api.deps import AdminDep, DbDep, StaffDep
from api.errors import ApiError, not_found
from api.guard import guarded_router
from api.models.common import Envelope, IdData, ServerPaginatedData, paginated
from api.models.service_areas import (
    ServiceAreaCreate,
    ServiceAreaInfo,
    ServiceAreasFilter,
    ServiceAreaUpdate,
    SlaViolationInfo,
    SlaViolationsFilter,
)
from api.routes.catalog import created, done
from api.store import service_areas as store

router = guarded_router(tags=["service areas"])


@router.post("/service-areas")
async def create_service_area(
    body: ServiceAreaCreate, db: DbDep, principal: AdminDep
) -> Envelope[IdData]:
    return created(await store.create(db, principal.tenant, body.model_dump()), "Service area")


@router.get("/service-areas")
async def list_service_areas(
    db: DbDep, principal: StaffDep, filters: Annotated[ServiceAreasFilter, Query()]
) -> ServerPaginatedData[ServiceAreaInfo]:
    rows, total = await store.page(
        db, principal.tenant, filters.enabled, filters.rows_per_page, filters.offset
    )
    return paginated([ServiceAreaInfo.model_validate(dict(r)) for r in rows], total, filters)


@router.get("/service-areas/{serviceAreaId}")
async def get_service_area(
    serviceAreaId: UUID, db: DbDep, principal: StaffDep
) -> Envelope[ServiceAreaInfo]:
    row = await store.get(db, principal.tenant, serviceAreaId)
    if row is None:
        raise not_found("Service area")
    return Envelope[ServiceAreaInfo](
        status=200, message="OK", data=ServiceAreaInfo.model_validate(dict(row))
    )


@router.patch("/service-areas/{serviceAreaId}")
async def update_service_area(
    serviceAreaId: UUID, body: ServiceAreaUpdate, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    values = body.model_dump(exclude_unset=True)
    if not values:
        raise ApiError(400, "Nothing to update: give at least one field")
    if not await store.update(db, principal.tenant, serviceAreaId, values):
        raise not_found("Service area")
    return done("Service area updated")


@router.post("/service-areas/{serviceAreaId}/disable")
async def disable_service_area(
    serviceAreaId: UUID, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    """New requests no longer fall in it; those made before keep their due time."""
    if not await store.update(db, principal.tenant, serviceAreaId, {"enabled": False}):
        raise not_found("Service area")
    return done("Service area disabled")


@router.get("/sla-violations")
async def list_sla_violations(
    db: DbDep, principal: StaffDep, filters: Annotated[SlaViolationsFilter, Query()]
) -> ServerPaginatedData[SlaViolationInfo]:
    rows, total = await store.violations(
        db, principal.tenant, filters.model_dump(), filters.rows_per_page, filters.offset
    )
    return paginated([SlaViolationInfo.model_validate(dict(r)) for r in rows], total, filters)
