"""The service catalog (admins and dispatchers write; every role of the tenant reads)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Query

from api.deps import AdminDep, DbDep, PrincipalDep
from api.guard import guarded_router
from api.models.catalog import ServiceCreate, ServiceInfo, ServicesFilter, ServiceUpdate
from api.models.common import Envelope, IdData, ServerPaginatedData
from api.routes.catalog import created, disable_one, get_one, list_page, update_one
from api.store import catalog
from api.store.catalog import SERVICES

router = guarded_router(prefix="/services", tags=["services"])


@router.post("")
async def create_service(body: ServiceCreate, db: DbDep, principal: AdminDep) -> Envelope[IdData]:
    row_id = await catalog.create(db, SERVICES, principal.tenant, body.model_dump())
    return created(row_id, "Service")


@router.get("")
async def list_services(
    db: DbDep, principal: PrincipalDep, filters: Annotated[ServicesFilter, Query()]
) -> ServerPaginatedData[ServiceInfo]:
    where: dict[str, Any] = {}
    if filters.service_available_in is not None:
        where["service_available_in"] = filters.service_available_in
    if filters.service_category is not None:
        where["category"] = filters.service_category
    if not principal.is_staff:
        where["enabled"] = True  # customers and technicians see what can be booked
    return await list_page(
        db, SERVICES, ServiceInfo, principal.tenant, filters, filters.search_keyword, where
    )


@router.get("/{serviceId}")
async def get_service(serviceId: UUID, db: DbDep, principal: PrincipalDep) -> Envelope[ServiceInfo]:
    return await get_one(db, SERVICES, ServiceInfo, principal.tenant, serviceId, "Service")


@router.patch("/{serviceId}")
async def update_service(
    serviceId: UUID, body: ServiceUpdate, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    return await update_one(db, SERVICES, principal.tenant, serviceId, body, "Service")


@router.post("/{serviceId}/disable")
async def disable_service(serviceId: UUID, db: DbDep, principal: AdminDep) -> Envelope[None]:
    return await disable_one(db, SERVICES, principal.tenant, serviceId, "Service")
