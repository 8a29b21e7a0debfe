"""Trips: a device heading to a destination; remaining distance, ETA and arrival per fix.

Sans-IO routing: the core never fetches a route. When a trip has no usable route, or the
device has left it, the core returns a `RouteRequest`; the shell asks the routing engine
and hands the answer back through `engine.route_ready`. Meanwhile, and whenever there
is no routing engine or the route is unusable (its origin or destination snapped far away:
outside the extract), the ETA is `local`: great circle x road factor at the smoothed speed.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import msgspec

from contracts.geodesy import distance_m
from geofence.config import EngineConfig
from geofence.events import AnyEvent, QueuedTrip, TripArrived, TripCanceled, TripUpdate, event_id
from geofence.polyline import encode
from geofence.routes import project, remaining_points, usable
from geofence.state import MAX_DONE_TRIPS, DeviceState, TripState

TripRowState = Literal["waiting", "active", "arrived", "canceled"]
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class TripSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A trip as the database holds it (the shell's view)."""

    id: str
    seq: int
    lat: float
    lon: float
    radius_m: float = 30.0
    service_s: float = 0.0
    ref: str | None = None
    state: TripRowState = "waiting"


class RouteRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The core wants a route for this trip from `origin` (the fix that asked)."""

    tenant: str
    device: str
    trip: str
    origin: tuple[float, float]
    destination: tuple[float, float]
    fix_us: int


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """What trip progress needs of a fix."""

    us: int
    lat: float
    lon: float
    speed_mps: float | None
    error_m: float


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _remember_done(state: DeviceState, trip_id: str) -> None:
    state.done.append(trip_id)
    del state.done[:-MAX_DONE_TRIPS]


def reconcile(state: DeviceState, specs: list[TripSpec] | None, now: datetime) -> list[AnyEvent]:
    """Bring the state's trips in line with the database's view: new trips join in seq
    order, canceled ones leave with a trip_canceled event. A trip missing from the view is
    kept (the view may be stale); trips only leave on an explicit state."""
    if specs is None:
        return []
    events: list[AnyEvent] = []
    known = {t.trip: t for t in state.trips}
    fix_time = to_datetime(state.last_us) if state.last_us is not None else None
    for spec in specs:
        if spec.id in state.done:
            continue
        current = known.get(spec.id)
        if spec.state in ("waiting", "active"):
            if current is None:
                state.trips.append(
                    TripState(
                        trip=spec.id, seq=spec.seq, lat=spec.lat, lon=spec.lon, radius_m=spec.radius_m,
                        service_s=spec.service_s, ref=spec.ref,
                    )
                )  # fmt: skip
            continue
        if current is not None:
            state.trips.remove(current)
        _remember_done(state, spec.id)
        if spec.state == "canceled":
            events.append(
                TripCanceled(
                    id=event_id(state.device, None, "trip_canceled", spec.id),
                    tenant=state.tenant, device=state.device, fix_time=fix_time, detected_at=now,
                    trip=spec.id, ref=spec.ref,
                )
            )  # fmt: skip
    state.trips.sort(key=lambda t: t.seq)
    return events


def local_estimate(
    distance: float, speed_mps: float | None, config: EngineConfig
) -> tuple[float, float]:
    """(road distance, seconds) from a great-circle distance at the smoothed speed."""
    road = distance * config.road_factor
    speed = (
        speed_mps
        if speed_mps is not None and speed_mps >= config.local_min_speed_mps
        else config.fallback_speed_mps
    )
    return road, road / speed


def _queue(state: DeviceState, active_eta_s: float, config: EngineConfig) -> list[QueuedTrip]:
    """Queue ETA of each waiting trip: the active trip's remaining travel and service, then
    each earlier waiting trip's travel and service, then its own travel, plus the buffer."""
    out: list[QueuedTrip] = []
    if len(state.trips) < 2:
        return out
    active = state.trips[0]
    elapsed = active_eta_s + active.service_s
    prev = (active.lat, active.lon)
    for trip in state.trips[1:]:
        _, travel = local_estimate(distance_m(prev[0], prev[1], trip.lat, trip.lon), None, config)
        out.append(
            QueuedTrip(trip=trip.trip, eta_s=round(elapsed + travel + config.queue_buffer_s, 1))
        )
        elapsed += travel + trip.service_s
        prev = (trip.lat, trip.lon)
    return out


def _smooth(old: float, new: float, dt_s: float, tau_s: float) -> float:
    return old + (new - old) * (1.0 - math.exp(-max(dt_s, 0.0) / tau_s))


