"""Batch observation of histograms gives exactly what `observe` per value gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import Histogram

from contracts.geodesy import haversine_m
from devices.fix import Fix, Protocol
from gateway import metrics
from ingest.filters import DeviceTrack, FilterLimits, is_jump

BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)


def _state(h: Histogram) -> list[tuple[str, float]]:
    """Buckets, count and sum (rounded: a sum added up in another order may differ in the
    last bits)."""
    return [
        (s.name + str(sorted(s.labels.items())), round(s.value, 6))
        for m in h.collect()
        for s in m.samples
        if not s.name.endswith("_created")
    ]


def test_observe_many_matches_observe_per_value() -> None:
    values = [0.0, -1.0, 0.005, 0.0050001, 1.0, 30.0, 31.0, 1e9] + [
        random.uniform(0, 40) for _ in range(1000)
    ]
    one, many = (Histogram("h", "doc", buckets=BOUNDS, registry=None) for _ in range(2))
    for v in values:
        one.observe(v)
    metrics.observe_many(many, values)
    assert _state(many) == _state(one)


def test_observe_latencies_matches_observe_per_fix() -> None:
    done = 1_700_000_000.0
    received = [datetime.fromtimestamp(done - d, UTC) for d in (0.001, 0.3, 0.3, 2.0)]
    rows = [
        Fix(device_id="d", tenant_id="t", time=datetime.fromtimestamp(done - 5, UTC) + timedelta(seconds=i),
            lat=1.0, lon=2.0, protocol=Protocol.NMEA, received_at=None if i == 7 else received[i % 4])
        for i in range(10)
    ]  # fmt: skip
    before_r, before_a = _state(metrics.RECEIVE_TO_STORED), _state(metrics.FIX_TO_STORED)
    metrics.observe_latencies(rows, done)
    got_r, got_a = _state(metrics.RECEIVE_TO_STORED), _state(metrics.FIX_TO_STORED)
    want_r = Histogram(
        "r", "doc", buckets=metrics.RECEIVE_TO_STORED._upper_bounds[:-1], registry=None
    )
    want_a = Histogram("a", "doc", buckets=metrics.FIX_TO_STORED._upper_bounds[:-1], registry=None)
    for f in rows:
        if f.received_at is not None:
            want_r.observe(done - f.received_at.timestamp())
        want_a.observe(done - f.time.timestamp())
    for got, before, want in ((got_r, before_r, want_r), (got_a, before_a, want_a)):
        deltas = [g[1] - b[1] for g, b in zip(got, before, strict=True)]
        # Counts are exact; the _sum delta is not: these histograms are the process's own,
        # and what other tests observed before makes `after - before` lose low digits.
        assert deltas == pytest.approx([v for _, v in _state(want)], rel=1e-9, abs=1e-4)


def test_jump_shortcut_agrees_with_haversine() -> None:
    limits = FilterLimits()
    rng = random.Random(7)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for _ in range(20_000):
        lat, lon = rng.uniform(-89, 89), rng.uniform(-179, 179)
        scale = rng.choice((1e-5, 1e-3, 1e-2, 0.1, 5.0))
        lat2 = max(-90.0, min(90.0, lat + rng.uniform(-scale, scale)))
        lon2 = max(-180.0, min(180.0, lon + rng.uniform(-scale, scale)))
        dt = rng.choice((0.0, 0.5, 1.0, 10.0, 100.0))
        track = DeviceTrack(newest_time=t0, good_time=t0, good_lat=lat, good_lon=lon)
        fix = Fix(device_id="d", tenant_id="t", time=t0 + timedelta(seconds=dt), lat=lat2, lon=lon2)
        d = haversine_m(lat, lon, lat2, lon2)
        want = d >= limits.min_jump_distance_m and (dt == 0 or d / dt > limits.max_speed_mps)
        assert is_jump(fix, track, limits) == want
