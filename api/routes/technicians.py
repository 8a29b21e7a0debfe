"""Technicians (admins and dispatchers), and a technician's own availability."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import asyncpg
from fastapi import Query

from api.deps import AdminDep, DbDep, StaffDep, StateDep, TechnicianDep
from api.errors import ApiError, not_found
from api.guard import guarded_router
from api.models.catalog import (
    AvailabilityUpdate,
    KeywordFilter,
    TechnicianBasicInfo,
    TechnicianCreate,
    TechnicianUpdate,
)
from api.models.common import Envelope, IdData, ServerPaginatedData
from api.principal import Role
from api.routes.catalog import created, disable_one, done, get_one, list_page, update_one
from api.store import catalog
from api.store.catalog import TECHNICIANS

router = guarded_router(tags=["technicians"])


async def _check_links(
    db: asyncpg.Connection, tenant: str, device_id: str | None, van_id: UUID | None
) -> None:
    """A technician links to a device and a van of its own tenant only."""
    if device_id is not None and not await db.fetchval(
        "SELECT true FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant
    ):
        raise ApiError(422, f"deviceId: no device {device_id!r} in this tenant")
    if van_id is not None and not await db.fetchval(
        "SELECT true FROM vanmaster WHERE vanid = $1 AND tenant_id = $2", van_id, tenant
    ):
        raise ApiError(422, f"vanId: no van {van_id} in this tenant")


@router.post("/technicians")
async def create_technician(
    body: TechnicianCreate, db: DbDep, principal: AdminDep
) -> Envelope[IdData]:
    await _check_links(db, principal.tenant, body.device_id, body.van_id)
    row_id = await catalog.create(db, TECHNICIANS, principal.tenant, body.model_dump())
    return created(row_id, "Technician")


@router.get("/technicians")
async def list_technicians(
    db: DbDep, principal: StaffDep, filters: Annotated[KeywordFilter, Query()]
) -> ServerPaginatedData[TechnicianBasicInfo]:
    return await list_page(
        db, TECHNICIANS, TechnicianBasicInfo, principal.tenant, filters, filters.search_keyword
    )


@router.get("/technicians/{technicianId}")
async def get_technician(
    technicianId: UUID, db: DbDep, principal: StaffDep
) -> Envelope[TechnicianBasicInfo]:
    return await get_one(
        db, TECHNICIANS, TechnicianBasicInfo, principal.tenant, technicianId, "Technician"
    )


@router.patch("/technicians/{technicianId}")
async def update_technician(
    technicianId: UUID, body: TechnicianUpdate, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    await _check_links(db, principal.tenant, body.device_id, body.van_id)
    return await update_one(db, TECHNICIANS, principal.tenant, technicianId, body, "Technician")


@router.post("/technicians/{technicianId}/disable")
async def disable_technician(
    technicianId: UUID, state: StateDep, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    """Disable a technician: their tokens and open WebSockets stop working at once."""
    answer = await disable_one(db, TECHNICIANS, principal.tenant, technicianId, "Technician")
    state.principals.set_enabled(principal.tenant, Role.TECHNICIAN, str(technicianId), False)
    return answer


@router.put("/technician/availability")
async def set_availability(
    body: AvailabilityUpdate, db: DbDep, principal: TechnicianDep
) -> Envelope[None]:
    try:
        technician_id = UUID(principal.subject)
    except ValueError:
        raise not_found("Technician") from None
    values = {"availability_status": body.availability_status}
    if not await catalog.update(db, TECHNICIANS, principal.tenant, technician_id, values):
        raise not_found("Technician")
    return done(f"Availability set to {body.availability_status.value}")
