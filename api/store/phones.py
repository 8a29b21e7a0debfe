"""The technician app's credentials for the gateway: a technician's own device, and a token
for it that only the gateway's OwnTracks HTTP listener takes (docs/field-apps.md,
"Credentials"). One transaction per enrolment, under the technician's row lock, so two
tabs enrolling at once leave one working token and one device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from uuid import UUID

import asyncpg

from api.errors import ApiError, not_found
from gateway.registry import store as registry

APP_OWNTRACKS_DEVICE: Final = "app"
"""The OwnTracks device name the app logs in with on a device that has no OwnTracks
identity yet (its user is the device's id, so its broker login stays the same)."""


@dataclass(frozen=True)
class PhoneCredentials:
    device_id: str
    user: str
    device: str
    token: str


def app_device_id(technician_id: UUID) -> str:
    """The device registered for a technician who has none: the id is global, a
    technician's code is only the tenant's, so it is made of the technician's id."""
    return f"app-{technician_id}"


async def enrol(conn: asyncpg.Connection, tenant: str, technician_id: UUID) -> PhoneCredentials:
    """A fresh app token for the technician's own device (the previous one stops working);
    the device is registered and linked first when the technician has none, and given an
    OwnTracks identity when it has none. Raises 404 (no such technician) and 409 (disabled,
    or its device is)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT device_id, enabled FROM technicianmaster"
            " WHERE tenant_id = $1 AND technicianid = $2 FOR UPDATE",
            tenant,
            technician_id,
        )
        if row is None:
            raise not_found("Technician")
        if not row["enabled"]:
            raise ApiError(409, "Your account is disabled")
        device_id: str | None = row["device_id"]
        if device_id is None:
            device_id = app_device_id(technician_id)
            await registry.add_device(
                conn,
                device_id,
                tenant_id=tenant,
                kind="phone",
                owntracks=f"{device_id}/{APP_OWNTRACKS_DEVICE}",
                protocols=("owntracks",),
            )  # its own token is dropped unread: the app's is the one in use
            await conn.execute(
                "UPDATE technicianmaster SET device_id = $3 WHERE tenant_id = $1 AND technicianid = $2",
                tenant,
                technician_id,
                device_id,
            )
        device = await registry.get_device(conn, device_id)
        if device is None or device.tenant_id != tenant:
            raise ApiError(409, "Your device is not registered: ask your dispatcher")
        if not device.enabled:
            raise ApiError(409, "Your device is disabled: ask your dispatcher")
        user, name = device.owntracks_user, device.owntracks_device
        if user is None or name is None:
            user, name = device.id, APP_OWNTRACKS_DEVICE
            try:
                await conn.execute(
                    "UPDATE devices SET owntracks_user = $2, owntracks_device = $3 WHERE id = $1",
                    device.id,
                    user,
                    name,
                )
            except asyncpg.UniqueViolationError:
                raise ApiError(
                    409, "Your device's app identity is taken: ask your dispatcher"
                ) from None
        token = await registry.set_app_token(conn, device.id)
    return PhoneCredentials(device_id=device.id, user=user, device=name, token=token)
