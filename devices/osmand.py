"""The Traccar Client app's requests (the OsmAnd protocol), sans-IO: one request, one report.

Two shapes reach the HTTP listener (Traccar's `OsmAndProtocolDecoder` reads both):

- the query-string form of the older apps and of OsmAnd itself, in the URL of a GET or
  POST, or as a form body when the URL has none:
  `?id=..&timestamp=..&lat=..&lon=..&speed=..&bearing=..&altitude=..&accuracy=..&batt=..`
  `timestamp` is Unix seconds (or milliseconds when above 2^31), or ISO 8601;
  `speed` is knots; `bearing` (or `heading`) degrees; `batt` percent; also `hdop`,
  `valid` and `location=lat,lon`.
- the JSON body the current app sends (the transistorsoft location shape):
  `{"location": {"timestamp": "<ISO 8601>", "coords": {"latitude", "longitude", "speed"
  (m/s), "heading", "altitude", "accuracy"}, "battery": {"level": 0..1, ...}, ...},
  "device_id": "..."}` where -1 means "not available" for speed, heading, accuracy and
  battery level.

`decode_osmand` returns an `OsmandReport` (the device's own identifier plus the position)
or a `DecodeError` whose `detail` names the bad field. Mapping the identifier to a
registered device and tenant is the shell's job: `report.fix(device_id, tenant_id)`.
Unknown query parameters and JSON fields are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl

import msgspec

from devices.events import DecodeError, DecodeErrorReason
from devices.fix import (
    MAX_ACCURACY_M,
    MAX_ALTITUDE_M,
    MAX_HDOP,
    MAX_SPEED_MPS,
    MAX_UNIX_SECONDS,
    MIN_ALTITUDE_M,
    Fix,
    Protocol,
)
from devices.units import knots_to_mps

__all__ = ["MAX_BODY_BYTES", "MAX_ID_CHARS", "OsmandReport", "decode_osmand"]

MAX_BODY_BYTES: Final = 64 * 1024
"""Bytes in one request body. The app's JSON location is under 1 KiB (one location per
request; its `extras` are user-defined but small); 64 KiB is ample and is checked before
parsing, so a hostile body costs one `len()`."""

MAX_ID_CHARS: Final = 128
"""Longest device identifier. The app's default is a short number; the registry's ids are
short strings; anything longer is not an identifier."""

_MS_THRESHOLD: Final = 2**31
"""Traccar's rule: an integer timestamp above 2^31 - 1 is milliseconds (2^31 seconds is
2038-01-19, the milliseconds of any date since 1970-01-25 are above it)."""


class OsmandReport(msgspec.Struct, frozen=True, kw_only=True):
    """One position from the app, identified by the app's own id (not yet a device)."""

    device_key: str
    """The app's identifier (`id`/`deviceid` or JSON `device_id`), for the registry lookup."""
    time: datetime
    lat: float
    lon: float
    altitude: float | None = None
    speed: float | None = None
    """Metres per second."""
    heading: float | None = None
    accuracy: float | None = None
    hdop: float | None = None
    battery: int | None = None
    valid: bool = True
    received_at: datetime

    def fix(self, device_id: str, tenant_id: str) -> Fix:
        """The report as a fix of the registered device."""
        return Fix(
            device_id=device_id,
            tenant_id=tenant_id,
            time=self.time,
            lat=self.lat,
            lon=self.lon,
            altitude=self.altitude,
            speed=self.speed,
            heading=self.heading,
            accuracy=self.accuracy,
            hdop=self.hdop,
            valid=self.valid,
            protocol=Protocol.OSMAND,
            received_at=self.received_at,
            battery=self.battery,
        )


# -- the JSON body, read through view Structs (only what is used) -------------------------


class _Coords(msgspec.Struct, frozen=True):
    latitude: float
    longitude: float
    speed: float | None = None
    heading: float | None = None
    altitude: float | None = None
    accuracy: float | None = None


class _Battery(msgspec.Struct, frozen=True):
    level: float | None = None


