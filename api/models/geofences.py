"""Geofences over the engine's table: what an admin or dispatcher sends and gets back."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, JsonValue

from api.models.catalog import MAX_TEXT
from api.models.common import CamelModel, Paging, PatchModel, optional

MAX_RADIUS_M = 100_000.0
"""Largest circle fence: a service area wider than 100 km is a region, drawn as a polygon."""
MAX_DWELL_S = 7 * 86400.0
"""Longest dwell: a week inside before geofence_dwell (a depot's long stay), bounded."""


GEOJSON_TYPES: list[JsonValue] = [
    "Polygon",
    "MultiPolygon",
    "Point",
    "Feature",
    "FeatureCollection",
]
"""What a geofence's `geometry` may be (its shape is checked when read: 422 naming it)."""


class GeofenceKind(StrEnum):
    """The engine's fence kinds (geofence.index.FENCE_KINDS, the table's CHECK)."""

    SERVICE_AREA = "service_area"
    DEPOT = "depot"
    CUSTOMER = "customer"
    OTHER = "other"


class GeofenceCreate(CamelModel):
    name: str = Field(min_length=1, max_length=MAX_TEXT)
    kind: GeofenceKind = GeofenceKind.OTHER
    geometry: dict[str, Any] = Field(
        description="GeoJSON Polygon or MultiPolygon (lon, lat), or a Point with radiusM;"
        " a Feature or a FeatureCollection of one feature is taken too.",
        json_schema_extra={
            "required": ["type"],
            "properties": {"type": {"type": "string", "enum": GEOJSON_TYPES}},
        },
    )
    radius_m: float | None = Field(None, gt=0, le=MAX_RADIUS_M)
    dwell_s: float = Field(0.0, ge=0, le=MAX_DWELL_S)


def _geojson_no_default(schema: dict[str, Any]) -> None:
    """May be left out, never null (the column takes none): no default in the document."""
    schema.pop("default", None)
    schema.update(required=["type"], properties={"type": {"type": "string", "enum": GEOJSON_TYPES}})


def _optional_geojson() -> Any:
    return Field(
        None,
        description="The new shape, as in a creation (a Point with radiusM for a circle)",
        json_schema_extra=_geojson_no_default,
    )


class GeofenceUpdate(PatchModel):
    """The fields given change; its kind stays (a service area's fence stays one)."""

    name: str = optional(min_length=1, max_length=MAX_TEXT)
    geometry: dict[str, Any] = _optional_geojson()
    radius_m: float | None = Field(None, gt=0, le=MAX_RADIUS_M)
    dwell_s: float = optional(ge=0, le=MAX_DWELL_S)


class GeofenceInfo(CamelModel):
    geofence_id: int
    name: str
    kind: GeofenceKind
    geometry_type: str = Field(description="POLYGON, MULTIPOLYGON or POINT (a circle)")
    radius_m: float | None = None
    dwell_s: float
    geometry: dict[str, Any] = Field(description="GeoJSON geometry (lon, lat)")


class GeofenceFilter(Paging):
    kind: GeofenceKind | None = None
