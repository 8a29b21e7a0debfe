"""The normalized fix: the one shape every decoder produces and everything downstream reads.

Units are SI (metres, metres per second, degrees true); conversions from knots, km/h or
mph happen in decoders only, through `devices.units`. The struct is frozen and holds only
scalars, so the garbage collector never tracks it (msgspec: "Disabling Garbage Collection").

The `Meta` bounds state physical impossibility only; they are checked when a fix is
decoded from JSON. Semantic validity (no fix, 0/0, jumps, future time) is judged in
`ingest.filters`, where each failing reason is counted.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Heading = Annotated[float, msgspec.Meta(ge=0.0, lt=360.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]


class Protocol(enum.StrEnum):
    """Where a fix came from (a Prometheus label, so keep the set small)."""

    NMEA = "nmea"
    JSON = "json"
    OWNTRACKS = "owntracks"


class Fix(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One position fix of one device, normalized."""

    device_id: str
    tenant_id: str
    time: datetime
    """Fix time, UTC, as the device reported it (never the server's clock)."""
    lat: Latitude
    """WGS84 latitude, degrees."""
    lon: Longitude
    """WGS84 longitude, degrees."""
    altitude: float | None = None
    """Metres above mean sea level."""
    speed: NonNegative | None = None
    """Ground speed, metres per second."""
    heading: Heading | None = None
    """Course over ground, degrees true."""
    accuracy: NonNegative | None = None
    """Horizontal accuracy radius, metres (phones)."""
    hdop: NonNegative | None = None
    """Horizontal dilution of precision (GNSS receivers)."""
    satellites: int | None = None
    valid: bool = True
    """The device's own claim that this is a real fix (RMC status, GGA quality...)."""
    protocol: Protocol = Protocol.JSON
    received_at: datetime | None = None
    """When the gateway received the bytes, UTC (server clock, set by the listener)."""
    battery: int | None = None
    """Battery level in percent, when the device reports it."""
