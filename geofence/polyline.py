"""Google's encoded polyline format (precision 5), as map SDKs and the seed's API expect.

https://developers.google.com/maps/documentation/utilities/polylinealgorithm
"""

from __future__ import annotations

from collections.abc import Iterable

PRECISION = 1e5


def _encode_value(value: int, out: list[str]) -> None:
    value = ~(value << 1) if value < 0 else value << 1
    while value >= 0x20:
        out.append(chr((0x20 | (value & 0x1F)) + 63))
        value >>= 5
    out.append(chr(value + 63))


def encode(points: Iterable[tuple[float, float]]) -> str:
    """(lat, lon) points to an encoded polyline."""
    out: list[str] = []
    last_lat = last_lon = 0
    for lat, lon in points:
        ilat, ilon = round(lat * PRECISION), round(lon * PRECISION)
        _encode_value(ilat - last_lat, out)
        _encode_value(ilon - last_lon, out)
        last_lat, last_lon = ilat, ilon
    return "".join(out)


def decode(text: str) -> list[tuple[float, float]]:
    """An encoded polyline to (lat, lon) points."""
    values: list[int] = []
    shift = result = 0
    for ch in text:
        b = ord(ch) - 63
        result |= (b & 0x1F) << shift
        shift += 5
        if b < 0x20:
            values.append(~(result >> 1) if result & 1 else result >> 1)
            shift = result = 0
    points: list[tuple[float, float]] = []
    lat = lon = 0
    for i in range(0, len(values) - 1, 2):
        lat += values[i]
        lon += values[i + 1]
        points.append((lat / PRECISION, lon / PRECISION))
    return points
