"""Geofence hysteresis: jitter never flaps, one enter and one exit per pass, dwell once per
visit, crossings between sparse fixes, late and invalid fixes change nothing."""

from __future__ import annotations

import random

import pytest

from geofence.config import EngineConfig
from geofence.events import GeofenceDwell
from tests.support.geofence import Driver, circle, fix, offset, square, strip, types

LAT, LON = 52.52, 13.405


@pytest.mark.parametrize("lat", [0.0, 52.52, 69.65])
@pytest.mark.parametrize("error", ["accuracy", "hdop", "none"])
def test_jitter_of_10_m_at_a_polygon_edge_for_10_minutes_never_flaps(
    lat: float, error: str
) -> None:
    d = Driver([square(1, lat, LON, 200.0)])
    rng = random.Random(7)
    # The east edge is 200 m east of the centre; the device sits on it, +/-10 m.
    fixes = []
    for t in range(600):
        la, lo = offset(lat, LON, rng.uniform(-50, 50), 200.0 + rng.uniform(-10.0, 10.0))
        kw = (
            {"accuracy": 5.0}
            if error == "accuracy"
            else {"accuracy": None, "hdop": 1.0 if error == "hdop" else None}
        )
        fixes.append(fix(t, la, lo, **kw))  # type: ignore[arg-type]
    d.feed_each(fixes)
    kinds = types(d.events)
    assert kinds.count("geofence_exit") == 0 and kinds.count("geofence_enter") <= 1


def test_jitter_at_a_circle_edge_in_one_batch_never_flaps() -> None:
    d = Driver([circle(1, 64.0, 10.0, 100.0)])
    rng = random.Random(3)
    fixes = [fix(t, *offset(64.0, 10.0, 0.0, 100.0 + rng.uniform(-10, 10))) for t in range(600)]
    d.feed(fixes)
    kinds = types(d.events)
    assert kinds.count("geofence_exit") == 0 and kinds.count("geofence_enter") <= 1


def _pass(
    t0: float, lat: float, fence_half_m: float, speed: float = 10.0, east: bool = True
) -> list:
    """Drive through the centre (west to east, or back), from 300 m before to 300 m past."""
    span = fence_half_m + 300.0
    sign = 1.0 if east else -1.0
    return [
        fix(t0 + i, *offset(lat, LON, 0.0, sign * (-span + i * speed)), speed=speed)
        for i in range(int(2 * span / speed) + 1)
    ]


@pytest.mark.parametrize("lat", [-33.9, 52.52, 78.2])
def test_each_pass_through_a_polygon_is_one_enter_then_one_exit(lat: float) -> None:
    d = Driver([square(1, lat, LON, 100.0)])
    for k in range(3):
        d.feed_each(_pass(k * 1000.0, lat, 100.0, east=k % 2 == 0))
    assert types(d.events) == ["geofence_enter", "geofence_exit"] * 3


def test_each_pass_through_a_circle_is_one_enter_then_one_exit_batched() -> None:
    d = Driver([circle(5, LAT, LON, 80.0)])
    for k in range(3):
        d.feed(_pass(k * 1000.0, LAT, 80.0, east=k % 2 == 0))
    assert types(d.events) == ["geofence_enter", "geofence_exit"] * 3
    assert {e.geofence for e in d.events} == {5}  # type: ignore[union-attr]


def test_enter_and_exit_happen_at_the_documented_depths() -> None:
    d = Driver([square(1, LAT, LON, 200.0)])
    # From outside, walking in west from the east edge: enter only beyond the 5 m accuracy.
    assert d.feed([fix(0, *offset(LAT, LON, 0, 230))]) == []
    assert d.feed([fix(1, *offset(LAT, LON, 0, 197))]) == []  # 3 m inside < 5 m error
    assert types(d.feed([fix(2, *offset(LAT, LON, 0, 193))])) == ["geofence_enter"]
    # Out: 15 m margin + 5 m error.
    assert d.feed([fix(3, *offset(LAT, LON, 0, 218))]) == []
    assert types(d.feed([fix(4, *offset(LAT, LON, 0, 222))])) == ["geofence_exit"]


def test_enter_can_require_several_consecutive_fixes() -> None:
    d = Driver([square(1, LAT, LON, 200.0)], EngineConfig(enter_min_fixes=3, routing_enabled=False))
    inside = offset(LAT, LON, 0, 0)
    outside = offset(LAT, LON, 0, 400)
    seq = [inside, inside, outside, inside, inside, inside]
    got = [types(d.feed([fix(t, *p)])) for t, p in enumerate(seq)]
    assert got == [[], [], [], [], [], ["geofence_enter"]]


def test_dwell_fires_once_per_visit() -> None:
    d = Driver([square(1, LAT, LON, 100.0, dwell_s=60.0)])
    centre = offset(LAT, LON, 0, 0)
    far = offset(LAT, LON, 0, 1000)
    visit = [fix(t, *centre, speed=0.0) for t in range(0, 300, 5)]
    away = [fix(t, *far) for t in range(300, 400, 5)]
    again = [fix(t, *centre, speed=0.0) for t in range(400, 700, 5)]
    d.feed_each(visit + away + again)
    assert types(d.events) == [
        "geofence_enter", "geofence_dwell", "geofence_exit", "geofence_enter", "geofence_dwell",
    ]  # fmt: skip
    dwells = [e for e in d.events if isinstance(e, GeofenceDwell)]
    assert [e.dwell_s for e in dwells] == [60.0, 60.0]


