"""Metres are metres at every latitude; polylines round-trip; projections onto a route."""

from __future__ import annotations

import math

import shapely
from hypothesis import given
from hypothesis import strategies as st

from contracts.geodesy import (
    circle_bounds,
    distance_m,
    haversine_m,
    local_distance_m,
    metres_per_degree,
    signed_distance_m,
)
from geofence.polyline import decode, encode
from geofence.routes import Route, project
from tests.support.geofence import offset

lats = st.floats(min_value=-80.0, max_value=80.0)
lons = st.floats(min_value=-170.0, max_value=170.0)


def test_a_degree_of_longitude_shrinks_with_latitude() -> None:
    # WGS84 reference values (e.g. the NGA's length-of-a-degree tables).
    assert abs(metres_per_degree(0.0)[1] - 111_319.5) < 1.0
    assert abs(metres_per_degree(60.0)[1] - 55_800.0) < 5.0
    assert abs(metres_per_degree(0.0)[0] - 110_574.3) < 1.0
    assert abs(metres_per_degree(90.0)[0] - 111_693.9) < 1.0


@given(lats, lons, st.floats(0.0, 2 * math.pi), st.floats(1.0, 2000.0))
def test_short_distances_agree_with_haversine_to_half_a_percent(
    lat: float, lon: float, bearing: float, d: float
) -> None:
    lat2, lon2 = offset(lat, lon, d * math.cos(bearing), d * math.sin(bearing))
    # The sphere and the ellipsoid differ by up to ~0.5 %; a fixed degree factor by 50 %.
    assert (
        abs(local_distance_m(lat, lon, lat2, lon2) - haversine_m(lat, lon, lat2, lon2))
        <= 0.006 * d + 0.01
    )


def test_long_distances_use_the_great_circle() -> None:
    # Munich to Berlin: 504 km.
    assert abs(distance_m(48.137, 11.575, 52.52, 13.405) - 504_000) < 3_000


@given(lats, lons, st.floats(5.0, 5000.0))
def test_a_circles_bounding_box_contains_the_circle(lat: float, lon: float, r: float) -> None:
    w, s, e, n = circle_bounds(lat, lon, r)
    for k in range(16):
        a = 2 * math.pi * k / 16
        plat, plon = offset(lat, lon, r * 0.995 * math.cos(a), r * 0.995 * math.sin(a))
        assert w <= plon <= e and s <= plat <= n


@given(st.floats(-75.0, 75.0), st.floats(-90.0, 90.0))
def test_signed_distance_is_positive_inside_and_metre_accurate(lat: float, depth: float) -> None:
    sw = offset(lat, 10.0, -500, -500)
    ne = offset(lat, 10.0, 500, 500)
    poly = shapely.box(sw[1], sw[0], ne[1], ne[0])
    # A point `depth` metres inside the east edge (negative: outside), on the centre line.
    plat, plon = offset(lat, 10.0, 0.0, 500.0 - depth)
    assert abs(signed_distance_m(poly, plat, plon) - depth) < 0.5


@given(st.lists(st.tuples(st.floats(-89.0, 89.0), st.floats(-179.0, 179.0)), max_size=30))
def test_polylines_round_trip_at_five_decimals(points: list[tuple[float, float]]) -> None:
    got = decode(encode(points))
    assert len(got) == len(points)
    assert all(
        abs(a - c) <= 6e-6 and abs(b - d) <= 6e-6
        for (a, b), (c, d) in zip(got, points, strict=True)
    )


def test_googles_example_polyline() -> None:
    points = [(38.5, -120.2), (40.7, -120.95), (43.252, -126.453)]
    assert encode(points) == "_p~iF~ps|U_ulLnnqC_mqNvxq`@"
    assert decode("_p~iF~ps|U_ulLnnqC_mqNvxq`@") == points


def test_projection_onto_an_out_and_back_route_keeps_moving_forward() -> None:
    a, b = (60.0, 10.0), offset(60.0, 10.0, 0.0, 1000.0)
    route = Route(
        points=[a, b, a], segment_distances_m=[1000.0, 1000.0], segment_durations_s=[100.0, 100.0],
        distance_m=2000.0, duration_s=200.0, origin_snap_m=0.0, destination_snap_m=0.0,
    )  # fmt: skip
    here = offset(60.0, 10.0, 5.0, 400.0)
    out = project(route, *here, from_segment=0)
    back = project(route, *here, from_segment=1)
    assert (
        out.segment == 0
        and abs(out.remaining_distance_m - 1600.0) < 2
        and abs(out.off_route_m - 5.0) < 0.2
    )
    assert back.segment == 1 and abs(back.remaining_distance_m - 400.0) < 2
