"""Service requests: the bodies the lifecycle takes and the responses the read side gives."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self
from uuid import UUID

from pydantic import Field, model_validator

from api.models.catalog import (
    MAX_LONG_TEXT,
    MAX_TEXT,
    CustomerBasicInfo,
    TechnicianBasicInfo,
    VanInfo,
    VehicleBasicInfo,
)
from api.models.common import (
    CallPriority,
    CamelModel,
    EngagementAction,
    IsoDatetime,
    LocationPreference,
    Paging,
    PaymentStatus,
    RequestStatus,
    ServiceScheduleType,
    ServiceStatus,
)

MAX_SERVICES_PER_REQUEST = 20
"""A request is a visit, not a catalog: bound what one visit may list."""
MAX_EVIDENCES = 50
MAX_MILEAGE = 10_000_000  # miles; an odometer, bounded for the int column


class Coordinates(CamelModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class CreateServiceRequest(CamelModel):
    customer_id: UUID | None = Field(
        None,
        description="Staff taking a call: the customer the request is for (required for them);"
        " a customer may leave it out or name themselves",
    )
    vehicle_id: UUID
    service_schedule_type: ServiceScheduleType = ServiceScheduleType.ON_DEMAND
    location_preference: LocationPreference = LocationPreference.CUSTOMER_LOCATION
    scheduled_at: IsoDatetime | None = None
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    location: str | None = Field(None, max_length=MAX_LONG_TEXT)
    description: str | None = Field(None, max_length=MAX_LONG_TEXT)
    services: list[UUID] = Field(min_length=1, max_length=MAX_SERVICES_PER_REQUEST)
    priority: CallPriority = CallPriority.MEDIUM

    @model_validator(mode="after")
    def _schedule(self) -> Self:
        if self.service_schedule_type is ServiceScheduleType.SCHEDULED:
            if self.scheduled_at is None:
                raise ValueError("scheduledAt is required for Scheduled requests")
        elif self.location_preference is not LocationPreference.CUSTOMER_LOCATION:
            raise ValueError("locationPreference: OnDemand requests are at CustomerLocation")
        if len(set(self.services)) != len(self.services):
            raise ValueError("services: each service at most once")
        return self


class EscalateServiceRequest(CamelModel):
    """Body of PUT /service-request/{requestId}/priority: only ever upwards."""

    priority: CallPriority
    reason: str | None = Field(None, max_length=MAX_LONG_TEXT)


class CreateServiceRequestResponse(CamelModel):
    request_id: UUID
    request_number: str


class ServiceRequestAction(CamelModel):
    """Optional body of PUT /service-request/{requestId}/{actionType}."""

    request_id: UUID | None = None
    action_type: int | None = None
    location_update: Coordinates | None = None
    reason: str | None = Field(None, max_length=MAX_LONG_TEXT)


class CompleteServiceRequest(CamelModel):
    mileage: int | None = Field(None, ge=0, le=MAX_MILEAGE)
    evidences: list[Annotated[str, Field(max_length=MAX_LONG_TEXT)]] | None = Field(
        None, max_length=MAX_EVIDENCES
    )
    completed_services: list[UUID] | None = Field(None, max_length=MAX_SERVICES_PER_REQUEST)
    additional_services: list[UUID] | None = Field(None, max_length=MAX_SERVICES_PER_REQUEST)


class SubmitFeedback(CamelModel):
    rating: int = Field(ge=1, le=5)
    feedback: str | None = Field(None, max_length=MAX_LONG_TEXT)


class AssignServiceRequestModel(CamelModel):
    request_id: UUID
    technician_id: UUID
    scheduled_at: IsoDatetime | None = None


class QueueOrder(CamelModel):
    request_ids: list[UUID] = Field(min_length=1, max_length=100)


class UserBasicInfo(CamelModel):
    role: str
    subject: str


class RequestedServiceInfo(CamelModel):
    service_id: UUID
    service_code: str
    service_name: str
    service_description: str | None = None
    service_price: float | None = None
    service_status: ServiceStatus
    reason_of_rejection: str | None = None
    duration_minutes: int = 0
    is_additional: bool = False


class ServiceRequestDetailedResponse(CamelModel):
    request_id: UUID
    customer_id: UUID
    vehicle_id: UUID
    request_number: str
    priority: CallPriority = CallPriority.MEDIUM
    service_schedule_type: ServiceScheduleType
    location_preference: LocationPreference
    request_status: RequestStatus
    requested_at: datetime
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    completed_at: datetime | None = None
    duration: float | None = Field(None, description="Seconds from start of work to completion.")
    cancelled_at: datetime | None = None
    cancelled_by: UserBasicInfo | None = None
    cancellation_reason: str | None = None
    latitude: float
    longitude: float
    location: str | None = None
    description: str | None = None
    estimated_price: float | None = None
    payment_status: PaymentStatus
    payment_method: str | None = None
    transaction_no: str | None = None
    subtotal: float | None = None
    paid_amount: float | None = None
    payment_completed_at: datetime | None = None
    invoice_id: UUID | None = None
    invoice_number: str | None = None
    rating: int | None = None
    feedback: str | None = None
    mileage: int | None = None
    evidences: list[str] | None = None
    assigned_at: datetime | None = None
    journey_started_at: datetime | None = None
    arrived_at: datetime | None = None
    ring_start_time: datetime | None = None
    ring_end_time: datetime | None = None
    queue_position: int | None = None
    service_area_id: UUID | None = Field(None, description="The service area it was made in.")
    service_area_name: str | None = None
    sla_due_at: datetime | None = Field(
        None, description="A technician is due there by then (the area's response-time SLA)."
    )
    sla_violated_at: datetime | None = Field(None, description="When that time passed unmet.")
    version: int
    customer: CustomerBasicInfo
    vehicle: VehicleBasicInfo
    van: VanInfo | None = None
    technician: TechnicianBasicInfo | None = None
    services: list[RequestedServiceInfo] = Field(default_factory=list)


class ServiceRequestBasicInfo(CamelModel):
    request_id: UUID
    request_number: str
    customer_id: UUID
    technician_id: UUID | None = None
    request_status: RequestStatus
    latitude: float
    longitude: float
    location: str | None = None
    requested_at: datetime


class ServiceRequestSummary(ServiceRequestBasicInfo):
    scheduled_at: datetime | None = None
    estimated_duration: int | None = Field(None, description="Minutes of the requested services.")


class ServiceRequestsFilter(Paging):
    request_status: RequestStatus | None = None
    priority: CallPriority | None = None
    service_area_id: UUID | None = None
    payment_status: PaymentStatus | None = None
    action: EngagementAction | None = None
    service_schedule_type: ServiceScheduleType | None = None
    location_preference: LocationPreference | None = None
    from_date: IsoDatetime | None = None
    to_date: IsoDatetime | None = None


class TechnicianSuggestionsFilter(Paging):
    search_keyword: str | None = Field(None, max_length=MAX_TEXT)


class TechnicianSuggestionsResponse(CamelModel):
    technician_info: TechnicianBasicInfo
    eta: int | None = Field(None, description="Minutes to the request's location; null unknown.")
    distance_in_meter: int | None = None
    job_completed_today: int
    job_queue_today: int


class QueueInfo(CamelModel):
    request_id: UUID
    technician_id: UUID | None = None
    queue_position: int | None = None
    queue_length: int
    eta_seconds: int | None = None
    eta_window_start: datetime | None = None
    eta_window_end: datetime | None = None
