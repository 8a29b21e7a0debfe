"""What the dispatcher console and the tracking page load over REST: the map's settings,
the road network, the fleet with live positions and the rings in progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from api.models.common import CamelModel
from api.models.tracking import TechnicianLocation


class MapConfig(CamelModel):
    tiles_url: str | None = None
    attribution: str
    has_roads: bool


class RoadNetwork(CamelModel):
    """A GeoJSON FeatureCollection (LineStrings of the routing extract's roads)."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[dict[str, Any]]


class FleetTechnician(CamelModel):
    technician_id: UUID
    technician_code: str
    name: str
    availability_status: str
    device_id: str | None = None
    van_number: str | None = None
    location: TechnicianLocation | None = None


class RungTechnician(CamelModel):
    technician_id: UUID
    name: str
    phase: int
    ring_started_at: datetime
    ring_ended_at: datetime | None = None
    action: str  # the technician's latest engagement: NOTIFIED, REJECTED, ACCEPTED, CANCELED


class RingProgress(CamelModel):
    request_id: UUID
    request_number: str
    phase: int  # 0-based phase under way; -1 before the first phase ran
    phase_count: int
    min_radius_miles: float
    max_radius_miles: float
    phase_ends_at: datetime  # when the next phase (or the timeout to Pending) runs
    rung: list[RungTechnician]
