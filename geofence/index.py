"""One tenant's geofences in a shapely STRtree, measured against a whole batch of fixes at once.

Polygons and multipolygons are indexed as they are; circles by their bounding box in
degrees, built with the latitude-correct longitude factor (`geodesy.circle_bounds`), and
then measured by true distance from their centre. A batch is queried in bulk: the fixes'
boxes (each fix's buffer in metres, as degrees at its latitude) against the fences' tree
and against a second tree of every polygon boundary segment; containment comes from
prepared polygons, distances from numpy on the segments found; segments between sparse
fixes are queried only when longer than the buffer (a shorter one can only cross fences
already near the fix). The cost per fix is a few microseconds, not a loop over fences.

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

from contracts.geodesy import F64, circle_bounds, local_distance_v, metres_per_degree_v

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
fix error + slack stay below it)."""


class _Edges:
    """Every polygon's boundary as segments in their own STRtree: one bulk query with the
    fixes' boxes finds the segments within each fix's buffer, and numpy measures them
    (no geometry is built per (fix, fence) pair, and a 300-vertex service area costs only
    the few segments near the fix)."""

    def __init__(self, polys: npt.NDArray[np.object_], mask: BOOL) -> None:
        starts: list[F64] = []
        ends: list[F64] = []
        owners: list[npt.NDArray[np.int64]] = []
        for j in np.flatnonzero(mask):
            for ring in shapely.get_rings(shapely.get_parts(polys[j])):
                xy = shapely.get_coordinates(ring)
                starts.append(xy[:-1])
                ends.append(xy[1:])
                owners.append(np.full(len(xy) - 1, j, dtype=np.int64))
        if starts:
            self.a, self.b = np.concatenate(starts), np.concatenate(ends)
            self.owner: npt.NDArray[np.int64] = np.concatenate(owners)
        else:
            self.a = self.b = np.empty((0, 2))
            self.owner = np.empty(0, dtype=np.int64)
        segments: npt.NDArray[np.object_] = np.asarray(
            shapely.linestrings(np.stack([self.a, self.b], axis=1)) if starts else [], dtype=object
        )
        self.tree = STRtree(segments)

    def near(
        self, boxes: npt.NDArray[np.object_], lat: F64, lon: F64, m_lat: F64, m_lon: F64
    ) -> tuple[I64, F64]:
        """(key = fix * n_fences + fence, distance in metres) for every (fix, polygon) with
        a boundary segment in the fix's box, the distance on the tangent plane at the fix."""
        fi, si = self.tree.query(boxes)
        if len(fi) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        px, py, sx, sy = lon[fi], lat[fi], m_lon[fi], m_lat[fi]
        ax, ay = (self.a[si, 0] - px) * sx, (self.a[si, 1] - py) * sy
        dx, dy = (self.b[si, 0] - px) * sx - ax, (self.b[si, 1] - py) * sy - ay
        length2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.clip(np.where(length2 > 0, -(ax * dx + ay * dy) / length2, 0.0), 0.0, 1.0)
        d = np.hypot(ax + t * dx, ay + t * dy)
        key = fi.astype(np.int64) * (int(self.owner.max()) + 1) + self.owner[si]
        order = np.argsort(key, kind="stable")
        key, d = key[order], d[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        dist: F64 = np.minimum.reduceat(d, first)
        return key[first], dist


class FenceIndex:
    """The geofences of one tenant. Immutable once built: a reload builds a new one."""

    def __init__(self, fences: Sequence[FenceSpec], max_buffer_m: float = MAX_BUFFER_M) -> None:
        self.fences = list(fences)
        self.max_buffer_m = max_buffer_m
        n = len(self.fences)
        self.ids: I64 = np.array([f.id for f in self.fences], dtype=np.int64)
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
        poly_mask = ~self.is_circle
        if poly_mask.any():
            shapely.prepare(polys[poly_mask])
        self.edges = _Edges(polys, poly_mask)
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
        boxes = shapely.box(lon - dlon, lat - dlat, lon + dlon, lat + dlat)
        fix_i, fence_j = self.tree.query(boxes)
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
                fix_i[poly], fence_j[poly], boxes, lat, lon, m_lat, m_lon, buffer_m
            )
        # Outside by more than the buffer: as good as far away, leave the pair out.
        keep = depth > -buffer_m[fix_i]
        fix_i, fence_j, depth = fix_i[keep], fence_j[keep], depth[keep]
        start = np.searchsorted(fix_i, np.arange(n + 1)).astype(np.int64)
        cross_i, cross_j = self._crossings(
            lat, lon, error_m, buffer_m, prev_lat, prev_lon, has_prev, (fix_i, fence_j, depth)
        )
        return Measurement(
            start=start,
            near_fence=fence_j.astype(np.int64),
            depth_m=depth,
            cross_start=np.searchsorted(cross_i, np.arange(n + 1)).astype(np.int64),
            cross_fence=cross_j.astype(np.int64),
        )

    def _polygon_depths(
        self,
        fi: I64,
        fj: I64,
        boxes: npt.NDArray[np.object_],
        lat: F64,
        lon: F64,
        m_lat: F64,
        m_lon: F64,
        buffer_m: F64,
    ) -> F64:
        """Exact where a boundary segment lies within the fix's box; elsewhere the
        boundary is farther than the buffer and |depth| is given as the buffer."""
        inside = shapely.contains_xy(self.polys[fj], lon[fi], lat[fi])
        # No boundary within the box: deep inside (the buffer, a lower bound), or far
        # outside (left out by the caller).
        dist = np.where(inside, buffer_m[fi], np.inf)
        keys, near_m = self.edges.near(boxes, lat, lon, m_lat, m_lon)
        if len(keys):
            pair_keys = fi.astype(np.int64) * (int(self.edges.owner.max()) + 1) + fj
            at = np.minimum(np.searchsorted(keys, pair_keys), len(keys) - 1)
            found = keys[at] == pair_keys
            dist[found] = near_m[at[found]]
        result: F64 = np.where(inside, dist, -dist)
        return result

    def _crossings(
        self,
        lat: F64,
        lon: F64,
        error_m: F64,
        buffer_m: F64,
        prev_lat: F64,
        prev_lon: F64,
        has_prev: BOOL,
        near: tuple[I64, I64, F64],
    ) -> tuple[I64, I64]:
        seg_m = local_distance_v(prev_lat, prev_lon, lat, lon)
        # Crossing by more than the error needs a segment longer than the error.
        moved = has_prev & (seg_m > error_m)
        # A fence a segment no longer than the buffer runs through is within the buffer
        # of the fix, and the fix is outside it: among the fix's near pairs already. Only
        # longer segments (sparse fixes) need a query of their own.
        far = moved & (seg_m > buffer_m)
        fix_i, fence_j, depth = near
        short = moved[fix_i] & ~far[fix_i] & (depth <= 0)
        fi, fj = fix_i[short], fence_j[short]
        idx = np.flatnonzero(far)
        if len(idx):
            li, lj = self.tree.query(_segments(prev_lat[idx], prev_lon[idx], lat[idx], lon[idx]))
            fi, fj = np.concatenate([fi, idx[li]]), np.concatenate([fj, lj])
        empty = np.empty(0, dtype=np.int64)
        if len(fi) == 0:
            return empty, empty
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
            seg = _segments(prev_lat[pi], prev_lon[pi], lat[pi], lon[pi])
            # Prepared predicate first: the costly intersection only for segments that
            # really meet the polygon (most candidates are bounding-box neighbours).
            meets = shapely.intersects(self.polys[pj], seg)
            poly, pi, pj, seg = poly[meets], pi[meets], pj[meets], seg[meets]
            # The part of the segment inside, in metres: a straight segment has one scale
            # (its length in metres over its length in degrees) all along.
            inside_deg = shapely.length(shapely.intersection(seg, self.polys[pj]))
            chord = inside_deg * seg_m[pi] / np.maximum(shapely.length(seg), 1e-12)
            keep[poly] = chord > error_m[pi]
        order = np.argsort(fi[keep], kind="stable")
        return fi[keep][order], fj[keep][order]


def _segments(alat: F64, alon: F64, blat: F64, blon: F64) -> npt.NDArray[np.object_]:
    coords = np.stack([np.stack([alon, alat], axis=1), np.stack([blon, blat], axis=1)], axis=1)
    lines: npt.NDArray[np.object_] = np.asarray(shapely.linestrings(coords), dtype=object)
    return lines


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
