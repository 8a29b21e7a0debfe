"""Service areas (seed 000): a service_area geofence with a response-time SLA, and the
violations of that SLA."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from api.models.catalog import MAX_LONG_TEXT
from api.models.common import CamelModel, IsoDatetime, Paging, PatchModel, optional

MAX_SLA_MINUTES = 7 * 24 * 60
"""Longest response time an area may promise: a week (a scheduled visit's window)."""
PRIORITY_LEVELS = (-1000, 1000)
"""Bounds of an area's priority level (higher holds a request where areas overlap)."""


class ServiceAreaCreate(CamelModel):
    geofence_id: int = Field(
        ge=1, le=2**63 - 1, description="A geofence of kind service_area: the area's shape."
    )
    description: str | None = Field(None, max_length=MAX_LONG_TEXT)
    priority_level: int = Field(1, ge=PRIORITY_LEVELS[0], le=PRIORITY_LEVELS[1])
    response_time_sla_minutes: int = Field(
        60, ge=1, le=MAX_SLA_MINUTES, description="Minutes from request to arrival."
    )


class ServiceAreaUpdate(PatchModel):
    description: str | None = Field(None, max_length=MAX_LONG_TEXT)
    priority_level: int = optional(ge=PRIORITY_LEVELS[0], le=PRIORITY_LEVELS[1])
    response_time_sla_minutes: int = optional(ge=1, le=MAX_SLA_MINUTES)


class ServiceAreaInfo(CamelModel):
    service_area_id: UUID
    geofence_id: int
    name: str = Field(description="The geofence's name.")
    description: str | None = None
    priority_level: int
    response_time_sla_minutes: int
    enabled: bool = True


class ServiceAreasFilter(Paging):
    enabled: bool | None = None


class SlaViolationInfo(CamelModel):
    violation_id: UUID
    request_id: UUID
    request_number: str
    service_area_id: UUID | None = None
    violation_type: str = Field(description="ArrivalTime: nobody there by the area's SLA.")
    target_minutes: int
    actual_minutes: int | None = Field(None, description="Minutes to the arrival, once there.")
    detected_at: datetime
    resolved_at: datetime | None = Field(None, description="When the technician arrived.")


class SlaViolationsFilter(Paging):
    service_area_id: UUID | None = None
    from_date: IsoDatetime | None = None
    to_date: IsoDatetime | None = None
