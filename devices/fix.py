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
from typing import Annotated, Final

import msgspec

from devices.units import knots_to_mps

# --- Physical bounds: what no real fix can carry --------------------------------------
# Only impossibility is rejected by these; plausibility (0/0, jumps, future time) is judged
# in `ingest.filters`, where each reason is counted. The JSON decoders check them as they
# decode (which also keeps inf and NaN out of a `Fix`); the filter checks every fix against
# them again, whatever decoded it, so nothing reaches the database that its columns
# cannot hold (a smallint of satellites, a float4 of altitude).

MAX_UNIX_SECONDS: Final = 253_402_300_799.0
"""9999-12-31T23:59:59Z, the last second a `datetime` can hold. It also rejects Unix
milliseconds sent by mistake (1.7e12 today)."""
MIN_ALTITUDE_M: Final = -12_000.0
"""Below the deepest ocean trench (-10,935 m); no receiver reports from lower."""
MAX_ALTITUDE_M: Final = 100_000.0
"""The Karman line; nothing that reports to a fleet gateway flies higher."""
MAX_SPEED_MPS: Final = knots_to_mps(1000.0)
"""1000 knots (~514 m/s), the COCOM limit: civil GNSS receivers stop reporting above it."""
MAX_ACCURACY_M: Final = 20_000_000.0
"""Half the Earth's circumference: a larger radius covers the whole planet."""
MAX_HDOP: Final = 100.0
"""NMEA's HDOP field tops out at 99.99, the conventional "no fix" value."""
MAX_SATELLITES: Final = 255
"""One byte in every tracker protocol; all GNSS constellations together have ~130."""
MAX_BATTERY_PERCENT: Final = 100

Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]
Heading = Annotated[float, msgspec.Meta(ge=0.0, lt=360.0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]


class Protocol(enum.StrEnum):
    """Where a fix came from (a Prometheus label, so keep the set small)."""

    NMEA = "nmea"
    JSON = "json"
    OWNTRACKS = "owntracks"
    TELTONIKA = "teltonika"
    GT06 = "gt06"
    OSMAND = "osmand"
    """The Traccar Client app (the OsmAnd protocol over HTTP)."""


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
    # Appended for the fleet trackers (issue 12). None is "not reported", never "off"/0.
    ignition: bool | None = None
    """Vehicle ignition (ACC line) on, when the tracker is wired to it."""
    power_v: float | None = None
    """External (vehicle) power supply voltage, volts."""
    odometer_m: float | None = None
    """The tracker's total odometer, metres."""
    alarm: str | None = None
    """What raised this fix, when it is an alarm or an event (`devices.alarms.Alarm`)."""