def test_no_dwell_when_the_fence_has_none() -> None:
    d = Driver([square(1, LAT, LON, 100.0)])
    d.feed([fix(t, LAT, LON, speed=0.0) for t in range(0, 3600, 10)])
    assert types(d.events) == ["geofence_enter"]


@pytest.mark.parametrize("batched", [False, True])
def test_two_fixes_straddling_a_30_m_fence_cross_it_once(batched: bool) -> None:
    d = Driver([strip(9, LAT, LON, 30.0, 500.0)])
    fixes = [fix(0, *offset(LAT, LON, 0, -60)), fix(5, *offset(LAT, LON, 0, 60))]
    d.feed(fixes) if batched else d.feed_each(fixes)
    assert types(d.events) == ["geofence_crossed"]
    assert d.events[0].geofence == 9  # type: ignore[union-attr]


def test_a_segment_crossing_a_small_circle_crosses_it_and_one_passing_beside_does_not() -> None:
    d = Driver([circle(1, LAT, LON, 15.0), circle(2, *offset(LAT, LON, 40, 0), 15.0)])
    d.feed_each([fix(0, *offset(LAT, LON, 0, -50)), fix(10, *offset(LAT, LON, 0, 50))])
    assert [(types([e])[0], e.geofence) for e in d.events] == [("geofence_crossed", 1)]  # type: ignore[union-attr]


def test_no_crossing_when_a_fix_lands_inside() -> None:
    d = Driver([strip(9, LAT, LON, 30.0, 500.0)])
    d.feed_each(
        [fix(0, *offset(LAT, LON, 0, -60)), fix(5, LAT, LON), fix(10, *offset(LAT, LON, 0, 60))]
    )
    assert types(d.events) == ["geofence_enter", "geofence_exit"]


def test_late_duplicate_and_invalid_fixes_change_nothing() -> None:
    d = Driver([square(1, LAT, LON, 100.0)])
    outside = offset(LAT, LON, 0, 500)
    d.feed([fix(100, *outside)])
    before = d.stored["dev-1"]
    assert d.feed([fix(50, LAT, LON)]) == []  # late: older than the newest evaluated
    assert d.feed([fix(100, LAT, LON)]) == []  # same fix time: a duplicate
    assert d.feed([fix(101, LAT, LON, valid=False)]) == []  # the device says it is no fix
    assert d.stored["dev-1"] == before


def test_a_batch_in_any_order_is_evaluated_in_fix_time_order() -> None:
    fixes = _pass(0.0, LAT, 100.0)
    one, other = Driver([square(1, LAT, LON, 100.0)]), Driver([square(1, LAT, LON, 100.0)])
    one.feed(fixes)
    other.feed(list(reversed(fixes)))
    assert [e.id for e in one.events] == [e.id for e in other.events]
    assert types(one.events) == ["geofence_enter", "geofence_exit"]


def test_event_ids_are_the_same_when_a_fix_is_evaluated_again() -> None:
    fixes = _pass(0.0, LAT, 100.0)
    one, again = Driver([square(1, LAT, LON, 100.0)]), Driver([square(1, LAT, LON, 100.0)])
    one.feed(fixes)
    again.now += 3600  # evaluated an hour later (a redelivery): only detected_at differs
    again.feed(fixes)
    assert [e.id for e in one.events] == [e.id for e in again.events]
    assert len({e.id for e in one.events}) == 2


def test_a_removed_fence_leaves_silently() -> None:
    d = Driver([square(1, LAT, LON, 100.0)])
    d.feed([fix(0, LAT, LON)])
    d.indexes = {}  # the tenant's last fence was removed
    assert d.feed([fix(1, *offset(LAT, LON, 0, 1000))]) == []
    assert d.state().fences == {}


def test_fences_of_another_tenant_are_not_seen() -> None:
    d = Driver([square(1, LAT, LON, 100.0, tenant="other")])
    assert d.feed([fix(0, LAT, LON)]) == []


def test_fixes_too_coarse_decide_nothing() -> None:
    d = Driver([square(1, LAT, LON, 100.0)])
    assert d.feed([fix(0, LAT, LON, accuracy=900.0)]) == []
    assert types(d.feed([fix(1, LAT, LON, accuracy=5.0)])) == ["geofence_enter"]
    assert d.feed([fix(2, *offset(LAT, LON, 0, 2000), accuracy=900.0)]) == []


@pytest.mark.parametrize("lat", [0.0, 60.0])
def test_a_short_segment_over_a_thin_fence_crosses_it(lat: float) -> None:
    # 20 m between the fixes: shorter than the query buffer (15 m + 5 m + 1 m), so it is
    # found among the fix's near fences rather than by a segment query.
    d = Driver([strip(4, lat, LON, 8.0, 60.0), circle(5, *offset(lat, LON, 50, 0), 5.0)])
    d.feed_each([fix(0, *offset(lat, LON, 0, -10)), fix(1, *offset(lat, LON, 0, 10))])
    d.feed_each([fix(2, *offset(lat, LON, 50, 10)), fix(3, *offset(lat, LON, 50, -10))])
    assert [(types([e])[0], e.geofence) for e in d.events] == [
        ("geofence_crossed", 4),
        ("geofence_crossed", 5),
    ]  # type: ignore[union-attr]
