"""Personal data by need: what each principal sees of a request, and when the technician's
position (pure: docs/security.md has the table, tests/unit/api/test_personal.py walks it).

- Staff see the tenant's requests whole.
- A customer sees their own requests, without anybody's user id or the technician's device
  (`deviceId`, `userId` are the fleet's, not theirs to know).
- A technician sees a request whole while it is theirs (assigned to them and not finished);
  while it rings them (its ring phase for them still open) or is Pending (anyone of the
  tenant may take it), only what they need to decide: where, what services, the vehicle's
  make and model, without the customer's name, phone, e-mail, user id or the VIN.
- Anyone else sees nothing: the request answers 404, as if it did not exist.
- The technician's position, distance and route go to staff and the request's technician,
  and to its customer only while the technician is on the way (journey started, not yet
  arrived).
"""

from __future__ import annotations

from enum import Enum
from typing import Any
from uuid import UUID

from api.machine import QUEUED, RequestStatus
from api.principal import Principal, Role


class Sight(Enum):
    WHOLE = "whole"  # staff, the assigned technician
    CUSTOMER = "customer"  # the request's customer: without the fleet's ids
    DECIDING = "deciding"  # a technician it rings, or any while Pending: no personal data
    NONE = "none"


def sight(
    principal: Principal,
    *,
    status: RequestStatus,
    technician: UUID | None,
    customer: UUID,
    ringing_them: bool,
) -> Sight:
    """What the principal sees of a request in this state (`ringing_them`: a ring phase of
    it is open for this technician now)."""
    if principal.is_staff:
        return Sight.WHOLE
    if principal.role is Role.CUSTOMER:
        return Sight.CUSTOMER if str(customer) == principal.subject else Sight.NONE
    if technician is not None and str(technician) == principal.subject and status in QUEUED:
        return Sight.WHOLE
    if status is RequestStatus.PENDING:
        return Sight.DECIDING
    if status is RequestStatus.RINGING and ringing_them:
        return Sight.DECIDING
    return Sight.NONE


def may_track(
    principal: Principal,
    *,
    status: RequestStatus,
    technician: UUID | None,
    customer: UUID,
    arrived: bool,
) -> bool:
    """Whether the principal may see where the request's technician is and their route."""
    if principal.is_staff:
        return True
    if principal.role is Role.CUSTOMER:
        mine = str(customer) == principal.subject
        return mine and status is RequestStatus.EN_ROUTE and not arrived
    return technician is not None and str(technician) == principal.subject and status in QUEUED


FLEET_IDS = frozenset({"deviceId", "userId"})
"""Keys a customer never sees, wherever they are in a payload."""
PERSONAL = frozenset(
    {"firstName", "lastName", "name", "email", "phoneNumber", "profileImageUrl", "gender",
     "userId"}
)  # fmt: skip
"""A customer's personal fields: a deciding technician sees none of them."""
CUSTOMER_KEYS = frozenset({"customer", "customerInfo"})
VEHICLE_KEYS = frozenset({"vehicle", "vehicleInfo"})
TRACKING = frozenset(
    {"technicianLocation", "distanceInMeter", "etaInSec", "encodedPolyline", "polylineVersion"}
)
"""Where the technician is and how they get there."""
AFTERWARDS = frozenset(
    {"rating", "feedback", "mileage", "evidences", "cancellationReason", "cancelledBy"}
)
"""What happened to a request that a deciding technician has no need of."""


def redact(value: Any, seen: Sight, *, tracking: bool = True) -> Any:
    """A JSON value (a response's data, an event's payload) as `seen` may see it; without
    the technician's position and route unless `tracking`. Returns a new value."""
    if isinstance(value, list):
        return [redact(v, seen, tracking=tracking) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, inner in value.items():
        if (not tracking and key in TRACKING) or (seen is Sight.CUSTOMER and key in FLEET_IDS):
            out[key] = None
        elif seen is Sight.DECIDING and key in CUSTOMER_KEYS and isinstance(inner, dict):
            out[key] = {k: (None if k in PERSONAL else v) for k, v in inner.items()}
        elif seen is Sight.DECIDING and key in VEHICLE_KEYS and isinstance(inner, dict):
            out[key] = {k: (None if k == "vin" else v) for k, v in inner.items()}
        elif seen is Sight.DECIDING and key in AFTERWARDS:
            out[key] = None
        else:
            out[key] = redact(inner, seen, tracking=tracking)
    return out
