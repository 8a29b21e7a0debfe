"""One tenant's geofences in a shapely STRtree, measured against a whole batch of fixes at once.

Polygons and multipolygons are indexed as they are; circles by their bounding box in
degrees, built with the latitude-correct longitude factor (`geodesy.circle_bounds`), and
then measured by true distance from their centre. A batch is queried in bulk (one
`STRtree.query` for the fixes' boxes, one for the segments from each device's previous fix)
and the depths are computed with vectorised numpy/shapely calls, so the cost per fix is a
few microseconds, not a Python loop over fences.

Depth (`depth_m`) is the signed distance to the fence's boundary, POSITIVE INSIDE. It is
exact (tangent plane at the fix) whenever |depth| is within the fix's query buffer, which
is where hysteresis decisions are taken; deeper inside it is the buffer (a lower bound,
all a decision needs), and fences farther outside than the buffer are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt
import shapely
from shapely import STRtree

from geofence.geodesy import F64, circle_bounds, local_distance_v, metres_per_degree_v

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]

FENCE_KINDS: Final = ("service_area", "depot", "customer", "other")


class FenceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A geofence as stored: a (multi)polygon as WKB, or a circle (centre and radius)."""

    id: int
    tenant: str
    name: str
    kind: str = "other"
    dwell_s: float = 0.0
    """Dwell event after this long inside, seconds of fix time; 0: no dwell event."""
    wkb: bytes | None = None
    """Polygon or MultiPolygon in WGS84 (lon, lat), for polygon fences."""
    lat: float = 0.0
    lon: float = 0.0
    radius_m: float = 0.0
    """Circle fences: centre and radius (wkb is None)."""


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """Per fix i, the fences near it: `near_fence[start[i]:start[i+1]]` with their depths,
    and the fences whose segment from the previous fix crosses them (both ends outside)."""

    start: I64
    near_fence: I64
    depth_m: F64
    cross_start: I64
    cross_fence: I64


MAX_BUFFER_M: Final = 250.0
"""Largest query buffer a fix may ask for (the engine's exit margin + its largest usable
fix error + slack stay below it); polygons' deep cores are built for it."""


def _cores(polys: npt.NDArray[np.object_], mask: BOOL, reach_m: float) -> npt.NDArray[np.object_]:
    """Each polygon shrunk by at least `reach_m` in every direction (in degrees, with the
    smallest metres-per-degree over the polygon's latitudes): a point inside its core is
    deeper than any buffer, so its depth needs no distance computation."""
    cores = np.empty(len(polys), dtype=object)
    _, ymin, _, ymax = shapely.bounds(polys[mask]).T
    poleward = np.minimum(np.maximum(np.abs(ymin), np.abs(ymax)), 89.9)
    m_lat, m_lon = metres_per_degree_v(poleward)
    reach_deg = reach_m / np.minimum(m_lat, m_lon)
    cores[mask] = shapely.buffer(polys[mask], -reach_deg, quad_segs=2)
    shapely.prepare(cores[mask])
    return cores


