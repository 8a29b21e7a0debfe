"""The bulk index agrees with a fence-by-fence reference: depths within the buffer are
exact to half a metre at any latitude, fences beyond it are left out, crossings match."""

from __future__ import annotations

import math

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.geodesy import local_distance_m, signed_distance_m
from geofence.index import FenceIndex, FenceSpec
from tests.support.geofence import offset

BUFFER_M = 26.0
ERROR_M = 10.0


def _star(lat: float, lon: float, radius_m: float, wobble: list[float]) -> shapely.Polygon:
    n = len(wobble)
    ring = [
        offset(
            lat,
            lon,
            radius_m * w * math.sin(2 * math.pi * k / n),
            radius_m * w * math.cos(2 * math.pi * k / n),
        )
        for k, w in enumerate(wobble)
    ]
    return shapely.Polygon([(lo, la) for la, lo in ring])


fences_st = st.lists(
    st.tuples(
        st.booleans(),
        st.floats(-300, 300),
        st.floats(-300, 300),
        st.floats(10, 200),
        st.lists(st.floats(0.6, 1.0), min_size=5, max_size=12),
    ),
    min_size=1,
    max_size=6,
)
points_st = st.lists(st.tuples(st.floats(-400, 400), st.floats(-400, 400)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(st.floats(-70, 70), fences_st, points_st)
def test_bulk_depths_match_the_reference(lat0: float, fences: list, points: list) -> None:
    lon0 = 10.0
    specs = []
    geoms: list[shapely.Polygon | tuple[float, float, float]] = []
    for k, (is_circle, n, e, r, wobble) in enumerate(fences):
        c = offset(lat0, lon0, n, e)
        if is_circle:
            specs.append(FenceSpec(id=k, tenant="t", name=str(k), lat=c[0], lon=c[1], radius_m=r))
            geoms.append((c[0], c[1], r))
        else:
            poly = _star(c[0], c[1], r, wobble)
            specs.append(FenceSpec(id=k, tenant="t", name=str(k), wkb=shapely.to_wkb(poly)))
            geoms.append(poly)
    index = FenceIndex(specs)
    pts = [offset(lat0, lon0, n, e) for n, e in points]
    lat = np.array([p[0] for p in pts])
    lon = np.array([p[1] for p in pts])
    n_pts = len(pts)
    m = index.measure(
        lat,
        lon,
        np.full(n_pts, BUFFER_M),
        np.full(n_pts, ERROR_M),
        lat,
        lon,
        np.zeros(n_pts, dtype=np.bool_),
    )
    for i, (la, lo) in enumerate(pts):
        got = {
            int(index.ids[f]): float(d)
            for f, d in zip(
                m.near_fence[m.start[i] : m.start[i + 1]],
                m.depth_m[m.start[i] : m.start[i + 1]],
                strict=True,
            )
        }
        for k, g in enumerate(geoms):
            if isinstance(g, tuple):
                ref = g[2] - local_distance_m(la, lo, g[0], g[1])
            else:
                ref = signed_distance_m(g, la, lo)
            if abs(ref) <= BUFFER_M - 0.5:
                assert k in got and abs(got[k] - ref) < 0.5, (k, ref, got.get(k))
            elif ref < -BUFFER_M - 0.5:
                assert k not in got
            elif ref > BUFFER_M + 0.5:
                assert k in got and got[k] >= BUFFER_M - 0.5


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-70, 70),
    fences_st,
    st.lists(st.tuples(st.floats(-400, 400), st.floats(-400, 400)), min_size=2, max_size=12),
)
def test_bulk_crossings_match_the_reference(lat0: float, fences: list, points: list) -> None:
    lon0 = 10.0
    specs = []
    geoms: list[shapely.Polygon | tuple[float, float, float]] = []
    for k, (is_circle, n, e, r, wobble) in enumerate(fences):
        c = offset(lat0, lon0, n, e)
        if is_circle:
            specs.append(FenceSpec(id=k, tenant="t", name=str(k), lat=c[0], lon=c[1], radius_m=r))
            geoms.append((c[0], c[1], r))
        else:
            poly = _star(c[0], c[1], r, wobble)
            specs.append(FenceSpec(id=k, tenant="t", name=str(k), wkb=shapely.to_wkb(poly)))
            geoms.append(poly)
    index = FenceIndex(specs)
    pts = [offset(lat0, lon0, n, e) for n, e in points]
    lat = np.array([p[0] for p in pts[1:]])
    lon = np.array([p[1] for p in pts[1:]])
    plat = np.array([p[0] for p in pts[:-1]])
    plon = np.array([p[1] for p in pts[:-1]])
    n_seg = len(lat)
    m = index.measure(
        lat,
        lon,
        np.full(n_seg, BUFFER_M),
        np.full(n_seg, ERROR_M),
        plat,
        plon,
        np.ones(n_seg, dtype=np.bool_),
    )
    for i in range(n_seg):
        got = {int(index.ids[f]) for f in m.cross_fence[m.cross_start[i] : m.cross_start[i + 1]]}
        a, b = (plat[i], plon[i]), (lat[i], lon[i])
        for k, g in enumerate(geoms):
            chord = _chord_m(g, a, b)
            if chord > ERROR_M + 0.5:
                assert k in got, (k, chord)
            elif chord < ERROR_M - 0.5:
                assert k not in got, (k, chord)


def _chord_m(
    g: shapely.Polygon | tuple[float, float, float], a: tuple[float, float], b: tuple[float, float]
) -> float:
    """Length inside the fence of the segment a-b, when both ends are outside (else 0),
    sampled every 0.1 m: slow and simple."""
    total = local_distance_m(*a, *b)
    steps = max(2, int(total / 0.1))

    def inside(la: float, lo: float) -> bool:
        if isinstance(g, tuple):
            return local_distance_m(la, lo, g[0], g[1]) < g[2]
        return bool(shapely.contains_xy(g, lo, la))

    if inside(*a) or inside(*b):
        return 0.0
    hits = sum(
        inside(a[0] + (b[0] - a[0]) * s / steps, a[1] + (b[1] - a[1]) * s / steps)
        for s in range(steps + 1)
    )
    return total * hits / (steps + 1)
