"""OwnTracks JSON, as the OwnTracks phone app publishes it on `owntracks/{user}/{device}`.

Sans-IO: one MQTT message body in, one `Fix`, `Ignored` or `DecodeError` out; no I/O,
logging or clock reads. The payload is read through a small view Struct tagged
`_type: "location"` that holds only the fields fixgate uses (msgspec perf tips: decode
into a view); everything else the app sends (`tid`, `conn`, `SSID`, `created_at`...) is
skipped by the parser.

What the app's fields mean (owntracks.org/booklet/tech/json):
- `tst` is the fix time in Unix seconds, UTC. `created_at` is when the message was built,
  not the fix time, so it is not read.
- `vel` is km/h, `acc`/`alt` metres, `cog` degrees, `batt` percent.
- Optional fields are left out when the app has no value; a left-out field is "unknown"
  (None), never 0: reading a missing `acc` as 0 would claim a perfect fix.
- `-1` in `acc`, `vel`, `cog` or `batt` means "not available" (iOS reports any negative
  accuracy, speed or course as invalid), so every negative value there becomes None.
  `alt` has no sentinel: below sea level is a real altitude.
- Numbers may arrive as JSON strings (`"tst":"1440363922"`), hence `strict=False`.

Other `_type`s (lwt, transition, waypoint, cmd, card, ...) are well formed and carry no
position: they become `Ignored(kind=<_type>)`, or `Ignored(kind="unknown")` for a `_type`
this module does not know (the kind is a metrics label, so the set stays closed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Union

import msgspec

from devices.events import DecodeError, DecodeErrorReason, Ignored
from devices.fix import Fix, Latitude, Longitude, Protocol
from devices.jsonfix import (
    MAX_ACCURACY_M,
    MAX_SPEED_MPS,
    AltitudeM,
    UnixSeconds,
    schema_error,
)
from devices.units import KMH_IN_MPS, kmh_to_mps

__all__ = [
    "MAX_BATCH_MESSAGES",
    "MAX_PAYLOAD_BYTES",
    "OwnTracksLocation",
    "decode_owntracks",
    "decode_owntracks_batch",
]

MAX_PAYLOAD_BYTES: Final = 64 * 1024
"""Bytes in one payload. A location message is 200-400 bytes; the large OwnTracks messages
(cards with a face image, configuration dumps, waypoint lists) go to sub-topics
(`/info`, `/dump`, `/waypoints`) the gateway does not subscribe to. 64 KiB leaves ample
room for fields the app may add, and is checked before parsing."""

MAX_BATCH_MESSAGES: Final = 500
"""Messages in one batch (fixgate's extension of OwnTracks HTTP: a JSON array of messages,
what the technician app sends of the fixes it took offline). The app sends at most 100 at
a time; 500 of 200-400 bytes stay under `MAX_PAYLOAD_BYTES` of the HTTP body (osmand's
64 KiB), and a larger count is refused before any element is decoded."""

_MAX_SPEED_KMH: Final = MAX_SPEED_MPS / KMH_IN_MPS

# -1 is the app's "not available"; the lower bound admits it, the upper bound is physical.
_AccuracyOrUnknown = Annotated[float, msgspec.Meta(ge=-1.0, le=MAX_ACCURACY_M)]
_SpeedKmhOrUnknown = Annotated[float, msgspec.Meta(ge=-1.0, le=_MAX_SPEED_KMH)]
_CourseOrUnknown = Annotated[float, msgspec.Meta(ge=-1.0, le=360.0)]
_BatteryOrUnknown = Annotated[int, msgspec.Meta(ge=-1, le=100)]


class OwnTracksLocation(msgspec.Struct, tag_field="_type", tag="location", frozen=True, gc=False):
    """View of an OwnTracks `_type: location` message: only the fields fixgate uses."""

    tst: UnixSeconds
    """Fix time, Unix seconds, UTC."""
    lat: Latitude
    lon: Longitude
    acc: _AccuracyOrUnknown | None = None
    """Horizontal accuracy, metres."""
    alt: AltitudeM | None = None
    """Metres above sea level."""
    vel: _SpeedKmhOrUnknown | None = None
    """Speed, km/h."""
    cog: _CourseOrUnknown | None = None
    """Course over ground, degrees."""
    batt: _BatteryOrUnknown | None = None
    """Battery, percent."""


# Empty views for the `_type`s the apps document (booklet, "JSON" page), so the common
# no-position messages (lwt, transition) decode without an exception and without reading
# their fields. A missing `_type` fails the tagged union: it is not an OwnTracks message.
_NO_FIX_TYPES: Final = (
    "beacon", "card", "cmd", "configuration", "encrypted", "lwt",
    "request", "status", "steps", "transition", "waypoint", "waypoints",
)  # fmt: skip
_NO_FIX_VIEWS: Final = tuple(
    msgspec.defstruct(f"OwnTracks_{kind}", [], tag_field="_type", tag=kind, frozen=True, gc=False)
    for kind in _NO_FIX_TYPES
)
# Shared, immutable answers: an ignored message allocates nothing.
_IGNORED: Final = {
    view: Ignored(kind=kind) for view, kind in zip(_NO_FIX_VIEWS, _NO_FIX_TYPES, strict=True)
}
_IGNORED_UNKNOWN: Final = Ignored(kind="unknown")


class _Envelope(msgspec.Struct, frozen=True):
    """Just the `_type`, read only after the tagged decode failed."""

    type: str = msgspec.field(name="_type")


_decode_message = msgspec.json.Decoder(
    Union[(OwnTracksLocation, *_NO_FIX_VIEWS)],  # built from data: no `X | Y` spelling
    strict=False,  # the apps and the Recorder send numbers as strings at times
).decode
_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_array = msgspec.json.Decoder(list[msgspec.Raw]).decode


def decode_owntracks(
    payload: bytes | bytearray,
    device_id: str,
    tenant_id: str,
    now: float,
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> Fix | Ignored | DecodeError:
    """Decode one message from `owntracks/{user}/{device}`.

    Args:
        payload: the message body (bytes or bytearray).
        device_id, tenant_id: the registered device the caller mapped (user, device) to.
        now: wall-clock receive time, Unix seconds; becomes the fix's `received_at`.
        max_payload_bytes: see `MAX_PAYLOAD_BYTES`.

    Returns:
        A `Fix` for `_type: location`; `Ignored(kind=...)` for any other `_type`; a
        `DecodeError` for input that is not a well-formed OwnTracks message.

    Raises:
        ValueError: `device_id` or `tenant_id` is empty (a caller bug, not device input).
    """
    if not device_id or not tenant_id:
        raise ValueError("device_id and tenant_id must be non-empty")
    if len(payload) > max_payload_bytes:
        detail = f"{len(payload)} bytes > max_payload_bytes={max_payload_bytes}"
        return DecodeError(DecodeErrorReason.PAYLOAD_TOO_LARGE, detail)
    try:
        message = _decode_message(payload)
    except msgspec.ValidationError as exc:
        return _unknown_type_or_error(payload, exc)
    except msgspec.DecodeError as exc:
        return DecodeError(DecodeErrorReason.INVALID_JSON, str(exc))
    if not isinstance(message, OwnTracksLocation):
        return _IGNORED[type(message)]
    try:
        time = datetime.fromtimestamp(message.tst, UTC)
    except (OverflowError, ValueError):  # only at the very top of the tst bound
        detail = f"tst {message.tst!r} is not a representable time - at `$.tst`"
        return DecodeError(DecodeErrorReason.OUT_OF_RANGE, detail)
    vel, cog, acc, batt = message.vel, message.cog, message.acc, message.batt
    return Fix(
        device_id=device_id,
        tenant_id=tenant_id,
        time=time,
        lat=message.lat,
        lon=message.lon,
        altitude=message.alt,
        speed=None if vel is None or vel < 0 else kmh_to_mps(vel),
        heading=None if cog is None or cog < 0 else cog % 360.0,  # 360 is north, as 0
        accuracy=None if acc is None or acc < 0 else acc,
        protocol=Protocol.OWNTRACKS,
        received_at=datetime.fromtimestamp(now, UTC),
        battery=None if batt is None or batt < 0 else batt,
    )


def _unknown_type_or_error(
    payload: bytes | bytearray, exc: msgspec.ValidationError
) -> Ignored | DecodeError:
    """A `_type` this module does not know is ignored; anything else is the device's error."""
    try:
        envelope = _decode_envelope(payload)
    except msgspec.ValidationError:  # no `_type`, or not a string: not OwnTracks
        return schema_error(exc)
    except msgspec.DecodeError as malformed:  # the misfit came first, bad JSON after it
        return DecodeError(DecodeErrorReason.INVALID_JSON, str(malformed))
    if envelope.type == "location":  # a location with a bad field
        return schema_error(exc)
    return _IGNORED_UNKNOWN


