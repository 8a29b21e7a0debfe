"""Where things are: live positions, tracks, route info and the tracking broadcast shape."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from api.exports import ExportFormat
from api.models.catalog import CustomerBasicInfo, TechnicianBasicInfo, VanInfo
from api.models.common import CamelModel, IsoDatetime, RequestStatus
from api.models.requests import ServiceRequestBasicInfo


class TechnicianLocation(CamelModel):
    latitude: float
    longitude: float
    heading: float | None = None
    speed: float | None = None
    accuracy: float | None = None
    updated_at: datetime | None = None


class CustomerLocation(CamelModel):
    latitude: float
    longitude: float


class RouteRequestInfo(CamelModel):
    request_id: UUID
    status: RequestStatus


class NamedTechnician(CamelModel):
    technician_id: UUID
    name: str


class NamedCustomer(CamelModel):
    customer_id: UUID
    name: str


class NamedVan(CamelModel):
    van_id: UUID
    registration: str


class ServiceRequestRouteInformation(CamelModel):
    service_request_info: RouteRequestInfo
    technician_info: NamedTechnician | None = None
    customer_info: NamedCustomer
    van_info: NamedVan | None = None
    customer_location: CustomerLocation
    technician_location: TechnicianLocation | None = None
    distance_in_meter: int | None = None
    eta_in_sec: int | None = None
    encoded_polyline: str | None = None
    polyline_version: int | None = None
    calculation_strategy: str | None = None


class LocationBroadcastModel(CamelModel):
    service_request_info: ServiceRequestBasicInfo | None = None
    technician_info: TechnicianBasicInfo | None = None
    customer_info: CustomerBasicInfo | None = None
    van_info: VanInfo | None = None
    technician_location: TechnicianLocation | None = None
    distance_in_meter: int | None = None
    eta_in_sec: int | None = None
    encoded_polyline: str | None = None
    polyline_version: int | None = None
    completed_jobs: int | None = None
    queued_jobs: int | None = None


class LivePosition(CamelModel):
    device_id: str
    latitude: float
    longitude: float
    heading: float | None = None
    speed: float | None = None
    accuracy: float | None = None
    updated_at: datetime | None = None


class TrackPoint(CamelModel):
    time: datetime
    latitude: float
    longitude: float
    speed: float | None = None
    heading: float | None = None


class Track(CamelModel):
    device_id: str
    bucket_seconds: float = Field(
        description="0: every stored fix of the range; else the width of the averaged buckets"
    )
    points: list[TrackPoint]


class TrackQuery(CamelModel):
    from_time: IsoDatetime
    to_time: IsoDatetime


class ExportQuery(TrackQuery):
    format: ExportFormat = Field(description="csv, gpx (GPX 1.1) or geojson")
