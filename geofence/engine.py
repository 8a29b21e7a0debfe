"""The position engine's core: a batch of fixes of many devices in, events out.

    results = evaluate(jobs, indexes, config, now)

Each job is one device's state, its new fixes (any order) and, when the shell knows it,
the database's view of its trips. Fixes are evaluated in fix-time order per device; a fix
not newer than the device's newest evaluated fix (late, or a duplicate) and a fix the
device itself marks invalid change nothing and emit nothing. The fences of all devices
of a tenant are measured in one bulk query per batch (`FenceIndex.measure`); the
hysteresis then runs per device and fence.

No I/O, no clock: `now` (Unix seconds, the server clock) only stamps `detected_at`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import numpy as np

from contracts.geodesy import local_distance_m
from devices.fix import Fix
from geofence import trips
from geofence.config import EngineConfig
from geofence.events import (
    AnyEvent,
    GeofenceCrossed,
    GeofenceDwell,
    GeofenceEnter,
    GeofenceExit,
    event_id,
)
from geofence.index import FenceIndex
from geofence.routes import Route, usable
from geofence.state import DeviceState, FenceState
from geofence.trips import EPOCH, Position, RouteRequest, TripSpec

QUERY_SLACK_M: Final = 1.0
"""Added to each fix's query buffer so a fence exactly at the exit threshold is measured."""


class DeviceJob(msgspec.Struct, kw_only=True):
    state: DeviceState
    fixes: list[Fix]
    trips: list[TripSpec] | None = None
    """The database's view of the device's trips; None: nothing new known."""


class DeviceResult(msgspec.Struct, kw_only=True):
    state: DeviceState
    events: list[AnyEvent]
    route_requests: list[RouteRequest]
    evaluated: int
    """Fixes that moved the state (late, duplicate and invalid ones excluded)."""
    changed: bool
    """Whether the state must be stored."""


def error_m(fix: Fix, config: EngineConfig) -> float:
    """The fix's horizontal error: its accuracy, else HDOP x UERE, else the default."""
    if fix.accuracy is not None:
        return fix.accuracy
    if fix.hdop is not None:
        return fix.hdop * config.uere_m
    return config.default_error_m


_ONE_US: Final = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    return (t - EPOCH) // _ONE_US


def _accepted(
    state: DeviceState, fixes: list[Fix], config: EngineConfig
) -> list[tuple[int, Fix, float]]:
    """The fixes to evaluate, in fix-time order: valid, newer than the state, one per
    time; each with its fix time in microseconds and its error."""
    out: list[tuple[int, Fix, float]] = []
    last = state.last_us
    isfinite = math.isfinite
    for fix in sorted(fixes, key=_fix_time) if len(fixes) > 1 else fixes:
        if not fix.valid or not (isfinite(fix.lat) and isfinite(fix.lon)):
            continue
        us = (fix.time - EPOCH) // _ONE_US
        if last is not None and us <= last:
            continue
        err = (
            fix.accuracy
            if fix.accuracy is not None
            else fix.hdop * config.uere_m
            if fix.hdop is not None
            else config.default_error_m
        )
        out.append((us, fix, err))
        last = us
    return out


def _fix_time(fix: Fix) -> datetime:
    return fix.time


