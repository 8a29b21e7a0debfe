"""Vans (admins and dispatchers)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from api.deps import AdminDep, DbDep, StaffDep
from api.guard import guarded_router
from api.models.catalog import KeywordFilter, VanCreate, VanInfo, VanUpdate
from api.models.common import Envelope, IdData, ServerPaginatedData
from api.routes.catalog import created, disable_one, get_one, list_page, update_one
from api.store import catalog
from api.store.catalog import VANS

router = guarded_router(prefix="/vans", tags=["vans"])


@router.post("")
async def create_van(body: VanCreate, db: DbDep, principal: AdminDep) -> Envelope[IdData]:
    return created(await catalog.create(db, VANS, principal.tenant, body.model_dump()), "Van")


@router.get("")
async def list_vans(
    db: DbDep, principal: StaffDep, filters: Annotated[KeywordFilter, Query()]
) -> ServerPaginatedData[VanInfo]:
    return await list_page(db, VANS, VanInfo, principal.tenant, filters, filters.search_keyword)


@router.get("/{vanId}")
async def get_van(vanId: UUID, db: DbDep, principal: StaffDep) -> Envelope[VanInfo]:
    return await get_one(db, VANS, VanInfo, principal.tenant, vanId, "Van")


@router.patch("/{vanId}")
async def update_van(
    vanId: UUID, body: VanUpdate, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    return await update_one(db, VANS, principal.tenant, vanId, body, "Van")


@router.post("/{vanId}/disable")
async def disable_van(vanId: UUID, db: DbDep, principal: AdminDep) -> Envelope[None]:
    return await disable_one(db, VANS, principal.tenant, vanId, "Van")
