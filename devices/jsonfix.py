"""fixgate's own public JSON fix, as published on `fixgate/{tenant}/{device}/fix`.

Sans-IO: a payload (one MQTT message body) goes in, `Fix`es and `DecodeError` events come
out; no I/O, logging or clock reads (the receive time comes in as `now`). The wire format
is documented for device makers in `docs/json-fix.md`.

Schema evolution follows msgspec's rules (`docs/schema-evolution.rst`): fields are only
ever appended, each with a default; a field never changes type or meaning; unknown fields
are ignored, so a newer device can publish to an older gateway. A test decodes a payload as
the previous version wrote it, to pin the format.

This module also holds what the JSON inputs share (the physical bounds and the mapping of
msgspec's errors to `DecodeError` reasons), so `devices.owntracks` does not repeat them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec

from devices.events import DecodeError, DecodeErrorReason
from devices.fix import (
    MAX_ACCURACY_M,
    MAX_ALTITUDE_M,
    MAX_HDOP,
    MAX_SATELLITES,
    MAX_SPEED_MPS,
    MAX_UNIX_SECONDS,
    MIN_ALTITUDE_M,
    Fix,
    Heading,
    Latitude,
    Longitude,
    Protocol,
)

__all__ = [
    "MAX_ACCURACY_M",
    "MAX_FIXES_PER_MESSAGE",
    "MAX_PAYLOAD_BYTES",
    "MAX_SPEED_MPS",
    "JsonFix",
    "decode_json_fixes",
    "encode_json_fixes",
    "schema_error",
    "to_json_fix",
]

# --- Bounds on one message (configurable per call) -------------------------------------

MAX_FIXES_PER_MESSAGE: Final = 1000
"""Fixes in one batch. A tracker's backlog after a tunnel or a dead zone is one fix per
second for ~16 minutes per message; longer backlogs are split by the device. The MQTT
message is acknowledged only once all its fixes are durable, so one message must stay a
small, bounded unit of work and memory (1000 fixes is ~0.5 MB of `Fix` objects)."""

MAX_PAYLOAD_BYTES: Final = 1024 * 1024
"""Bytes in one payload. A full fix is ~200 bytes of JSON, so 1000 of them fit with 5x
headroom for whitespace and fields appended later; it is also EMQX's default
`max_packet_size`, so a default broker would not deliver anything larger anyway. Checked
before parsing, so a hostile payload costs one `len()`."""

# --- Physical bounds (`devices.fix` holds them; the annotations check them on decode) ---

UnixSeconds = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_UNIX_SECONDS)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
AltitudeM = Annotated[float, msgspec.Meta(ge=MIN_ALTITUDE_M, le=MAX_ALTITUDE_M)]
SpeedMps = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_SPEED_MPS)]
AccuracyM = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_ACCURACY_M)]
Hdop = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_HDOP)]
Satellites = Annotated[int, msgspec.Meta(ge=0, le=MAX_SATELLITES)]
BatteryPercent = Annotated[int, msgspec.Meta(ge=0, le=100)]


class JsonFix(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """One fix on the wire, format version 1. Append new fields at the end, with a default."""

    time: AwareDatetime | UnixSeconds
    """Fix time: an RFC 3339 string with an offset, or Unix seconds (may be fractional)."""
    lat: Latitude
    """WGS84 latitude, degrees."""
    lon: Longitude
    """WGS84 longitude, degrees."""
    alt: AltitudeM | None = None
    """Metres above mean sea level."""
    speed: SpeedMps | None = None
    """Ground speed, metres per second."""
    heading: Heading | None = None
    """Course over ground, degrees true, in [0, 360)."""
    accuracy: AccuracyM | None = None
    """Horizontal accuracy radius, metres."""
    hdop: Hdop | None = None
    sats: Satellites | None = None
    """Satellites used in the fix."""
    valid: bool = True
    """The device's own claim that this is a real fix."""
    battery: BatteryPercent | None = None
    """Battery level, percent."""


# Typed decoders, built once (msgspec perf tips). The first pass decodes the whole message
# straight into Structs; the element-wise decoders run only when that pass fails, to keep
# the good fixes of a batch that has a bad one.
_decode_message = msgspec.json.Decoder(JsonFix | list[JsonFix]).decode
_decode_one = msgspec.json.Decoder(JsonFix).decode
_decode_raw_elements = msgspec.json.Decoder(list[msgspec.Raw]).decode
_check_json = msgspec.json.Decoder(msgspec.Raw).decode  # skips the value, checks the syntax
_encode = msgspec.json.Encoder().encode