class _Location(msgspec.Struct, frozen=True):
    timestamp: str | float
    coords: _Coords
    battery: _Battery | None = None


class _Body(msgspec.Struct, frozen=True):
    location: _Location
    device_id: str


_decode_body = msgspec.json.Decoder(_Body).decode


class _Bad(Exception):
    """Internal: a field that is missing or does not parse (caught in `decode_osmand`)."""

    def __init__(self, reason: DecodeErrorReason, field: str, detail: str) -> None:
        super().__init__(detail)
        self.error = DecodeError(reason, f"{field}: {detail}")


def decode_osmand(
    method: str,
    query: Mapping[str, str],
    body: bytes,
    now: float,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> OsmandReport | DecodeError:
    """Decode one request of the Traccar Client app.

    Args:
        method: the HTTP method (GET or POST; anything else is refused).
        query: the URL's query parameters, one value each.
        body: the request body (empty for a GET).
        now: wall-clock receive time, Unix seconds (`received_at`).
    """
    if method.upper() not in ("GET", "POST"):
        return DecodeError(DecodeErrorReason.WRONG_TYPE, f"method: {method[:16]!r}")
    if len(body) > max_body_bytes:
        detail = f"body: {len(body)} bytes > max_body_bytes={max_body_bytes}"
        return DecodeError(DecodeErrorReason.PAYLOAD_TOO_LARGE, detail)
    received_at = datetime.fromtimestamp(now, UTC)
    try:
        if query:
            return _from_params(query, received_at)
        stripped = body.lstrip()
        if stripped.startswith(b"{"):
            return _from_json(body, received_at)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(DecodeErrorReason.BAD_FIELD, "body", "not UTF-8") from None
        return _from_params(dict(parse_qsl(text, max_num_fields=100)), received_at)
    except _Bad as bad:
        return bad.error
    except ValueError as exc:  # parse_qsl: too many fields
        return DecodeError(DecodeErrorReason.BAD_FIELD, f"body: {exc}")


def _from_params(params: Mapping[str, str], received_at: datetime) -> OsmandReport:
    key = params.get("id") or params.get("deviceid")
    if not key:
        raise _Bad(DecodeErrorReason.MISSING_FIELD, "id", "missing")
    if "location" in params and ("lat" not in params or "lon" not in params):
        lat_text, _, lon_text = params["location"].partition(",")
        lat, lon = _number("location", lat_text), _number("location", lon_text)
    else:
        lat, lon = _required(params, "lat"), _required(params, "lon")
    speed_kn = _optional(params, "speed")
    heading = _optional(params, "bearing")
    if heading is None:
        heading = _optional(params, "heading")
    battery = _optional(params, "batt")
    timestamp = params.get("timestamp")
    valid_text = params.get("valid")
    return _report(
        key,
        time=received_at if timestamp is None else _time(timestamp),
        lat=lat,
        lon=lon,
        altitude=_optional(params, "altitude"),
        speed=None if speed_kn is None else knots_to_mps(speed_kn),
        heading=heading,
        accuracy=_optional(params, "accuracy"),
        hdop=_optional(params, "hdop"),
        battery=battery,
        valid=valid_text is None or valid_text.lower() in ("1", "true"),
        received_at=received_at,
    )


def _from_json(body: bytes, received_at: datetime) -> OsmandReport:
    try:
        parsed = _decode_body(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        reason = (
            DecodeErrorReason.MISSING_FIELD
            if message.startswith("Object missing required field")
            else DecodeErrorReason.BAD_FIELD
        )
        raise _Bad(reason, "body", message) from None
    except msgspec.DecodeError as exc:
        raise _Bad(DecodeErrorReason.INVALID_JSON, "body", str(exc)) from None
    location = parsed.location
    coords = location.coords
    level = None if location.battery is None else location.battery.level
    timestamp = location.timestamp
    return _report(
        parsed.device_id,
        time=_time(timestamp if isinstance(timestamp, str) else repr(timestamp)),
        lat=coords.latitude,
        lon=coords.longitude,
        altitude=coords.altitude,
        speed=_known(coords.speed),
        heading=_known(coords.heading),
        accuracy=_known(coords.accuracy),
        hdop=None,
        battery=None if level is None or level < 0 else level * 100.0,
        valid=True,
        received_at=received_at,
    )


def _report(
    key: str,
    *,
    time: datetime,
    lat: float,
    lon: float,
    altitude: float | None,
    speed: float | None,
    heading: float | None,
    accuracy: float | None,
    hdop: float | None,
    battery: float | None,
    valid: bool,
    received_at: datetime,
) -> OsmandReport:
    """Check every value against the physical bounds of `devices.fix`, then build."""
    if len(key) > MAX_ID_CHARS or not key.isprintable():
        raise _Bad(DecodeErrorReason.BAD_FIELD, "id", f"not an identifier: {key[:32]!r}")
    _within("lat", lat, -90.0, 90.0)
    _within("lon", lon, -180.0, 180.0)
    if altitude is not None:
        _within("altitude", altitude, MIN_ALTITUDE_M, MAX_ALTITUDE_M)
    if speed is not None:
        _within("speed", speed, 0.0, MAX_SPEED_MPS)
    if heading is not None:
        _within("bearing", heading, 0.0, 360.0)
        heading %= 360.0  # 360 is north, as 0
    if accuracy is not None:
        _within("accuracy", accuracy, 0.0, MAX_ACCURACY_M)
    if hdop is not None:
        _within("hdop", hdop, 0.0, MAX_HDOP)
    if battery is not None:
        _within("batt", battery, 0.0, 100.0)
    return OsmandReport(
        device_key=key,
        time=time,
        lat=lat,
        lon=lon,
        altitude=altitude,
        speed=speed,
        heading=heading,
        accuracy=accuracy,
        hdop=hdop,
        battery=None if battery is None else round(battery),
        valid=valid,
        received_at=received_at,
    )


# -- fields --------------------------------------------------------------------------------


def _number(field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Bad(DecodeErrorReason.BAD_FIELD, field, f"{text[:32]!r} is not a number") from None
    if not math.isfinite(value):
        raise _Bad(DecodeErrorReason.OUT_OF_RANGE, field, f"{text[:32]!r} is not finite")
    return value


def _required(params: Mapping[str, str], field: str) -> float:
    text = params.get(field)
    if text is None or text == "":
        raise _Bad(DecodeErrorReason.MISSING_FIELD, field, "missing")
    return _number(field, text)


def _optional(params: Mapping[str, str], field: str) -> float | None:
    text = params.get(field)
    return None if text is None or text == "" else _number(field, text)


def _known(value: float | None) -> float | None:
    """The app's -1 (and any negative value) means "not available"."""
    return None if value is None or value < 0 else value


def _within(field: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise _Bad(DecodeErrorReason.OUT_OF_RANGE, field, f"{value!r} not in [{low}, {high}]")


def _time(text: str) -> datetime:
    """Unix seconds or milliseconds (integer or decimal), or ISO 8601 (UTC if no offset)."""
    stripped = text.strip()
    try:
        number = float(stripped)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0:
            raise _Bad(DecodeErrorReason.OUT_OF_RANGE, "timestamp", f"{stripped[:32]!r}")
        seconds = number / 1000.0 if number >= _MS_THRESHOLD else number
        if seconds > MAX_UNIX_SECONDS:
            raise _Bad(DecodeErrorReason.OUT_OF_RANGE, "timestamp", f"{stripped[:32]!r}")
        return datetime.fromtimestamp(seconds, UTC)
    iso = stripped.replace(" ", "T", 1)
    if iso.endswith(("Z", "z")):
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        detail = f"{stripped[:40]!r} is not Unix time or ISO 8601"
        raise _Bad(DecodeErrorReason.BAD_FIELD, "timestamp", detail) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise _Bad(DecodeErrorReason.OUT_OF_RANGE, "timestamp", f"{stripped[:40]!r}") from None
