"""Trips: remaining distance and ETA per fix, rate-limited updates, arrival exactly once,
no arrival on a pass-by, the queue ETA, routes asked for and fed back (sans-IO), the local
fallback and routes that end outside the extract."""

from __future__ import annotations

import itertools

from contracts.geodesy import distance_m
from geofence.config import EngineConfig
from geofence.engine import route_ready, sync_trips
from geofence.events import TripArrived, TripCanceled, TripUpdate
from geofence.polyline import decode
from geofence.routes import Route
from geofence.trips import TripSpec, local_estimate
from tests.support.geofence import Driver, fix, offset, types

LAT, LON = 48.137, 11.575
DEST = offset(LAT, LON, 0.0, 2000.0)  # 2 km east


def trip(
    tid: str = "trip-a", seq: int = 1, dest: tuple[float, float] = DEST, **kw: object
) -> TripSpec:
    return TripSpec(id=tid, seq=seq, lat=dest[0], lon=dest[1], state="active", **kw)  # type: ignore[arg-type]


def drive(t0: float, metres: float, speed: float, start_east_m: float = 0.0) -> list:
    """East along the parallel through LAT, one fix a second."""
    n = int(metres / speed)
    return [
        fix(t0 + i, *offset(LAT, LON, 0.0, start_east_m + i * speed), speed=speed)
        for i in range(n + 1)
    ]


def updates(events: list) -> list[TripUpdate]:
    return [e for e in events if isinstance(e, TripUpdate)]


def straight_route(
    origin: tuple[float, float], dest: tuple[float, float], n: int = 20, speed: float = 12.5
) -> Route:
    pts = [
        (origin[0] + (dest[0] - origin[0]) * i / n, origin[1] + (dest[1] - origin[1]) * i / n)
        for i in range(n + 1)
    ]
    seg = [distance_m(*pts[i], *pts[i + 1]) for i in range(n)]
    return Route(
        points=pts, segment_distances_m=seg, segment_durations_s=[s / speed for s in seg],
        distance_m=sum(seg), duration_s=sum(seg) / speed, origin_snap_m=3.0, destination_snap_m=0.0,
    )  # fmt: skip


def test_local_updates_decrease_and_are_at_most_one_a_second() -> None:
    d = Driver()
    fixes = [
        f
        for t in range(0, 200)
        for f in [fix(t * 0.5, *offset(LAT, LON, 0.0, t * 5.0), speed=10.0)]
    ]
    d.feed_each(fixes, trips={"dev-1": [trip()]})
    ups = updates(d.events)
    assert all(u.calculation == "local" for u in ups)
    dist = [u.distance_m for u in ups]
    assert dist == sorted(dist, reverse=True) and dist[0] > dist[-1] + 900
    times = [u.fix_time for u in ups]
    assert all((b - a).total_seconds() >= 1.0 for a, b in itertools.pairwise(times))
    # Sensible: 2 km x 1.3 at a smoothed ~10 m/s is ~260 s.
    assert 200 < ups[0].eta_s < 330
    assert decode(ups[0].polyline)[-1] == (round(DEST[0], 5), round(DEST[1], 5))


def test_the_local_estimate_uses_the_fallback_speed_when_stopped_or_unknown() -> None:
    c = EngineConfig()
    assert local_estimate(1000.0, None, c) == (1300.0, 1300.0 / c.fallback_speed_mps)
    assert local_estimate(1000.0, 1.0, c)[1] == 1300.0 / c.fallback_speed_mps
    assert local_estimate(1000.0, 13.0, c)[1] == 100.0


def test_arrival_once_when_stopping_within_the_radius() -> None:
    d = Driver()
    approach = drive(0, 1980, 15.0)
    stop = [fix(200 + t, *offset(LAT, LON, 0.0, 1990.0), speed=0.0) for t in range(30)]
    d.feed_each(approach + stop, trips={"dev-1": [trip()]})
    arrived = [e for e in d.events if isinstance(e, TripArrived)]
    assert len(arrived) == 1 and arrived[0].trip == "trip-a"
    assert distance_m(*offset(LAT, LON, 0.0, 1990.0), *DEST) <= 30.0
    assert not d.state().trips and d.state().done == ["trip-a"]
    # Nothing about the trip after its arrival.
    assert types(d.events)[-1] == "trip_arrived"


