"""The engine's events: what it tells the world about geofences and trips.

One JSON object per event, tagged by `type`; docs/events.md describes them and
docs/events.schema.json (generated from these Structs by `python -m devtools.event_schema`)
is the contract every emitted event is validated against in the tests. The schema changes
only by adding optional fields.

`id` is derived from what the event is about (device, fix time, type, fence or trip), so
a fix evaluated twice (redelivered after a crash) yields the same id, and consumers can
drop repeats by id.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

import msgspec

Calculation = Literal["osrm", "local"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    id: str
    """Stable across redelivery: the same fix yields the same id."""
    tenant: str
    device: str
    fix_time: datetime | None
    """Time of the fix that caused the event (UTC); null only for trip_canceled on a
    device that has sent no fix yet."""
    detected_at: datetime
    """When the engine evaluated it (UTC, server clock)."""


class GeofenceEnter(Event, frozen=True, kw_only=True, tag="geofence_enter"):
    geofence: int


class GeofenceExit(Event, frozen=True, kw_only=True, tag="geofence_exit"):
    geofence: int


class GeofenceDwell(Event, frozen=True, kw_only=True, tag="geofence_dwell"):
    geofence: int
    dwell_s: float
    """How long the device has been inside when the dwell fired (>= the fence's dwell_s)."""


class GeofenceCrossed(Event, frozen=True, kw_only=True, tag="geofence_crossed"):
    geofence: int


class QueuedTrip(msgspec.Struct, frozen=True, kw_only=True):
    trip: str
    eta_s: float


class TripUpdate(Event, frozen=True, kw_only=True, tag="trip_update"):
    trip: str
    ref: str | None
    distance_m: float
    """Remaining distance to the destination (road distance for osrm, great circle times
    the road factor for local)."""
    eta_s: float
    """Predicted seconds from fix_time to arrival."""
    calculation: Calculation
    polyline: str
    """Google encoded polyline of the remaining route (local: fix to destination)."""
    polyline_version: int
    """Increases each time the trip is (re-)routed; 0 before the first route."""
    queue: list[QueuedTrip]
    """The device's waiting trips in order, each with its queue ETA."""


class TripArrived(Event, frozen=True, kw_only=True, tag="trip_arrived"):
    trip: str
    ref: str | None


class TripCanceled(Event, frozen=True, kw_only=True, tag="trip_canceled"):
    trip: str
    ref: str | None


AnyEvent = (
    GeofenceEnter
    | GeofenceExit
    | GeofenceDwell
    | GeofenceCrossed
    | TripUpdate
    | TripArrived
    | TripCanceled
)


def event_id(device: str, fix_time_us: int | None, kind: str, subject: str, extra: str = "") -> str:
    """128 bits of BLAKE2b over what the event is about: same inputs, same id."""
    key = f"{device}\x1f{fix_time_us}\x1f{kind}\x1f{subject}\x1f{extra}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


encode_event = msgspec.json.Encoder().encode
decode_event = msgspec.json.Decoder(AnyEvent).decode
