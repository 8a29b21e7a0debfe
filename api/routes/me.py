"""The signed-in technician's and customer's own records, for their apps (`/tech`,
`/help`): who they are, the customer's vehicles, and the technician's credentials for
sending their phone's position to the gateway (docs/field-apps.md)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Query

from api import limits
from api.deps import CustomerDep, DbDep, StateDep, TechnicianDep
from api.errors import not_found
from api.guard import guarded_router
from api.models.catalog import (
    CustomerBasicInfo,
    KeywordFilter,
    TechnicianBasicInfo,
    VehicleBasicInfo,
)
from api.models.common import Envelope, ServerPaginatedData
from api.models.field import DeviceCredentials
from api.principal import Principal
from api.routes.catalog import list_page
from api.store import catalog, phones
from api.store.catalog import CUSTOMERS, TECHNICIANS, VEHICLES

router = guarded_router(tags=["me"])


def _me(principal: Principal, what: str) -> UUID:
    try:
        return UUID(principal.subject)
    except ValueError:
        raise not_found(what) from None


@router.get("/technician/me")
async def technician_me(db: DbDep, principal: TechnicianDep) -> Envelope[TechnicianBasicInfo]:
    """The signed-in technician: name, code, availability, their device and van."""
    row = await catalog.get(db, TECHNICIANS, principal.tenant, _me(principal, "Technician"))
    if row is None:
        raise not_found("Technician")
    data = TechnicianBasicInfo.model_validate(dict(row))
    return Envelope[TechnicianBasicInfo](status=200, message="OK", data=data)


@router.post("/technician/device-credentials")
async def device_credentials(
    state: StateDep, db: DbDep, principal: TechnicianDep
) -> Envelope[DeviceCredentials]:
    """Credentials for the technician app to send this phone's position as the
    technician's own device (registered and linked now when they have none): the gateway's
    OwnTracks HTTP endpoint, the identity and a new app token, which replaces the previous
    one (another phone of theirs signed in earlier stops sending). Nobody but the
    technician gets it; staff never see it; it ends when staff link the technician to
    another device or disable them."""
    settings = state.settings
    await limits.per_minute(
        state.redis, settings.redis_prefix, "phone-credentials", principal,
        settings.phone_credentials_per_min, "device credentials",
    )  # fmt: skip
    found = await phones.enrol(db, principal.tenant, _me(principal, "Technician"))
    data = DeviceCredentials(
        url=f"{settings.phone_gateway()}/owntracks",
        device_id=found.device_id,
        user=found.user,
        device=found.device,
        token=found.token,
    )
    return Envelope[DeviceCredentials](status=200, message="Send fixes with these", data=data)


@router.get("/customer/me")
async def customer_me(db: DbDep, principal: CustomerDep) -> Envelope[CustomerBasicInfo]:
    """The signed-in customer (without the fleet's user id)."""
    row = await catalog.get(db, CUSTOMERS, principal.tenant, _me(principal, "Customer"))
    if row is None:
        raise not_found("Customer")
    data = CustomerBasicInfo.model_validate({**dict(row), "user_id": None})
    return Envelope[CustomerBasicInfo](status=200, message="OK", data=data)


@router.get("/customer/vehicles")
async def customer_vehicles(
    db: DbDep, principal: CustomerDep, filters: Annotated[KeywordFilter, Query()]
) -> ServerPaginatedData[VehicleBasicInfo]:
    """The signed-in customer's vehicles that are in service (to ask for help with)."""
    where = {"customer_id": _me(principal, "Customer"), "enabled": True}
    return await list_page(
        db, VEHICLES, VehicleBasicInfo, principal.tenant, filters, filters.search_keyword, where
    )
