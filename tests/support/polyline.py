"""Google's encoded polyline (precision 5), to write engine-shaped `trip_update` events."""

from __future__ import annotations

from collections.abc import Sequence


def _value(delta: int) -> str:
    v = ~(delta << 1) if delta < 0 else delta << 1
    out = []
    while v >= 0x20:
        out.append(chr((0x20 | (v & 0x1F)) + 63))
        v >>= 5
    out.append(chr(v + 63))
    return "".join(out)


def encode(points: Sequence[tuple[float, float]]) -> str:
    """(lat, lon) points -> the encoded string."""
    parts: list[str] = []
    last = (0, 0)
    for lat, lon in points:
        here = (round(lat * 1e5), round(lon * 1e5))
        parts.append(_value(here[0] - last[0]) + _value(here[1] - last[1]))
        last = here
    return "".join(parts)