def evaluate(
    jobs: Sequence[DeviceJob], indexes: Mapping[str, FenceIndex], config: EngineConfig, now: float
) -> list[DeviceResult]:
    detected = datetime.fromtimestamp(now, UTC)
    accepted = [_accepted(job.state, job.fixes, config) for job in jobs]
    # Bulk geometry per tenant: arrays over all accepted fixes of the tenant's devices.
    by_tenant: dict[str, list[int]] = {}
    for j, job in enumerate(jobs):
        if accepted[j] and job.state.tenant in indexes:
            by_tenant.setdefault(job.state.tenant, []).append(j)
    measured: dict[int, tuple[FenceIndex, _Slices, int]] = {}
    for tenant, members in by_tenant.items():
        index = indexes[tenant]
        taken = [a for j in members for a in accepted[j]]
        fixes = [a[1] for a in taken]
        n = len(fixes)
        lat = np.fromiter([f.lat for f in fixes], np.float64, n)
        lon = np.fromiter([f.lon for f in fixes], np.float64, n)
        errs = np.minimum(np.fromiter([a[2] for a in taken], np.float64, n), config.max_error_m)
        # Each fix's previous position: the fix before it, or for a device's first fix
        # in the batch the state's last one (none for a new device).
        plat, plon = np.roll(lat, 1), np.roll(lon, 1)
        has = np.ones(n, dtype=np.bool_)
        offsets: list[int] = []
        off = 0
        for j in members:
            st = jobs[j].state
            offsets.append(off)
            if st.last_us is None:
                has[off] = False
            else:
                plat[off], plon[off] = st.last_lat, st.last_lon
            off += len(accepted[j])
        buf = config.exit_margin_m + errs + QUERY_SLACK_M
        m = index.measure(lat, lon, buf, errs, plat, plon, has)
        sl = _Slices(
            m.start.tolist(),
            index.ids[m.near_fence].tolist(),
            m.depth_m.tolist(),
            m.cross_start.tolist(),
            index.ids[m.cross_fence].tolist(),
        )
        for j, off in zip(members, offsets, strict=True):
            measured[j] = (index, sl, off)
    results: list[DeviceResult] = []
    for j, job in enumerate(jobs):
        state = job.state
        before = _trip_ids(state) if job.trips is not None else None
        events: list[AnyEvent] = (
            trips.reconcile(state, job.trips, detected) if job.trips is not None else []
        )
        requests: list[RouteRequest] = []
        found = measured.get(j)
        for k, (us, fix, err) in enumerate(accepted[j]):
            if found is not None:
                index, sl, off = found
                _fences(state, index, sl, off + k, us, fix, err, config, detected, events)
            elif state.fences:
                state.fences.clear()  # the tenant has no fences (any more)
            speed = fix.speed
            if speed is None and state.trips and state.last_us is not None:
                speed = local_distance_m(state.last_lat, state.last_lon, fix.lat, fix.lon) / (
                    (us - state.last_us) / 1e6
                )
            if speed is not None:
                dt = (us - state.last_us) / 1e6 if state.last_us is not None else config.speed_tau_s
                old = state.speed_mps if state.speed_mps is not None else speed
                state.speed_mps = old + (speed - old) * (1.0 - math.exp(-dt / config.speed_tau_s))
            state.last_us, state.last_lat, state.last_lon = us, fix.lat, fix.lon
            if state.trips:
                pos = Position(us=us, lat=fix.lat, lon=fix.lon, speed_mps=speed, error_m=err)
                trip_events, trip_requests = trips.update(state, pos, config, detected)
                events += trip_events
                requests += trip_requests
        changed = (
            bool(accepted[j]) or bool(events) or (before is not None and _trip_ids(state) != before)
        )
        if changed:
            state.rev += 1
        results.append(
            DeviceResult(
                state=state,
                events=events,
                route_requests=requests,
                evaluated=len(accepted[j]),
                changed=changed,
            )
        )
    return results


def _trip_ids(state: DeviceState) -> tuple[tuple[str, ...], int]:
    return tuple(t.trip for t in state.trips), len(state.done)


class _Slices(msgspec.Struct, array_like=True):
    """A tenant's measurement as Python lists (per-element numpy access is slow)."""

    start: list[int]
    near: list[int]
    """Fence ids."""
    depth: list[float]
    cross_start: list[int]
    cross: list[int]
    """Fence ids."""


def _fences(
    state: DeviceState,
    index: FenceIndex,
    sl: _Slices,
    i: int,
    us: int,
    fix: Fix,
    err: float,
    config: EngineConfig,
    detected: datetime,
    events: list[AnyEvent],
) -> None:
    """Hysteresis of one fix against the fences near it (and those the device was in)."""
    a, b = sl.start[i], sl.start[i + 1]
    ca, cb = sl.cross_start[i], sl.cross_start[i + 1]
    fences = state.fences
    if (a == b and not fences and ca == cb) or err > config.max_error_m:
        return  # nothing near and nothing to leave; or too coarse to decide anything
    near = dict(zip(sl.near[a:b], sl.depth[a:b], strict=True))
    fix_time = fix.time
    device, tenant = state.device, state.tenant
    was_inside = {fid for fid, fs in fences.items() if fs.inside} if ca != cb else set()
    entered: list[int] = []
    if fences:
        for fid in fences.keys() - near.keys():
            gone = fences.pop(fid)
            # Farther than the query buffer (> margin + error) from the fence: outside for
            # sure; a fence that no longer exists leaves silently.
            if gone.inside and fid in index.dwell_by_id:
                events.append(_event(GeofenceExit, device, tenant, us, fix_time, detected, fid))
    exit_at = -(config.exit_margin_m + err)
    for fid, depth in near.items():
        fs = fences.get(fid)
        if fs is not None and fs.inside:
            if depth < exit_at:
                del fences[fid]
                events.append(_event(GeofenceExit, device, tenant, us, fix_time, detected, fid))
                continue
        elif depth > err:
            if fs is None:
                fs = fences[fid] = FenceState()
            fs.streak += 1
            if fs.streak < config.enter_min_fixes:
                continue
            fs.inside, fs.entered_us, fs.dwelled, fs.streak = True, us, False, 0
            entered.append(fid)
            events.append(_event(GeofenceEnter, device, tenant, us, fix_time, detected, fid))
        else:
            if fs is not None:
                del fences[fid]
            continue
        if not fs.dwelled:
            dwell_s = index.dwell_by_id[fid]
            inside_s = (us - fs.entered_us) / 1e6
            if dwell_s > 0 and inside_s >= dwell_s:
                fs.dwelled = True
                events.append(
                    GeofenceDwell(
                        id=event_id(device, us, "geofence_dwell", str(fid)), tenant=tenant, device=device,
                        fix_time=fix_time, detected_at=detected, geofence=fid, dwell_s=inside_s,
                    )
                )  # fmt: skip
            elif dwell_s <= 0:
                fs.dwelled = True  # no dwell for this fence: skip the check from now on
    for fid in sl.cross[ca:cb]:
        now_in = fences.get(fid)
        if fid not in entered and fid not in was_inside and (now_in is None or not now_in.inside):
            events.append(_event(GeofenceCrossed, device, tenant, us, fix_time, detected, fid))


