"""Customers and their vehicles (admins and dispatchers)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from api.deps import DbDep, StaffDep, StateDep
from api.errors import not_found
from api.guard import guarded_router
from api.models.catalog import (
    CustomerBasicInfo,
    CustomerCreate,
    CustomerUpdate,
    KeywordFilter,
    VehicleBasicInfo,
    VehicleCreate,
    VehicleUpdate,
)
from api.models.common import Envelope, IdData, ServerPaginatedData
from api.principal import Role
from api.routes.catalog import created, disable_one, get_one, list_page, update_one
from api.store import catalog
from api.store.catalog import CUSTOMERS, VEHICLES

router = guarded_router(prefix="/customers", tags=["customers"])


@router.post("")
async def create_customer(body: CustomerCreate, db: DbDep, principal: StaffDep) -> Envelope[IdData]:
    row_id = await catalog.create(db, CUSTOMERS, principal.tenant, body.model_dump())
    return created(row_id, "Customer")


@router.get("")
async def list_customers(
    db: DbDep, principal: StaffDep, filters: Annotated[KeywordFilter, Query()]
) -> ServerPaginatedData[CustomerBasicInfo]:
    return await list_page(
        db, CUSTOMERS, CustomerBasicInfo, principal.tenant, filters, filters.search_keyword
    )


@router.get("/{customerId}")
async def get_customer(
    customerId: UUID, db: DbDep, principal: StaffDep
) -> Envelope[CustomerBasicInfo]:
    return await get_one(db, CUSTOMERS, CustomerBasicInfo, principal.tenant, customerId, "Customer")


@router.patch("/{customerId}")
async def update_customer(
    customerId: UUID, body: CustomerUpdate, db: DbDep, principal: StaffDep
) -> Envelope[None]:
    return await update_one(db, CUSTOMERS, principal.tenant, customerId, body, "Customer")


@router.post("/{customerId}/disable")
async def disable_customer(
    customerId: UUID, state: StateDep, db: DbDep, principal: StaffDep
) -> Envelope[None]:
    """Disable a customer: their tokens and open WebSockets stop working at once (every API
    process hears of it: api/principals.py; this one without waiting)."""
    answer = await disable_one(db, CUSTOMERS, principal.tenant, customerId, "Customer")
    state.principals.set_enabled(principal.tenant, Role.CUSTOMER, str(customerId), False)
    return answer


async def _customer_exists(db: DbDep, tenant: str, customer_id: UUID) -> None:
    if await catalog.get(db, CUSTOMERS, tenant, customer_id) is None:
        raise not_found("Customer")


@router.post("/{customerId}/vehicles")
async def create_vehicle(
    customerId: UUID, body: VehicleCreate, db: DbDep, principal: StaffDep
) -> Envelope[IdData]:
    await _customer_exists(db, principal.tenant, customerId)
    values = {**body.model_dump(), "customer_id": customerId}
    return created(await catalog.create(db, VEHICLES, principal.tenant, values), "Vehicle")


@router.get("/{customerId}/vehicles")
async def list_vehicles(
    customerId: UUID, db: DbDep, principal: StaffDep, filters: Annotated[KeywordFilter, Query()]
) -> ServerPaginatedData[VehicleBasicInfo]:
    await _customer_exists(db, principal.tenant, customerId)
    return await list_page(
        db,
        VEHICLES,
        VehicleBasicInfo,
        principal.tenant,
        filters,
        filters.search_keyword,
        {"customer_id": customerId},
    )


@router.get("/{customerId}/vehicles/{vehicleId}")
async def get_vehicle(
    customerId: UUID, vehicleId: UUID, db: DbDep, principal: StaffDep
) -> Envelope[VehicleBasicInfo]:
    where = {"customer_id": customerId}
    return await get_one(
        db, VEHICLES, VehicleBasicInfo, principal.tenant, vehicleId, "Vehicle", where
    )


@router.patch("/{customerId}/vehicles/{vehicleId}")
async def update_vehicle(
    customerId: UUID, vehicleId: UUID, body: VehicleUpdate, db: DbDep, principal: StaffDep
) -> Envelope[None]:
    where = {"customer_id": customerId}
    return await update_one(db, VEHICLES, principal.tenant, vehicleId, body, "Vehicle", where)


@router.post("/{customerId}/vehicles/{vehicleId}/disable")
async def disable_vehicle(
    customerId: UUID, vehicleId: UUID, db: DbDep, principal: StaffDep
) -> Envelope[None]:
    where = {"customer_id": customerId}
    return await disable_one(db, VEHICLES, principal.tenant, vehicleId, "Vehicle", where)