def test_arrival_after_10_s_within_the_radius_while_still_rolling() -> None:
    d = Driver()
    crawl = [fix(t, *offset(LAT, LON, 0.0, 1985.0 + t * 2.5), speed=2.5) for t in range(20)]
    d.feed_each(crawl, trips={"dev-1": [trip()]})
    arrived = [e for e in d.events if isinstance(e, TripArrived)]
    assert [a.fix_time.second for a in arrived] == [10]  # type: ignore[union-attr]


def test_a_pass_by_at_60_kmh_does_not_arrive() -> None:
    d = Driver()
    d.feed_each(drive(0, 3000, 60 / 3.6), trips={"dev-1": [trip()]})
    assert not any(isinstance(e, TripArrived) for e in d.events)
    assert d.state().trips[0].trip == "trip-a"


def test_the_next_trip_becomes_active_on_arrival_and_the_queue_eta_adds_service_and_buffer() -> (
    None
):
    second = offset(LAT, LON, 3000.0, 2000.0)  # 3 km north of the first destination
    specs = [
        trip("a", 1, service_s=600.0),
        TripSpec(id="b", seq=2, lat=second[0], lon=second[1], state="waiting", service_s=300.0),
        TripSpec(id="c", seq=3, lat=LAT, lon=LON, state="waiting"),
    ]
    d = Driver()
    d.feed([fix(0, LAT, LON, speed=0.0)], trips={"dev-1": specs})
    first = updates(d.events)[0]
    c = d.config
    _, travel_b = local_estimate(3000.0, None, c)
    _, travel_c = local_estimate(distance_m(*second, LAT, LON), None, c)
    assert [q.trip for q in first.queue] == ["b", "c"]
    assert abs(first.queue[0].eta_s - (first.eta_s + 600 + travel_b + 1800)) < 2.0
    assert abs(first.queue[1].eta_s - (first.eta_s + 600 + travel_b + 300 + travel_c + 1800)) < 5.0
    d.feed_each([fix(10 + t, *DEST, speed=0.0) for t in range(3)])
    assert [e.trip for e in d.events if isinstance(e, TripArrived)] == ["a"]
    nxt = updates(d.events)[-1]
    assert nxt.trip == "b" and [q.trip for q in nxt.queue] == ["c"]


def test_queue_buffer_is_configurable() -> None:
    specs = [trip("a", 1), TripSpec(id="b", seq=2, lat=LAT, lon=LON, state="waiting")]
    d = Driver(config=EngineConfig(routing_enabled=False, queue_buffer_s=0.0))
    d.feed([fix(0, *offset(LAT, LON, 0.0, 1000.0), speed=0.0)], trips={"dev-1": specs})
    up = updates(d.events)[0]
    _, travel = local_estimate(2000.0, None, d.config)
    assert abs(up.queue[0].eta_s - (up.eta_s + travel)) < 2.0


def _routed(d: Driver, route: Route) -> None:
    for req in d.requests:
        r = route_ready(d.state(req.device), req, route, d.config, d.now)
        if r.changed:
            d.store(r.state)
        d.events += r.events
    d.requests.clear()


def test_a_route_is_asked_for_then_used_with_its_polyline_and_version() -> None:
    d = Driver(config=EngineConfig())
    d.feed([fix(0, LAT, LON, speed=12.0)], trips={"dev-1": [trip()]})
    assert updates(d.events)[0].calculation == "local"
    assert [(r.trip, r.origin) for r in d.requests] == [("trip-a", (LAT, LON))]
    _routed(d, straight_route((LAT, LON), DEST))
    after = updates(d.events)[-1]
    assert (after.calculation, after.polyline_version) == ("osrm", 1)
    assert abs(after.distance_m - 2000.0) < 15 and abs(after.eta_s - 160.0) < 5
    d.feed_each(drive(1, 1500, 12.5, start_east_m=12.5))
    ups = updates(d.events)[2:]
    assert ups and all(u.calculation == "osrm" and u.polyline_version == 1 for u in ups)
    assert [u.distance_m for u in ups] == sorted(u.distance_m for u in ups)[::-1]
    assert ups[-1].distance_m < 520
    line = decode(ups[-1].polyline)
    assert line[-1] == (round(DEST[0], 5), round(DEST[1], 5))
    assert abs(distance_m(*line[0], *line[-1]) - ups[-1].distance_m) < 5