_NO_ERRORS: Final[tuple[DecodeError, ...]] = ()


def decode_json_fixes(
    payload: bytes | bytearray,
    device_id: str,
    tenant_id: str,
    now: float,
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    max_fixes_per_message: int = MAX_FIXES_PER_MESSAGE,
) -> tuple[list[Fix], Sequence[DecodeError]]:
    """Decode one `fixgate/{tenant}/{device}/fix` payload: a fix object or an array of them.

    Args:
        payload: the message body (bytes or bytearray).
        device_id, tenant_id: the identity the caller resolved (from the topic, checked
            against the registry); they are not read from the payload.
        now: wall-clock receive time, Unix seconds; becomes each fix's `received_at`.
        max_payload_bytes, max_fixes_per_message: see the module constants.

    Returns:
        `(fixes, errors)`. A good message gives `(fixes, ())`. A message that is not
        usable as a whole (invalid JSON, too large, an empty or oversized batch, a bad
        single fix) gives `([], [one error])`. In a batch with some bad elements, the good
        ones are still returned and each bad one adds an error whose `detail` names its
        index (`- at `$[3].lat``), so a single broken fix does not cost its neighbours.

    Raises:
        ValueError: `device_id` or `tenant_id` is empty (a caller bug, not device input).
    """
    if not device_id or not tenant_id:
        raise ValueError("device_id and tenant_id must be non-empty")
    if len(payload) > max_payload_bytes:
        detail = f"{len(payload)} bytes > max_payload_bytes={max_payload_bytes}"
        return [], [DecodeError(DecodeErrorReason.PAYLOAD_TOO_LARGE, detail)]
    received_at = datetime.fromtimestamp(now, UTC)
    try:
        message = _decode_message(payload)
    except msgspec.ValidationError as exc:
        return _after_misfit(payload, exc, device_id, tenant_id, received_at, max_fixes_per_message)
    except msgspec.DecodeError as exc:
        return [], [DecodeError(DecodeErrorReason.INVALID_JSON, str(exc))]

    if isinstance(message, JsonFix):
        wire_fixes: list[JsonFix] = [message]
    else:
        batch_error = _check_batch_size(len(message), max_fixes_per_message)
        if batch_error is not None:
            return [], [batch_error]
        wire_fixes = message
    try:
        return [_to_fix(w, device_id, tenant_id, received_at) for w in wire_fixes], _NO_ERRORS
    except (OverflowError, ValueError):
        # An extreme time with an offset (0001-01-01T00:00+01:00) has no UTC equivalent;
        # rare enough to redo the batch one element at a time to find it.
        single = isinstance(message, JsonFix)
        return _convert_each(wire_fixes, device_id, tenant_id, received_at, single=single)


def _check_batch_size(count: int, max_fixes_per_message: int) -> DecodeError | None:
    if count == 0:
        return DecodeError(DecodeErrorReason.EMPTY_BATCH, "empty array - at `$`")
    if count > max_fixes_per_message:
        detail = f"{count} fixes > max_fixes_per_message={max_fixes_per_message} - at `$`"
        return DecodeError(DecodeErrorReason.BATCH_TOO_LARGE, detail)
    return None


def _after_misfit(
    payload: bytes | bytearray,
    exc: msgspec.ValidationError,
    device_id: str,
    tenant_id: str,
    received_at: datetime,
    max_fixes_per_message: int,
) -> tuple[list[Fix], list[DecodeError]]:
    """The message did not fit as a whole: bad JSON, a bad single fix, or a bad element."""
    # msgspec stops at the first misfit, before it would see malformed JSON further on.
    try:
        _check_json(payload)
    except msgspec.DecodeError as malformed:
        return [], [DecodeError(DecodeErrorReason.INVALID_JSON, str(malformed))]
    if payload.lstrip()[:1] == b"[":
        return _decode_elements(payload, device_id, tenant_id, received_at, max_fixes_per_message)
    return [], [schema_error(exc)]