def _progress(
    state: DeviceState, trip: TripState, pos: Position, config: EngineConfig
) -> tuple[float, float, str, str, RouteRequest | None]:
    """(distance_m, eta_s, calculation, polyline, route request or None) at this position."""
    request: RouteRequest | None = None
    route = trip.route
    if route is not None and usable(route, config.max_snap_m):
        p = project(route, pos.lat, pos.lon, trip.segment)
        if p.off_route_m > config.off_route_m + pos.error_m:
            trip.off_route_streak += 1
        else:
            trip.off_route_streak = 0
        if trip.off_route_streak < config.off_route_fixes:
            if p.off_route_m <= config.off_route_m + pos.error_m:
                if trip.progress_us is not None and pos.us > trip.progress_us:
                    dt = (pos.us - trip.progress_us) / 1e6
                    covered = max(0.0, trip.progress_remaining_s - p.remaining_duration_s)
                    pace = _smooth(trip.pace, covered / dt, dt, config.pace_tau_s)
                    trip.pace = min(config.max_pace, max(config.min_pace, pace))
                trip.progress_us, trip.progress_remaining_s = pos.us, p.remaining_duration_s
                trip.segment = p.segment
            _, snap_s = local_estimate(route.destination_snap_m, None, config)
            distance = p.remaining_distance_m + route.destination_snap_m
            eta = p.remaining_duration_s / trip.pace + snap_s
            points = remaining_points(route, p)
            if route.destination_snap_m > 0:
                points.append((trip.lat, trip.lon))
            return distance, eta, "osrm", encode(points), None
        request = _want_route(state, trip, pos, config)
    elif config.routing_enabled:
        request = _want_route(state, trip, pos, config)
    gc = distance_m(pos.lat, pos.lon, trip.lat, trip.lon)
    distance, eta = local_estimate(gc, state.speed_mps, config)
    return distance, eta, "local", encode([(pos.lat, pos.lon), (trip.lat, trip.lon)]), request


def _want_route(
    state: DeviceState, trip: TripState, pos: Position, config: EngineConfig
) -> RouteRequest | None:
    if not config.routing_enabled:
        return None
    if (
        trip.route_wanted_us is not None
        and pos.us - trip.route_wanted_us < config.route_retry_s * 1e6
    ):
        return None
    trip.route_wanted_us = pos.us
    return RouteRequest(
        tenant=state.tenant, device=state.device, trip=trip.trip, origin=(pos.lat, pos.lon),
        destination=(trip.lat, trip.lon), fix_us=pos.us,
    )  # fmt: skip


def update(
    state: DeviceState,
    pos: Position,
    config: EngineConfig,
    now: datetime,
    *,
    force: bool = False,
    tag: str = "",
) -> tuple[list[AnyEvent], list[RouteRequest]]:
    """One position of the device for its trips: arrival of the active trip (then the next
    one becomes active at once), else its progress and a rate-limited trip_update."""
    events: list[AnyEvent] = []
    requests: list[RouteRequest] = []
    fix_time = to_datetime(pos.us)
    while state.trips:
        trip = state.trips[0]
        to_dest = distance_m(pos.lat, pos.lon, trip.lat, trip.lon)
        if to_dest <= trip.radius_m:
            if trip.inside_since_us is None:
                trip.inside_since_us = pos.us
            stopped = pos.speed_mps is not None and pos.speed_mps < config.arrival_max_speed_mps
            if stopped or pos.us - trip.inside_since_us >= config.arrival_hold_s * 1e6:
                events.append(
                    TripArrived(
                        id=event_id(state.device, pos.us, "trip_arrived", trip.trip),
                        tenant=state.tenant, device=state.device, fix_time=fix_time, detected_at=now,
                        trip=trip.trip, ref=trip.ref,
                    )
                )  # fmt: skip
                state.trips.pop(0)
                _remember_done(state, trip.trip)
                force = True  # the next trip's first update goes out at once
                continue
        else:
            trip.inside_since_us = None
        distance, eta, calculation, line, request = _progress(state, trip, pos, config)
        if request is not None:
            requests.append(request)
        due = (
            force
            or trip.last_update_us is None
            or pos.us - trip.last_update_us >= config.update_min_interval_s * 1e6
            or trip.last_version_sent != trip.route_version
            or (
                trip.last_eta_s is not None
                and abs(eta - trip.last_eta_s) > config.update_eta_change * trip.last_eta_s
            )
        )
        if due:
            trip.last_update_us, trip.last_eta_s, trip.last_version_sent = (
                pos.us,
                eta,
                trip.route_version,
            )
            events.append(
                TripUpdate(
                    id=event_id(state.device, pos.us, "trip_update", trip.trip, tag),
                    tenant=state.tenant, device=state.device, fix_time=fix_time, detected_at=now,
                    trip=trip.trip, ref=trip.ref, distance_m=round(distance, 1), eta_s=round(eta, 1),
                    calculation="osrm" if calculation == "osrm" else "local", polyline=line,
                    polyline_version=trip.route_version, queue=_queue(state, eta, config),
                )
            )  # fmt: skip
        break
    return events, requests
