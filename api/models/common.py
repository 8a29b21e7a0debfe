"""The envelope, pagination and the specification's enums (camelCase JSON)."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from api.machine import AvailabilityStatus as AvailabilityStatus
from api.machine import CallPriority as CallPriority
from api.machine import RequestStatus as RequestStatus

T = TypeVar("T")

MAX_ROWS_PER_PAGE = 100
"""Bound of one page: a list response stays small whatever a client asks for."""


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("may not contain NUL characters")
    if isinstance(value, list):
        for item in value:
            _no_nul(item)
    return value


class CamelModel(BaseModel):
    """JSON in camelCase; Python in snake_case. Unknown input fields are refused (422), and
    so is a NUL character in any text (no column takes one; the document says so too:
    api/openapi.py)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", from_attributes=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _no_nul(value)

    @field_validator("*", mode="before")
    @classmethod
    def _not_a_flag(cls, value: Any, info: ValidationInfo) -> Any:
        """true and false are not numbers (pydantic would read them as 1 and 0)."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            kinds = set(get_args(annotation)) or {annotation}
            if kinds & {int, float} and bool not in kinds:
                raise ValueError("must be a number, not true or false")
        return value


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional(**constraints: Any) -> Any:
    """A field that may be left out but never set to null (its column is NOT NULL): an
    explicit null is a 422 naming it, and the document shows no null."""
    return Field(None, json_schema_extra=_no_default, **constraints)


class PatchModel(CamelModel):
    """A PATCH body: the fields given change; at least one must be given (the document
    says `minProperties: 1`); a field whose column allows it may be null (cleared)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso(value: Any) -> Any:
    """A time in a request is ISO 8601 text, as the document says: a bare number (which
    pydantic would read as Unix time) is refused."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date or date-time, not a number")
    return value


IsoDatetime = Annotated[AwareDatetime, BeforeValidator(_iso)]
IsoDate = Annotated[date, BeforeValidator(_iso)]


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
