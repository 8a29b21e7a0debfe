"""The OSRM HTTP client: a road route between two points as a `geofence.routes.Route`.

One request per route: `/route/v1/driving/{lon},{lat};{lon},{lat}` with the full geometry
as GeoJSON and per-segment annotations (distance, duration), so the core can project a
fix on the route and sum what remains. Every failure (connection refused, timeout, HTTP
error, a code other than `Ok`, an answer that does not parse or does not add up) is
None, never an exception: the caller falls back to its local estimate.

Points are (lat, lon) on our side and (lon, lat) on OSRM's; the conversion happens here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import math

import httpx
import msgspec

from geofence.routes import Route

log = logging.getLogger(__name__)

# Asked of every route request: the whole road geometry (not simplified), as GeoJSON, with
# each segment's distance and duration; no turn-by-turn steps (not used, and large).
ROUTE_QUERY = "overview=full&geometries=geojson&annotations=distance,duration&steps=false"


class _Annotation(msgspec.Struct):
    distance: list[float]
    duration: list[float]


class _Leg(msgspec.Struct):
    annotation: _Annotation


class _Geometry(msgspec.Struct):
    coordinates: list[tuple[float, float]]


class _Route(msgspec.Struct):
    geometry: _Geometry
    legs: list[_Leg]
    duration: float


class _Waypoint(msgspec.Struct):
    distance: float
    """Metres from the requested point to where OSRM snapped it onto its road network."""


class _RouteAnswer(msgspec.Struct):
    code: str
    routes: list[_Route] = []
    waypoints: list[_Waypoint] = []


class _NearestAnswer(msgspec.Struct):
    code: str
    waypoints: list[_Waypoint] = []


_route_decoder = msgspec.json.Decoder(_RouteAnswer)
_nearest_decoder = msgspec.json.Decoder(_NearestAnswer)


def _lon_lat(point: tuple[float, float]) -> str:
    lat, lon = point
    # Six decimals: ~0.1 m, finer than any GPS fix.
    return f"{lon:.6f},{lat:.6f}"


def _finite(values: list[float]) -> bool:
    return all(math.isfinite(v) and v >= 0.0 for v in values)


def parse_route(body: bytes) -> Route | None:
    """An OSRM `route` answer (two waypoints) as a Route; None when it is not `Ok` or does
    not add up (a segment per pair of points, finite non-negative numbers).

    The segment durations are OSRM's annotation durations scaled to the route's total,
    which also holds the turn penalties the annotations leave out: so they sum to OSRM's
    duration, and the remaining time of a projection carries its share of the turns.
    """
    try:
        answer = _route_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if answer.code != "Ok" or not answer.routes or len(answer.waypoints) != 2:
        return None
    best = answer.routes[0]
    points = [(lat, lon) for lon, lat in best.geometry.coordinates]
    distances = [d for leg in best.legs for d in leg.annotation.distance]
    durations = [t for leg in best.legs for t in leg.annotation.duration]
    if len(points) < 2 or not (len(distances) == len(durations) == len(points) - 1):
        return None
    snaps = [w.distance for w in answer.waypoints]
    if not (_finite(distances) and _finite(durations) and _finite(snaps)):
        return None
    if not (math.isfinite(best.duration) and best.duration >= 0.0):
        return None
    annotated_s = math.fsum(durations)
    if annotated_s > 0.0:
        scale = best.duration / annotated_s
        durations = [t * scale for t in durations]
    return Route(
        points=points,
        segment_distances_m=distances,
        segment_durations_s=durations,
        distance_m=math.fsum(distances),
        duration_s=math.fsum(durations),
        origin_snap_m=snaps[0],
        destination_snap_m=snaps[1],
    )


def parse_nearest_snap_m(body: bytes) -> float | None:
    """The snap distance of an OSRM `nearest` answer (number=1); None when not `Ok`."""
    try:
        answer = _nearest_decoder.decode(body)
    except msgspec.DecodeError:
        return None
    if answer.code != "Ok" or not answer.waypoints:
        return None
    snap = answer.waypoints[0].distance
    return snap if math.isfinite(snap) and snap >= 0.0 else None


async def _get(client: httpx.AsyncClient, url: str, timeout_s: float) -> bytes | None:
    """The body of a 200 answer within `timeout_s` all told (httpx's timeout bounds each
    phase on its own, not the whole request); None otherwise."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.get(url, timeout=timeout_s)
    except (TimeoutError, httpx.HTTPError) as e:
        log.debug("routing: %s: %r", url, e)
        return None
    if response.status_code != 200:
        # OSRM says why in the body (NoRoute, InvalidValue...): worth a debug line.
        log.debug("routing: %s: HTTP %d %s", url, response.status_code, response.text[:200])
        return None
    return response.content


async def route(
    client: httpx.AsyncClient,
    base_url: str,
    origin: tuple[float, float],
    dest: tuple[float, float],
    timeout_s: float,
) -> Route | None:
    """The driving route from `origin` to `dest` ((lat, lon) each), or None on any failure.

    A point outside the extract still gets a route, snapped to the nearest road OSRM
    knows: the Route's origin_snap_m/destination_snap_m say how far that was.
    """
    url = f"{base_url.rstrip('/')}/route/v1/driving/{_lon_lat(origin)};{_lon_lat(dest)}"
    body = await _get(client, f"{url}?{ROUTE_QUERY}", timeout_s)
    return None if body is None else parse_route(body)


async def nearest_snap_m(
    client: httpx.AsyncClient, base_url: str, point: tuple[float, float], timeout_s: float
) -> float | None:
    """Metres from `point` ((lat, lon)) to the nearest road OSRM routes on, or None on any
    failure: a cheap check of whether a destination lies inside the routing extract."""
    url = f"{base_url.rstrip('/')}/nearest/v1/driving/{_lon_lat(point)}?number=1"
    body = await _get(client, url, timeout_s)
    return None if body is None else parse_nearest_snap_m(body)
