"""Customers, vehicles, vans, technicians and the service catalog: create, update, info."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from api.models.common import (
    AvailabilityStatus,
    CamelModel,
    Gender,
    Paging,
    PatchModel,
    ServiceAvailableIn,
    ServiceCategory,
    optional,
)

MAX_TEXT = 200
"""Longest name, code or contact field: generous for people, bounded for the database."""
MAX_LONG_TEXT = 2000
MAX_PRICE = 99_999_999.99  # numeric(10,2)


# ---- customers ---------------------------------------------------------------------------


class CustomerCreate(CamelModel):
    customer_code: str = Field(min_length=1, max_length=MAX_TEXT)
    email: str = Field("", max_length=MAX_TEXT)
    first_name: str = Field("", max_length=MAX_TEXT)
    last_name: str = Field("", max_length=MAX_TEXT)
    phone_number: str = Field("", max_length=MAX_TEXT)
    profile_image_url: str | None = Field(None, max_length=MAX_LONG_TEXT)
    gender: Gender | None = None


class CustomerUpdate(PatchModel):
    customer_code: str = optional(min_length=1, max_length=MAX_TEXT)
    email: str = optional(max_length=MAX_TEXT)
    first_name: str = optional(max_length=MAX_TEXT)
    last_name: str = optional(max_length=MAX_TEXT)
    phone_number: str = optional(max_length=MAX_TEXT)
    profile_image_url: str | None = Field(None, max_length=MAX_LONG_TEXT)
    gender: Gender | None = None


class CustomerBasicInfo(CamelModel):
    """A customer; personal fields are null where the reader may not see them (a technician
    deciding on a ring: docs/security.md)."""

    user_id: UUID | None
    customer_id: UUID
    customer_code: str
    email: str | None
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    profile_image_url: str | None = None
    gender: Gender | None = None
    enabled: bool = True


# ---- vehicles ----------------------------------------------------------------------------


class VehicleCreate(CamelModel):
    vin: str = Field(min_length=1, max_length=MAX_TEXT)
    make: str | None = Field(None, max_length=MAX_TEXT)
    model: str | None = Field(None, max_length=MAX_TEXT)
    year: int | None = Field(None, ge=1886, le=2100)
    trim: str | None = Field(None, max_length=MAX_TEXT)
    vehicle_type: str | None = Field(None, max_length=MAX_TEXT)
    body_type: str | None = Field(None, max_length=MAX_TEXT)


class VehicleUpdate(PatchModel):
    vin: str = optional(min_length=1, max_length=MAX_TEXT)
    make: str | None = Field(None, max_length=MAX_TEXT)
    model: str | None = Field(None, max_length=MAX_TEXT)
    year: int | None = Field(None, ge=1886, le=2100)
    trim: str | None = Field(None, max_length=MAX_TEXT)
    vehicle_type: str | None = Field(None, max_length=MAX_TEXT)
    body_type: str | None = Field(None, max_length=MAX_TEXT)


class VehicleBasicInfo(CamelModel):
    vehicle_id: UUID
    customer_id: UUID
    vin: str | None  # null where the reader may not see it
    make: str | None = None
    model: str | None = None
    year: int | None = None
    trim: str | None = None
    vehicle_type: str | None = None
    body_type: str | None = None
    enabled: bool = True


# ---- vans --------------------------------------------------------------------------------


class VanCreate(CamelModel):
    van_number: str = Field(min_length=1, max_length=MAX_TEXT)
    registration_number: str = Field("", max_length=MAX_TEXT)
    vin: str = Field("", max_length=MAX_TEXT)
    make: str = Field("", max_length=MAX_TEXT)
    model: str = Field("", max_length=MAX_TEXT)
    year: int = Field(0, ge=0, le=2100)


class VanUpdate(PatchModel):
    van_number: str = optional(min_length=1, max_length=MAX_TEXT)
    registration_number: str = optional(max_length=MAX_TEXT)
    vin: str = optional(max_length=MAX_TEXT)
    make: str = optional(max_length=MAX_TEXT)
    model: str = optional(max_length=MAX_TEXT)
    year: int = optional(ge=0, le=2100)


class VanInfo(CamelModel):
    van_id: UUID
    van_number: str
    registration_number: str
    vin: str
    make: str
    model: str
    year: int
    enabled: bool = True


# ---- technicians -------------------------------------------------------------------------


class TechnicianCreate(CamelModel):
    technician_code: str = Field(min_length=1, max_length=MAX_TEXT)
    first_name: str = Field("", max_length=MAX_TEXT)
    last_name: str = Field("", max_length=MAX_TEXT)
    email: str | None = Field(None, max_length=MAX_TEXT)
    phone_number: str | None = Field(None, max_length=MAX_TEXT)
    profile_image_url: str | None = Field(None, max_length=MAX_LONG_TEXT)
    device_id: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    van_id: UUID | None = None
    availability_status: AvailabilityStatus = AvailabilityStatus.OFFLINE


class TechnicianUpdate(PatchModel):
    technician_code: str = optional(min_length=1, max_length=MAX_TEXT)
    first_name: str = optional(max_length=MAX_TEXT)
    last_name: str = optional(max_length=MAX_TEXT)
    email: str | None = Field(None, max_length=MAX_TEXT)
    phone_number: str | None = Field(None, max_length=MAX_TEXT)
    profile_image_url: str | None = Field(None, max_length=MAX_LONG_TEXT)
    device_id: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    van_id: UUID | None = None


class TechnicianBasicInfo(CamelModel):
    user_id: UUID | None = None
    technician_id: UUID
    technician_code: str
    availability_status: AvailabilityStatus | None = None
    first_name: str
    last_name: str
    email: str | None = None
    phone_number: str | None = None
    profile_image_url: str | None = None
    device_id: str | None = None
    van_id: UUID | None = None
    enabled: bool = True


class AvailabilityUpdate(CamelModel):
    availability_status: AvailabilityStatus


# ---- services ----------------------------------------------------------------------------


class ServiceCreate(CamelModel):
    service_code: str = Field(min_length=1, max_length=MAX_TEXT)
    service_name: str = Field(min_length=1, max_length=MAX_TEXT)
    service_description: str | None = Field(None, max_length=MAX_LONG_TEXT)
    service_price: float = Field(0, ge=0, le=MAX_PRICE)
    duration_minutes: int = Field(0, ge=0, le=7 * 24 * 60)
    category: ServiceCategory = ServiceCategory.MAINTENANCE
    service_available_in: ServiceAvailableIn = ServiceAvailableIn.BOTH


class ServiceUpdate(PatchModel):
    service_code: str = optional(min_length=1, max_length=MAX_TEXT)
    service_name: str = optional(min_length=1, max_length=MAX_TEXT)
    service_description: str | None = Field(None, max_length=MAX_LONG_TEXT)
    service_price: float = optional(ge=0, le=MAX_PRICE)
    duration_minutes: int = optional(ge=0, le=7 * 24 * 60)
    category: ServiceCategory = optional()
    service_available_in: ServiceAvailableIn = optional()


class ServiceInfo(CamelModel):
    service_id: UUID
    service_code: str
    service_name: str
    service_description: str | None = None
    service_price: float
    duration_minutes: int
    category: ServiceCategory
    service_available_in: ServiceAvailableIn
    enabled: bool = True


# ---- list filters ------------------------------------------------------------------------


class KeywordFilter(Paging):
    search_keyword: str | None = Field(None, max_length=MAX_TEXT)


class ServicesFilter(KeywordFilter):
    service_available_in: ServiceAvailableIn | None = None
    service_category: ServiceCategory | None = None
