"""The envelope, pagination and the specification's enums (camelCase JSON)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.machine import AvailabilityStatus as AvailabilityStatus
from api.machine import CallPriority as CallPriority
from api.machine import RequestStatus as RequestStatus

T = TypeVar("T")

MAX_ROWS_PER_PAGE = 100
"""Bound of one page: a list response stays small whatever a client asks for."""


class CamelModel(BaseModel):
    """JSON in camelCase; Python in snake_case. Unknown input fields are refused (422)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", from_attributes=True
    )


class Envelope(CamelModel, Generic[T]):
    status: int
    message: str
    data: T | None = None


class ErrorEnvelope(CamelModel):
    """An error: `data` is the current state for 409, the fields at fault for 422."""

    status: int
    message: str
    data: Any = None


class ServerPaginatedData(CamelModel, Generic[T]):
    status: int = 200
    message: str = "OK"
    data: list[T]
    total_number: int
    has_previous_page: bool
    has_next_page: bool
    total_pages: int
    page_number: int
    rows_per_page: int


class IdData(CamelModel):
    id: str


class Paging(CamelModel):
    page_number: int = Field(1, ge=1, le=1_000_000)
    rows_per_page: int = Field(10, ge=1, le=MAX_ROWS_PER_PAGE)

    @property
    def offset(self) -> int:
        return (self.page_number - 1) * self.rows_per_page


def paginated(items: list[T], total: int, paging: Paging) -> ServerPaginatedData[T]:
    pages = (total + paging.rows_per_page - 1) // paging.rows_per_page
    return ServerPaginatedData[T](
        data=items,
        total_number=total,
        has_previous_page=paging.page_number > 1,
        has_next_page=paging.page_number < pages,
        total_pages=pages,
        page_number=paging.page_number,
        rows_per_page=paging.rows_per_page,
    )


class ServiceScheduleType(StrEnum):
    ON_DEMAND = "OnDemand"
    SCHEDULED = "Scheduled"


class LocationPreference(StrEnum):
    CUSTOMER_LOCATION = "CustomerLocation"
    SERVICE_CENTER = "ServiceCenter"


class ServiceAvailableIn(StrEnum):
    VAN = "Van"
    SERVICE_CENTER = "ServiceCenter"
    BOTH = "Both"


class ServiceStatus(StrEnum):
    PENDING = "Pending"
    COMPLETED = "Completed"
    REJECTED = "Rejected"


class EngagementAction(StrEnum):
    NOTIFIED = "NOTIFIED"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    CANCELED = "CANCELED"


class ServiceCategory(StrEnum):
    MAINTENANCE = "Maintenance"
    REPAIR = "Repair"
    INSPECTION = "Inspection"
    DIAGNOSTIC = "Diagnostic"
    DETAILING = "Detailing"
    CUSTOMIZATION = "Customization"
    EMERGENCY = "Emergency"


class PaymentStatus(StrEnum):
    PENDING = "Pending"
    PAID = "Paid"
    PARTIALLY_PAID = "PartiallyPaid"
    REFUNDED = "Refunded"
    PARTIALLY_REFUNDED = "PartiallyRefunded"
    FAILED = "Failed"


class Gender(StrEnum):
    MALE = "Male"
    FEMALE = "Female"
    OTHER = "Other"