def _decode_elements(
    payload: bytes | bytearray,
    device_id: str,
    tenant_id: str,
    received_at: datetime,
    max_fixes_per_message: int,
) -> tuple[list[Fix], list[DecodeError]]:
    """Slow path for a batch that failed as a whole: decode each element on its own."""
    elements = _decode_raw_elements(payload)  # the caller checked: a JSON array
    batch_error = _check_batch_size(len(elements), max_fixes_per_message)
    if batch_error is not None:
        return [], [batch_error]
    fixes: list[Fix] = []
    errors: list[DecodeError] = []
    for index, element in enumerate(elements):
        try:
            wire = _decode_one(element)
        except msgspec.ValidationError as exc:
            errors.append(schema_error(exc, index))
            continue
        try:
            fixes.append(_to_fix(wire, device_id, tenant_id, received_at))
        except (OverflowError, ValueError):
            errors.append(_time_error(wire, index))
    return fixes, errors


def _convert_each(
    wire_fixes: list[JsonFix],
    device_id: str,
    tenant_id: str,
    received_at: datetime,
    *,
    single: bool,
) -> tuple[list[Fix], list[DecodeError]]:
    fixes: list[Fix] = []
    errors: list[DecodeError] = []
    for index, wire in enumerate(wire_fixes):
        try:
            fixes.append(_to_fix(wire, device_id, tenant_id, received_at))
        except (OverflowError, ValueError):
            errors.append(_time_error(wire, None if single else index))
    return fixes, errors


def _to_fix(wire: JsonFix, device_id: str, tenant_id: str, received_at: datetime) -> Fix:
    time = wire.time
    # msgspec parses "Z" and "+00:00" to `UTC` itself, so `astimezone` returns `time` as is.
    time = datetime.fromtimestamp(time, UTC) if isinstance(time, float) else time.astimezone(UTC)
    return Fix(
        device_id=device_id,
        tenant_id=tenant_id,
        time=time,
        lat=wire.lat,
        lon=wire.lon,
        altitude=wire.alt,
        speed=wire.speed,
        heading=wire.heading,
        accuracy=wire.accuracy,
        hdop=wire.hdop,
        satellites=wire.sats,
        valid=wire.valid,
        protocol=Protocol.JSON,
        received_at=received_at,
        battery=wire.battery,
    )


def _time_error(wire: JsonFix, index: int | None) -> DecodeError:
    where = "$.time" if index is None else f"$[{index}].time"
    time = wire.time.isoformat() if isinstance(wire.time, datetime) else repr(wire.time)
    detail = f"time {time} cannot be expressed in UTC - at `{where}`"
    return DecodeError(DecodeErrorReason.OUT_OF_RANGE, detail)


# msgspec words a failed `Meta` bound as "Expected `float` <= 90.0" and a number that does
# not fit a float or int64 as "Number out of range"; everything else is a type mismatch.
_OUT_OF_RANGE_MESSAGE = re.compile(r"Expected `[^`]*` (?:>=|<=|>|<) |Number out of range")
_PATH_MARKER = " - at `$"


def schema_error(exc: msgspec.ValidationError, index: int | None = None) -> DecodeError:
    """Map msgspec's validation error to a `DecodeError`; `detail` keeps its JSON path.

    `index` re-roots the path at a batch element decoded on its own (`$.lat` becomes
    `$[3].lat`), so the detail reads as if the whole batch had been decoded.
    """
    detail = str(exc)
    reason = (
        DecodeErrorReason.OUT_OF_RANGE
        if _OUT_OF_RANGE_MESSAGE.match(detail)
        else DecodeErrorReason.WRONG_TYPE
    )
    if index is not None:
        if _PATH_MARKER in detail:
            detail = detail.replace(_PATH_MARKER, f"{_PATH_MARKER}[{index}]", 1)
        else:
            detail = f"{detail}{_PATH_MARKER}[{index}]`"
    return DecodeError(reason, detail)


def to_json_fix(fix: Fix) -> JsonFix:
    """The wire form of a normalized fix (identity and receive time are not on the wire)."""
    return JsonFix(
        time=fix.time,
        lat=fix.lat,
        lon=fix.lon,
        alt=fix.altitude,
        speed=fix.speed,
        heading=fix.heading,
        accuracy=fix.accuracy,
        hdop=fix.hdop,
        sats=fix.satellites,
        valid=fix.valid,
        battery=fix.battery,
    )


def encode_json_fixes(fixes: Sequence[Fix]) -> bytes:
    """A batch payload for `fixgate/{tenant}/{device}/fix` (simulators, tests, benches).

    Times are written as RFC 3339 in UTC (`...Z`); unset fields are left out.
    """
    return _encode([to_json_fix(fix) for fix in fixes])