def _event(
    cls: type[GeofenceEnter] | type[GeofenceExit] | type[GeofenceCrossed],
    device: str,
    tenant: str,
    us: int,
    fix_time: datetime,
    detected: datetime,
    fid: int,
) -> AnyEvent:
    kind = {
        GeofenceEnter: "geofence_enter",
        GeofenceExit: "geofence_exit",
        GeofenceCrossed: "geofence_crossed",
    }[cls]
    return cls(
        id=event_id(device, us, kind, str(fid)), tenant=tenant, device=device, fix_time=fix_time,
        detected_at=detected, geofence=fid,
    )  # fmt: skip


def sync_trips(
    state: DeviceState, specs: list[TripSpec], config: EngineConfig, now: float
) -> DeviceResult:
    """The database's trips changed (a start or a cancel), with no fix: trip_canceled for
    canceled trips, and for a trip that became active a first trip_update from the
    device's last position (when it has one), plus its route request."""
    detected = datetime.fromtimestamp(now, UTC)
    before = state.trips[0].trip if state.trips else None
    events = trips.reconcile(state, specs, detected)
    requests: list[RouteRequest] = []
    active = state.trips[0] if state.trips else None
    if (
        active is not None
        and active.trip != before
        and state.last_us is not None
        and active.last_update_us is None
    ):
        pos = Position(
            us=state.last_us, lat=state.last_lat, lon=state.last_lon, speed_mps=None,
            error_m=config.default_error_m,
        )  # fmt: skip
        more, requests = trips.update(state, pos, config, detected, force=True, tag="start")
        events += more
    state.rev += 1
    return DeviceResult(
        state=state, events=events, route_requests=requests, evaluated=0, changed=True
    )


def route_ready(
    state: DeviceState, request: RouteRequest, route: Route | None, config: EngineConfig, now: float
) -> DeviceResult:
    """The routing engine's answer to `request` (None: no route). A usable route is
    installed (polyline version + 1) and a trip_update from the device's last position
    goes out at once; an unusable one (outside the extract) is dropped, and the trip stays
    on `local` until its next request."""
    detected = datetime.fromtimestamp(now, UTC)
    trip = next((t for t in state.trips if t.trip == request.trip), None)
    stale = trip is None or trip.route_wanted_us != request.fix_us
    if stale or route is None or trip is None or state.last_us is None:
        return DeviceResult(state=state, events=[], route_requests=[], evaluated=0, changed=False)
    if not usable(route, config.max_snap_m):
        return DeviceResult(state=state, events=[], route_requests=[], evaluated=0, changed=False)
    trip.route, trip.route_version = route, trip.route_version + 1
    trip.segment, trip.off_route_streak, trip.progress_us = 0, 0, None
    events: list[AnyEvent] = []
    if trip is state.trips[0]:
        pos = Position(
            us=state.last_us, lat=state.last_lat, lon=state.last_lon, speed_mps=None,
            error_m=config.default_error_m,
        )  # fmt: skip
        events, _ = trips.update(
            state, pos, config, detected, force=True, tag=f"route{trip.route_version}"
        )
    state.rev += 1
    return DeviceResult(state=state, events=events, route_requests=[], evaluated=0, changed=True)
