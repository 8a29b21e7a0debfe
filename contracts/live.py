"""The live position: each device's newest fix, as the gateway writes it and every reader
(the API's queue, route info and ring) reads it.

A hash per device (`contracts.keys.Keys.device`) holding the newest fix's fields as text,
and the device as a member of its tenant's GEO set of its shard (`Keys.geo`) at that fix's
position. `ts` is the fix time capped at the receive time (`ingest.filters.order_time`), in
Unix seconds: what "newest" compares (a fix dated ahead of the clock cannot hold the
position against the device's next real fixes) and what the ring checks for freshness;
the other fields are named as in `devices.fix.Fix`. Optional
numbers are present only when the device reported them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from devices.fix import Fix
from ingest.filters import order_time

MAX_GEO_LAT: Final = 85.05112878
"""Redis GEO accepts latitudes up to this (Web Mercator's limit): a fix beyond it updates
the hash but not the GEO set."""
TS: Final = "ts"
"""The field with the fix time (capped at the receive time) in Unix seconds."""
NUMBER_FIELDS: Final = (
    "altitude", "speed", "heading", "accuracy", "hdop", "satellites", "battery",
    "power_v", "odometer_m",
)  # fmt: skip
"""Optional numeric fields of a fix, in the hash only when the device reported them."""


def fields(fix: Fix) -> list[str]:
    """[ts, lon, lat, geo] then the hash's field/value pairs, as strings (floats by repr).
    `geo` is "1" when the GEO set can hold the position. The first pair is ('device', id):
    the GEO member. The gateway's newest-wins script writes `ts` and the pairs."""
    out = [
        repr(order_time(fix).timestamp()), repr(fix.lon), repr(fix.lat), "1" if abs(fix.lat) <= MAX_GEO_LAT else "0",
        "device", fix.device_id, "tenant", fix.tenant_id, "time", fix.time.isoformat(),
        "lat", repr(fix.lat), "lon", repr(fix.lon), "protocol", fix.protocol.value,
        "valid", "1" if fix.valid else "0",
    ]  # fmt: skip
    for name in NUMBER_FIELDS:
        value = getattr(fix, name)
        if value is not None:
            out += [name, repr(value)]
    if fix.ignition is not None:
        out += ["ignition", "1" if fix.ignition else "0"]
    if fix.alarm is not None:
        out += ["alarm", fix.alarm]
    if fix.received_at is not None:
        out += ["received_at", fix.received_at.isoformat()]
    return out


class LivePosition(msgspec.Struct, frozen=True, kw_only=True):
    """What readers take from a live position hash."""

    device: str
    tenant: str | None
    ts: float
    time: str | None
    """The fix time, ISO 8601 as written."""
    lat: float
    lon: float
    heading: float | None = None
    speed: float | None = None
    accuracy: float | None = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _number(found: Mapping[str, str], name: str) -> float | None:
    value = found.get(name)
    return float(value) if value is not None else None


def decode(raw: Mapping[Any, Any]) -> LivePosition | None:
    """A live position from its hash as redis-py returns it (bytes or text); None when the
    hash is empty or lacks a position."""
    if not raw:
        return None
    found = {_text(k): _text(v) for k, v in raw.items()}
    if "lat" not in found or "lon" not in found:
        return None
    return LivePosition(
        device=found.get("device", ""), tenant=found.get("tenant"),
        ts=float(found.get(TS, "0")), time=found.get("time"),
        lat=float(found["lat"]), lon=float(found["lon"]),
        heading=_number(found, "heading"), speed=_number(found, "speed"),
        accuracy=_number(found, "accuracy"),
    )  # fmt: skip