def decode_owntracks_batch(
    payload: bytes | bytearray,
    device_id: str,
    tenant_id: str,
    now: float,
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[Fix | Ignored] | DecodeError:
    """Decode a JSON array of OwnTracks messages (each as `decode_owntracks` reads one).

    The whole batch is refused when one element is malformed: the sender built it in one
    piece, and sending it again unchanged could never make it storable. Returns the
    elements' results in order, or the first element's `DecodeError` (its detail prefixed
    with its index), or a `DecodeError` for the array itself (not an array, empty, more
    than `max_messages`, larger than `max_payload_bytes`).
    """
    if len(payload) > max_payload_bytes:
        detail = f"{len(payload)} bytes > max_payload_bytes={max_payload_bytes}"
        return DecodeError(DecodeErrorReason.PAYLOAD_TOO_LARGE, detail)
    try:
        elements = _decode_array(payload)
    except msgspec.ValidationError as exc:
        return schema_error(exc)
    except msgspec.DecodeError as exc:
        return DecodeError(DecodeErrorReason.INVALID_JSON, str(exc))
    if not elements:
        return DecodeError(DecodeErrorReason.EMPTY_BATCH, "an empty array")
    if len(elements) > max_messages:
        detail = f"{len(elements)} messages > max_messages={max_messages}"
        return DecodeError(DecodeErrorReason.BATCH_TOO_LARGE, detail)
    out: list[Fix | Ignored] = []
    for index, element in enumerate(elements):
        result = decode_owntracks(bytes(element), device_id, tenant_id, now)
        if isinstance(result, DecodeError):
            return DecodeError(result.reason, f"[{index}] {result.detail}")
        out.append(result)
    return out
