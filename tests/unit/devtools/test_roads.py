"""The road motion model (pure): speeds around OSRM's, stops at junctions, the end of the
leg reached on time, GPS noise of a few metres; and the simulated IMEIs."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from contracts.geodesy import haversine_m
from devtools.roads import (
    MAX_SPEED_MPS,
    MIN_SPEED_MPS,
    SPEED_FACTORS,
    STOP_S,
    Noise,
    RoadState,
    next_noise,
    offset,
    parked,
    plan_leg,
    point_ahead,
    start_leg,
    step_road,
    turn_deg,
)
from devtools.teltonika_unit import imei_for
from geofence.routes import Route

MONACO = (43.7384, 7.4246)


def zigzag_route(n: int = 40, step_deg: float = 0.0008, speed_mps: float = 12.0) -> Route:
    """A street that turns right and left at every corner, OSRM-shaped."""
    lat, lon = MONACO
    points = [(lat, lon)]
    for i in range(n):
        lat, lon = (lat + step_deg, lon) if i % 2 == 0 else (lat, lon + step_deg)
        points.append((lat, lon))
    lengths = [haversine_m(*a, *b) for a, b in itertools.pairwise(points)]
    durations = [d / speed_mps for d in lengths]
    return Route(
        points=points, segment_distances_m=lengths, segment_durations_s=durations,
        distance_m=sum(lengths), duration_s=sum(durations), origin_snap_m=0.0,
        destination_snap_m=0.0,
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_speeds_vary_around_osrms_and_stops_are_at_junctions(seed: int) -> None:
    route = zigzag_route()
    leg = plan_leg(route, random.Random(seed))
    low, high = SPEED_FACTORS
    for speed in leg.speeds_mps:
        assert max(MIN_SPEED_MPS, 12.0 * low) - 1e-9 <= speed <= min(MAX_SPEED_MPS, 12.0 * high)
    assert len(set(leg.speeds_mps)) > 1, "slower in places, faster in others"
    assert leg.stops_s[0] == 0.0 and leg.stops_s[-1] == 0.0
    stopped = [s for s in leg.stops_s if s > 0.0]
    assert stopped, "stops at some junctions"
    assert len(stopped) < len(leg.stops_s) - 2, "not at every one"
    assert all(STOP_S[0] <= s <= STOP_S[1] for s in stopped)


def test_no_stops_on_a_straight_road() -> None:
    lat, lon = MONACO
    points = [(lat + i * 0.0005, lon) for i in range(20)]
    lengths = [haversine_m(*a, *b) for a, b in itertools.pairwise(points)]
    route = Route(
        points=points, segment_distances_m=lengths, segment_durations_s=[5.0] * 19,
        distance_m=sum(lengths), duration_s=95.0, origin_snap_m=0.0, destination_snap_m=0.0,
    )  # fmt: skip
    assert turn_deg(points[0], points[1], points[2]) < 1e-6
    assert all(s == 0.0 for s in plan_leg(route, random.Random(1)).stops_s)


@pytest.mark.parametrize(("seed", "dt"), [(1, 0.5), (2, 1.0), (3, 7.0), (4, 1000.0)])
def test_the_vehicle_follows_the_road_and_parks_at_the_end_on_time(seed: int, dt: float) -> None:
    route = zigzag_route()
    leg = plan_leg(route, random.Random(seed))
    m = start_leg(leg)
    t = 0.0
    while not m.done:
        before = m
        m = step_road(m, dt)
        t += dt
        # On the road: a point of the segment it is on (or of the last one when parked).
        seg = min(m.segment, len(leg.lengths_m) - 1)
        a, b = leg.points[seg], leg.points[seg + 1]
        ab = haversine_m(*a, *b)
        assert haversine_m(*a, m.lat, m.lon) + haversine_m(m.lat, m.lon, *b) <= ab + 0.05
        moved = haversine_m(before.lat, before.lon, m.lat, m.lon)
        assert moved <= max(leg.speeds_mps) * dt + 0.05
        assert t < leg.duration_s + 2 * dt + 1.0
    assert t >= leg.duration_s - 1e-6
    assert (m.lat, m.lon) == route.points[-1] and m.speed == 0.0
    assert step_road(m, 10.0) == m, "parked stays parked"


def test_speed_is_zero_while_waiting_at_a_junction() -> None:
    leg = plan_leg(zigzag_route(), random.Random(0))
    stop_at = next(i for i, s in enumerate(leg.stops_s) if s > 0.0)
    to_stop = sum(d / v for d, v in zip(leg.lengths_m[:stop_at], leg.speeds_mps, strict=False))
    m = step_road(start_leg(leg), to_stop + 0.5 * min(leg.stops_s[stop_at], STOP_S[0]))
    assert m.segment == stop_at and m.speed == 0.0 and m.wait_s > 0.0
    assert (m.lat, m.lon) == pytest.approx(leg.points[stop_at])


def test_a_point_ahead_is_a_point_of_the_leg_within_the_window() -> None:
    leg = plan_leg(zigzag_route(), random.Random(0))
    step = leg.lengths_m[0]  # ~89 m: every segment of the zigzag is as long
    m = step_road(start_leg(leg), 0.25 * step / max(leg.speeds_mps))  # a bit into segment 0
    assert m.segment == 0 and 0.0 < m.along_m < step
    ahead = step - m.along_m
    assert point_ahead(m, 0.0, 1000.0) == leg.points[1], "the next corner"
    # The first corner at least 200 m ahead: the third one from here.
    assert point_ahead(m, 200.0, 1000.0) == leg.points[3]
    assert ahead + 2 * step >= 200.0 > ahead + step
    assert point_ahead(m, 200.0, 210.0) is None, "that corner lies beyond the window"
    assert point_ahead(m, 5000.0, 9000.0) is None, "the leg ends sooner"
    assert point_ahead(step_road(m, 10_000.0), 0.0, 1000.0) is None, "parked: nowhere ahead"


def test_gps_noise_is_a_few_metres_and_correlated() -> None:
    rng = random.Random(7)
    noise = Noise()
    errors, accuracies, steps = [], [], []
    for _ in range(5000):
        before = noise
        noise, accuracy = next_noise(noise, 1.0, rng)
        errors.append(math.hypot(noise.north_m, noise.east_m))
        steps.append(math.hypot(noise.north_m - before.north_m, noise.east_m - before.east_m))
        accuracies.append(accuracy)
    assert 2.0 < statistics.mean(errors) < 6.0
    assert max(errors) < 25.0
    assert statistics.mean(steps) < statistics.mean(errors), "drifts rather than jumps"
    assert min(accuracies) >= 3.0 and max(accuracies) <= 8.0
    lat, lon = offset(*MONACO, Noise(north_m=3.0, east_m=4.0))
    assert haversine_m(*MONACO, lat, lon) == pytest.approx(5.0, rel=0.01)


def test_a_parked_vehicle_reports_noisy_fixes_around_its_spot() -> None:
    state = RoadState(start_leg(parked(MONACO)), random.Random(3))
    for _ in range(100):
        motion, lat, lon, accuracy = state.advance(1.0)
        assert motion.speed == 0.0 and (motion.lat, motion.lon) == MONACO
        assert haversine_m(*MONACO, lat, lon) < 25.0 and accuracy > 0.0


def test_walkers_keep_their_own_speeds() -> None:
    leg = plan_leg(zigzag_route(), random.Random(5), fixed_speeds=(1.0, 2.0))
    assert all(1.0 <= v <= 2.0 for v in leg.speeds_mps)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 == 1 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_simulated_imeis_are_stable_15_digit_luhn_numbers() -> None:
    imeis = {imei_for(f"sim-demo-fmb-{i:02d}") for i in range(1, 200)}
    assert len(imeis) == 199
    assert all(len(i) == 15 and i.isdigit() and luhn_ok(i) for i in imeis)
    assert imei_for("sim-demo-fmb-01") == imei_for("sim-demo-fmb-01")
