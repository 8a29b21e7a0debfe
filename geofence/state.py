"""Per-device engine state: serialisable (msgpack) so the shell keeps it in Redis.

The structs are mutable: the core updates the state it is given in place and returns it
(a per-fix copy would cost more than the evaluation). To retry, decode a fresh copy.
Times are integer microseconds since the epoch (fix time), so comparisons are exact.
The structs are not tracked by the garbage collector (`gc=False`, msgspec's "Disabling
Garbage Collection"): a state never takes part in a reference cycle, and a batch decodes
thousands of them (it made the shell's decode-evaluate-encode path ~25 % faster).
"""

from __future__ import annotations

from typing import Final

import msgspec

from geofence.routes import Route

MAX_DONE_TRIPS: Final = 64
"""Arrived/canceled trip ids remembered per device, so a stale trip list from the
database cannot bring one back; more than a day of a technician's jobs."""


class FenceState(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    inside: bool = False
    streak: int = 0
    """Consecutive fixes inside by more than their error (while not yet inside)."""
    entered_us: int = 0
    dwelled: bool = False
    """The dwell event of this visit has fired."""


class TripState(msgspec.Struct, kw_only=True, gc=False):
    trip: str
    seq: int
    lat: float
    lon: float
    radius_m: float
    service_s: float
    ref: str | None
    route: Route | None = None
    route_version: int = 0
    """Increases each time a route is installed (the polyline version)."""
    route_wanted_us: int | None = None
    """Fix time of the last route request (rate-limits requests)."""
    segment: int = 0
    """Route segment of the last projection (progress only moves forward)."""
    off_route_streak: int = 0
    pace: float = 1.0
    """Observed speed along the route / the route's speed, smoothed."""
    progress_us: int | None = None
    progress_remaining_s: float = 0.0
    """Last on-route projection: fix time and remaining route duration (for the pace)."""
    last_update_us: int | None = None
    last_eta_s: float | None = None
    last_version_sent: int = -1
    inside_since_us: int | None = None
    """Fix time since when the device has been within the trip's radius."""


class DeviceState(msgspec.Struct, kw_only=True, gc=False):
    device: str
    tenant: str
    rev: int = 0
    """Increases on every stored change: the shell's compare-and-set token."""
    last_us: int | None = None
    """Fix time of the newest evaluated fix; older or equal fixes are late."""
    last_lat: float = 0.0
    last_lon: float = 0.0
    speed_mps: float | None = None
    """Smoothed recent speed."""
    fences: dict[int, FenceState] = msgspec.field(default_factory=dict)
    """Fences the device is inside of, or on its way in (streak > 0), by fence id."""
    trips: list[TripState] = msgspec.field(default_factory=list)
    """Open trips by seq: the first is active, the others wait."""
    done: list[str] = msgspec.field(default_factory=list)
    """Recently arrived or canceled trips, newest last."""


encode_state = msgspec.msgpack.Encoder().encode
decode_state = msgspec.msgpack.Decoder(DeviceState).decode