def test_leaving_the_route_asks_for_a_new_one_and_the_version_increases() -> None:
    d = Driver(config=EngineConfig())
    d.feed([fix(0, LAT, LON, speed=12.0)], trips={"dev-1": [trip()]})
    _routed(d, straight_route((LAT, LON), DEST))
    # A detour 300 m north of the route, past the 30 s between two route requests.
    detour = [fix(40 + t, *offset(LAT, LON, 300.0, 100.0 + t * 10), speed=10.0) for t in range(5)]
    d.feed_each(detour)
    assert len(d.requests) == 1 and d.requests[0].origin == (detour[1].lat, detour[1].lon)
    assert updates(d.events)[-1].calculation == "local"
    _routed(d, straight_route((detour[4].lat, detour[4].lon), DEST))
    last = updates(d.events)[-1]
    assert (last.calculation, last.polyline_version) == ("osrm", 2)


def test_a_route_snapped_far_away_is_outside_the_extract_and_not_used() -> None:
    d = Driver(config=EngineConfig())
    d.feed([fix(0, LAT, LON, speed=12.0)], trips={"dev-1": [trip()]})
    far = straight_route((LAT, LON), DEST)
    import msgspec

    _routed(d, msgspec.structs.replace(far, origin_snap_m=4200.0))
    d.feed_each(drive(1, 100, 12.5, start_east_m=12.5))
    assert {u.calculation for u in updates(d.events)} == {"local"}
    assert d.state().trips[0].route_version == 0


def test_without_a_routing_engine_nothing_is_asked_for() -> None:
    d = Driver()
    d.feed_each(drive(0, 100, 10.0), trips={"dev-1": [trip()]})
    assert d.requests == [] and {u.calculation for u in updates(d.events)} == {"local"}


def test_an_eta_jump_of_more_than_10_percent_goes_out_at_once() -> None:
    d = Driver()
    d.feed([fix(0.0, LAT, LON, speed=12.0)], trips={"dev-1": [trip()]})
    d.feed([fix(0.3, *offset(LAT, LON, 0.0, 3.0), speed=12.0)])
    assert len(updates(d.events)) == 1  # rate-limited
    d.feed([fix(0.6, *offset(LAT, LON, 0.0, 900.0), speed=12.0)])  # a big step closer
    assert len(updates(d.events)) == 2


def test_cancel_emits_one_trip_canceled_and_the_next_trip_starts_at_once() -> None:
    d = Driver()
    specs = [trip("a", 1), TripSpec(id="b", seq=2, lat=LAT, lon=LON, state="waiting")]
    d.feed([fix(0, *offset(LAT, LON, 0.0, 500.0), speed=0.0)], trips={"dev-1": specs})
    canceled = [TripSpec(id="a", seq=1, lat=DEST[0], lon=DEST[1], state="canceled"), specs[1]]
    r = sync_trips(d.state(), canceled, d.config, d.now)
    d.store(r.state)
    assert types(r.events) == ["trip_canceled", "trip_update"]
    assert isinstance(r.events[0], TripCanceled) and r.events[0].trip == "a"
    assert isinstance(r.events[1], TripUpdate) and r.events[1].trip == "b"
    again = sync_trips(d.state(), canceled, d.config, d.now)
    assert again.events == []


def test_trips_of_a_device_without_fixes_wait_for_its_first_fix() -> None:
    d = Driver()
    r = sync_trips(d.state(), [trip()], d.config, d.now)
    assert r.events == [] and r.state.trips[0].trip == "trip-a"
    d.store(r.state)
    assert types(d.feed([fix(0, LAT, LON, speed=3.0)])) == ["trip_update"]


def test_a_late_fix_of_a_device_with_trips_changes_nothing() -> None:
    d = Driver()
    d.feed([fix(10, LAT, LON, speed=5.0)], trips={"dev-1": [trip()]})
    before = d.stored["dev-1"]
    assert d.feed([fix(5, LAT, LON, speed=5.0)], trips={"dev-1": [trip()]}) == []
    assert d.stored["dev-1"] == before
