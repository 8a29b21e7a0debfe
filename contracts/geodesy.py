"""Distances in true metres on the WGS84 ellipsoid, scalar and vectorised (numpy).

Short distances (fences, margins, routes' segments) use the ellipsoid's local scales at
the points' mean latitude: metres per degree of latitude (the meridional radius M) and of
longitude (the prime-vertical radius N times cos(lat)). That is the tangent plane at the
point, exact to second order: under 2 km its error is below 1 m at 60 degrees of latitude
and millimetres under 100 m, at any latitude. Long distances (a trip's great circle)
use haversine on the mean Earth radius (0.5 % at worst, plenty for an ETA fallback).
Never a fixed metres-per-degree factor: a degree of longitude is 111 km at the equator
and 56 km at 60 degrees.

Sign convention of `signed_distance_m`: POSITIVE INSIDE a fence, negative outside (how
deep the point is inside).

Longitudes are not wrapped: fences and trips that cross the antimeridian are not supported.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

F64 = npt.NDArray[np.float64]

WGS84_A_M: Final = 6_378_137.0
"""WGS84 semi-major axis."""
WGS84_E2: Final = 6.694_379_990_14e-3
"""WGS84 first eccentricity squared."""
MEAN_EARTH_RADIUS_M: Final = 6_371_008.8
"""IUGG mean radius, for haversine."""
LOCAL_MAX_M: Final = 20_000.0
"""Beyond this the tangent plane's error passes ~0.1 %: switch to haversine."""
_DEG: Final = math.pi / 180.0


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(metres per degree of latitude, metres per degree of longitude) at `lat`."""
    s = math.sin(lat * _DEG)
    w = 1.0 - WGS84_E2 * s * s
    m_lat = _DEG * WGS84_A_M * (1.0 - WGS84_E2) / (w * math.sqrt(w))
    m_lon = _DEG * WGS84_A_M * math.cos(lat * _DEG) / math.sqrt(w)
    return m_lat, m_lon


def metres_per_degree_v(lat: F64) -> tuple[F64, F64]:
    """`metres_per_degree` over an array of latitudes."""
    s = np.sin(lat * _DEG)
    w = 1.0 - WGS84_E2 * s * s
    m_lat = _DEG * WGS84_A_M * (1.0 - WGS84_E2) / (w * np.sqrt(w))
    m_lon = _DEG * WGS84_A_M * np.cos(lat * _DEG) / np.sqrt(w)
    return m_lat, m_lon


def local_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Tangent-plane distance at the mean latitude (accurate for short distances)."""
    m_lat, m_lon = metres_per_degree((lat1 + lat2) * 0.5)
    return math.hypot((lat2 - lat1) * m_lat, (lon2 - lon1) * m_lon)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = lat1 * _DEG, lat2 * _DEG
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * _DEG / 2) ** 2
    )
    return 2.0 * MEAN_EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """True distance: tangent plane when short, haversine when long."""
    d = local_distance_m(lat1, lon1, lat2, lon2)
    return d if d < LOCAL_MAX_M else haversine_m(lat1, lon1, lat2, lon2)


def local_distance_v(lat1: F64, lon1: F64, lat2: F64, lon2: F64) -> F64:
    """`local_distance_m` over arrays (for short distances: fences, margins)."""
    m_lat, m_lon = metres_per_degree_v((lat1 + lat2) * 0.5)
    return np.hypot((lat2 - lat1) * m_lat, (lon2 - lon1) * m_lon)


def offset_deg(lat: float, metres: float) -> tuple[float, float]:
    """(degrees of latitude, degrees of longitude) that span `metres` at `lat`, the
    longitude one taken where a circle of that radius reaches closest to a pole (so a
    box built from it always contains the circle)."""
    m_lat, _ = metres_per_degree(lat)
    dlat = metres / m_lat
    poleward = min(89.999, abs(lat) + dlat)
    _, m_lon = metres_per_degree(poleward)
    return dlat, metres / m_lon


def circle_bounds(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of a circle of `radius_m` around a point."""
    dlat, dlon = offset_deg(lat, radius_m)
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


def to_local(geometry: BaseGeometry, lat0: float, lon0: float) -> BaseGeometry:
    """The geometry in metres on the tangent plane at (lat0, lon0): x east, y north."""
    m_lat, m_lon = metres_per_degree(lat0)

    def scale(coords: F64) -> F64:
        out = np.empty_like(coords)
        out[:, 0] = (coords[:, 0] - lon0) * m_lon
        out[:, 1] = (coords[:, 1] - lat0) * m_lat
        return out

    return shapely.transform(geometry, scale)


def signed_distance_m(polygon: BaseGeometry, lat: float, lon: float) -> float:
    """Distance of a point to a (multi)polygon's boundary in metres, positive inside."""
    local = to_local(polygon, lat, lon)
    d = float(shapely.distance(local.boundary, shapely.Point(0.0, 0.0)))
    return d if shapely.contains_xy(polygon, lon, lat) else -d
