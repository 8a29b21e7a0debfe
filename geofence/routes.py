"""A road route to a trip's destination, and the projection of a fix onto it.

`Route` is the contract with the routing client (`gateway.engine.routing`, OSRM): it
builds one from a routing response; the core only reads it. Points are (lat, lon); segment
i runs from points[i] to points[i + 1] and takes segment_durations_s[i] at the routing
engine's speeds. The snap distances say how far the routing engine moved the origin and
the destination to reach its road network: a large one means the point lies outside the
extract (OSRM snaps to the nearest road it knows, possibly kilometres away).
"""

from __future__ import annotations

from typing import Final

import msgspec
import numpy as np

from contracts.geodesy import metres_per_degree


class Route(msgspec.Struct, frozen=True, kw_only=True):
    points: list[tuple[float, float]]
    """(lat, lon) along the road, origin first; at least two."""
    segment_distances_m: list[float]
    """len(points) - 1 entries."""
    segment_durations_s: list[float]
    """len(points) - 1 entries, at the routing engine's speeds."""
    distance_m: float
    duration_s: float
    origin_snap_m: float
    """Distance from the requested origin to the route's first point."""
    destination_snap_m: float
    """Distance from the route's last point to the requested destination."""


class Projection(msgspec.Struct, frozen=True, kw_only=True):
    segment: int
    """Index of the segment the fix projects on."""
    fraction: float
    """How far along that segment, 0..1."""
    off_route_m: float
    """Distance of the fix from the route."""
    lat: float
    lon: float
    """The projected point."""
    remaining_distance_m: float
    remaining_duration_s: float
    """From the projected point to the route's end, at the routing engine's speeds."""


MIN_SEGMENTS: Final = 1
"""A route needs at least one segment to project on."""


def usable(route: Route, max_snap_m: float) -> bool:
    """Whether the route starts and ends where it was asked to (within `max_snap_m`) and
    is well formed; otherwise the origin or destination is outside the routing extract."""
    n = len(route.points) - 1
    return (
        n >= MIN_SEGMENTS
        and len(route.segment_distances_m) == n
        and len(route.segment_durations_s) == n
        and route.origin_snap_m <= max_snap_m
        and route.destination_snap_m <= max_snap_m
    )


def project(route: Route, lat: float, lon: float, from_segment: int = 0) -> Projection:
    """Project (lat, lon) on the route's segments from `from_segment` on (progress is
    monotone: an out-and-back route must not jump to the way back), in metres on the
    tangent plane at the fix."""
    start = max(0, min(from_segment, len(route.points) - 2))
    pts = np.asarray(route.points[start:], dtype=np.float64)
    m_lat, m_lon = metres_per_degree(lat)
    x = (pts[:, 1] - lon) * m_lon
    y = (pts[:, 0] - lat) * m_lat
    ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length2 > 0.0, -(ax * dx + ay * dy) / length2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    px, py = ax + t * dx, ay + t * dy
    d2 = px * px + py * py
    k = int(np.argmin(d2))
    seg = start + k
    frac = float(t[k])
    dist = route.segment_distances_m
    dur = route.segment_durations_s
    remaining_d = (1.0 - frac) * dist[seg] + sum(dist[seg + 1 :])
    remaining_t = (1.0 - frac) * dur[seg] + sum(dur[seg + 1 :])
    return Projection(
        segment=seg,
        fraction=frac,
        off_route_m=float(np.sqrt(d2[k])),
        lat=lat + float(py[k]) / m_lat,
        lon=lon + float(px[k]) / m_lon,
        remaining_distance_m=remaining_d,
        remaining_duration_s=remaining_t,
    )


def remaining_points(route: Route, p: Projection) -> list[tuple[float, float]]:
    """The route from the projected point to its end."""
    return [(p.lat, p.lon), *route.points[p.segment + 1 :]]