class FenceIndex:
    """The geofences of one tenant. Immutable once built: a reload builds a new one."""

    def __init__(self, fences: Sequence[FenceSpec], max_buffer_m: float = MAX_BUFFER_M) -> None:
        self.fences = list(fences)
        self.max_buffer_m = max_buffer_m
        n = len(self.fences)
        self.ids: I64 = np.array([f.id for f in self.fences], dtype=np.int64)
        self.dwell_s: F64 = np.array([f.dwell_s for f in self.fences], dtype=np.float64)
        self.is_circle: BOOL = np.array([f.wkb is None for f in self.fences], dtype=np.bool_)
        self.clat: F64 = np.array([f.lat for f in self.fences], dtype=np.float64)
        self.clon: F64 = np.array([f.lon for f in self.fences], dtype=np.float64)
        self.radius_m: F64 = np.array([f.radius_m for f in self.fences], dtype=np.float64)
        polys = np.empty(n, dtype=object)
        tree_geoms = np.empty(n, dtype=object)
        for i, f in enumerate(self.fences):
            if f.wkb is None:
                tree_geoms[i] = shapely.box(*circle_bounds(f.lat, f.lon, f.radius_m))
            else:
                polys[i] = shapely.from_wkb(f.wkb)
                tree_geoms[i] = polys[i]
        self.polys = polys
        self.boundaries = np.empty(n, dtype=object)
        poly_mask = ~self.is_circle
        if poly_mask.any():
            shapely.prepare(polys[poly_mask])
            self.boundaries[poly_mask] = shapely.boundary(polys[poly_mask])
            shapely.prepare(self.boundaries[poly_mask])
            self.cores = _cores(polys, poly_mask, max_buffer_m)
        self.dwell_by_id: dict[int, float] = {f.id: f.dwell_s for f in self.fences}
        self.tree = STRtree(tree_geoms)

    def __len__(self) -> int:
        return len(self.fences)

    def measure(
        self,
        lat: F64,
        lon: F64,
        buffer_m: F64,
        error_m: F64,
        prev_lat: F64,
        prev_lon: F64,
        has_prev: BOOL,
    ) -> Measurement:
        """Depth of every fix in every fence within `buffer_m` of it (per fix), and the
        crossings of the segments from each fix's previous position (where `has_prev`):
        both ends outside the fence and more than the fix's `error_m` of the segment inside
        it (a segment grazing a corner or touching an edge has not crossed)."""
        n = len(lat)
        buffer_m = np.minimum(buffer_m, self.max_buffer_m)
        m_lat, m_lon = metres_per_degree_v(lat)
        dlat = buffer_m / m_lat
        dlon = buffer_m / np.maximum(m_lon, 1.0)
        # Bounding boxes only (no predicate): the exact tests below are cheaper in bulk
        # than GEOS predicates of boxes against large service-area polygons.
        fix_i, fence_j = self.tree.query(
            shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        )
        depth = np.empty(len(fix_i), dtype=np.float64)
        circ = self.is_circle[fence_j]
        if circ.any():
            fi, fj = fix_i[circ], fence_j[circ]
            depth[circ] = self.radius_m[fj] - local_distance_v(
                lat[fi], lon[fi], self.clat[fj], self.clon[fj]
            )
        poly = ~circ
        if poly.any():
            depth[poly] = self._polygon_depths(
                fix_i[poly], fence_j[poly], lat, lon, m_lat, m_lon, buffer_m
            )
        # Outside by more than the buffer: as good as far away, leave the pair out.
        keep = depth >= -buffer_m[fix_i]
        fix_i, fence_j, depth = fix_i[keep], fence_j[keep], depth[keep]
        start = np.searchsorted(fix_i, np.arange(n + 1)).astype(np.int64)
        cross_i, cross_j = self._crossings(lat, lon, error_m, prev_lat, prev_lon, has_prev)
        return Measurement(
            start=start,
            near_fence=fence_j.astype(np.int64),
            depth_m=depth,
            cross_start=np.searchsorted(cross_i, np.arange(n + 1)).astype(np.int64),
            cross_fence=cross_j.astype(np.int64),
        )

    def _polygon_depths(
        self, fi: I64, fj: I64, lat: F64, lon: F64, m_lat: F64, m_lon: F64, buffer_m: F64
    ) -> F64:
        """Exact within the buffer; beyond it +/- the buffer (|depth| is at least that)."""
        inside = shapely.contains_xy(self.polys[fj], lon[fi], lat[fi])
        deep = np.zeros(len(fi), dtype=np.bool_)
        deep[inside] = shapely.contains_xy(self.cores[fj[inside]], lon[fi[inside]], lat[fi[inside]])
        near = np.zeros(len(fi), dtype=np.bool_)
        band = ~deep
        # A degree is at least min(m_lat, m_lon) metres in any direction, so a point
        # within buffer_m metres of the boundary is within this many degrees of it.
        fb = fi[band]
        reach_deg = buffer_m[fb] / np.maximum(np.minimum(m_lat[fb], m_lon[fb]), 1.0)
        # The stubs type `distance` as a float; shapely broadcasts an array like any ufunc.
        near[band] = shapely.dwithin(  # type: ignore[call-overload]
            self.boundaries[fj[band]], shapely.points(lon[fb], lat[fb]), reach_deg
        )
        dist = buffer_m[fi].copy()
        if near.any():
            k = fi[near]
            dist[near] = _local_boundary_distance(
                self.boundaries[fj[near]], lat[k], lon[k], m_lat[k], m_lon[k]
            )
        result: F64 = np.where(inside, dist, -dist)
        return result

    def _crossings(
        self, lat: F64, lon: F64, error_m: F64, prev_lat: F64, prev_lon: F64, has_prev: BOOL
    ) -> tuple[I64, I64]:
        idx = np.flatnonzero(has_prev & ((prev_lat != lat) | (prev_lon != lon)))
        empty = np.empty(0, dtype=np.int64)
        if len(idx) == 0 or len(self) == 0:
            return empty, empty
        coords = np.stack(
            [
                np.stack([prev_lon[idx], prev_lat[idx]], axis=1),
                np.stack([lon[idx], lat[idx]], axis=1),
            ],
            axis=1,
        )
        lines: npt.NDArray[np.object_] = np.asarray(shapely.linestrings(coords), dtype=object)
        li, fj = self.tree.query(lines)
        if len(li) == 0:
            return empty, empty
        fi = idx[li]
        keep = np.zeros(len(fi), dtype=np.bool_)
        circ = self.is_circle[fj]
        if circ.any():
            ci, cj = fi[circ], fj[circ]
            r = self.radius_m[cj]
            ends_out = (local_distance_v(lat[ci], lon[ci], self.clat[cj], self.clon[cj]) > r) & (
                local_distance_v(prev_lat[ci], prev_lon[ci], self.clat[cj], self.clon[cj]) > r
            )
            d = _segment_centre_distance(
                prev_lat[ci], prev_lon[ci], lat[ci], lon[ci], self.clat[cj], self.clon[cj]
            )
            chord = 2.0 * np.sqrt(np.maximum(r * r - d * d, 0.0))
            keep[circ] = ends_out & (chord > error_m[ci])
        poly = np.flatnonzero(~circ)
        if len(poly):
            pi, pj = fi[poly], fj[poly]
            ends_out = ~shapely.contains_xy(
                self.polys[pj], lon[pi], lat[pi]
            ) & ~shapely.contains_xy(self.polys[pj], prev_lon[pi], prev_lat[pi])
            poly, pi, pj = poly[ends_out], pi[ends_out], pj[ends_out]
            # The part of the segment inside, in metres: a straight segment has one scale
            # (its length in metres over its length in degrees) all along.
            # Prepared predicates first: the costly intersection only for segments that
            # really meet the polygon (most candidates are bounding-box neighbours).
            meets = shapely.intersects(self.polys[pj], lines[li[poly]])
            poly, pi, pj = poly[meets], pi[meets], pj[meets]
            seg = lines[li[poly]]
            seg_m = local_distance_v(prev_lat[pi], prev_lon[pi], lat[pi], lon[pi])
            inside_deg = shapely.length(shapely.intersection(seg, self.polys[pj]))
            chord = inside_deg * seg_m / np.maximum(shapely.length(seg), 1e-12)
            keep[poly] = chord > error_m[pi]
        order = np.argsort(fi[keep], kind="stable")
        return fi[keep][order], fj[keep][order]


def _local_boundary_distance(
    boundaries: npt.NDArray[np.object_], lat: F64, lon: F64, m_lat: F64, m_lon: F64
) -> F64:
    """Distance in metres from each point to its boundary, on the tangent plane at the point
    (one vectorised transform: each coordinate is scaled by its own pair's factors)."""
    owner = np.repeat(np.arange(len(boundaries)), shapely.get_num_coordinates(boundaries))

    def to_local(coords: F64) -> F64:
        out = np.empty_like(coords)
        out[:, 0] = (coords[:, 0] - lon[owner]) * m_lon[owner]
        out[:, 1] = (coords[:, 1] - lat[owner]) * m_lat[owner]
        return out

    local = shapely.transform(boundaries, to_local)
    dist: F64 = shapely.distance(local, _ORIGIN)
    return dist


_ORIGIN: Final = shapely.Point(0.0, 0.0)


def _segment_centre_distance(
    alat: F64, alon: F64, blat: F64, blon: F64, clat: F64, clon: F64
) -> F64:
    """Distance in metres from each centre c to the segment a-b (tangent plane at c)."""
    m_lat, m_lon = metres_per_degree_v(clat)
    ax, ay = (alon - clon) * m_lon, (alat - clat) * m_lat
    bx, by = (blon - clon) * m_lon, (blat - clat) * m_lat
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip(np.where(length2 > 0, -(ax * dx + ay * dy) / length2, 0.0), 0.0, 1.0)
    dist: F64 = np.hypot(ax + t * dx, ay + t * dy)
    return dist
