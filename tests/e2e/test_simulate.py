"""The simulated fleet: its movement model and payloads on their own, then against a real gateway."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from contracts.geodesy import haversine_m
from devices.fix import Fix, Protocol
from devices.jsonfix import decode_json_fixes
from devices.nmea import NmeaDecoder
from devices.owntracks import decode_owntracks
from devtools.simulate import (
    DRIVING_SPEEDS,
    TRUCK_SPEEDS,
    WALKING_SPEEDS,
    Area,
    Motion,
    SpeedRange,
    bearing_deg,
    json_fix_payload,
    nmea_epoch,
    owntracks_payload,
    plan_fleet,
    start_motion,
    step,
)
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, live
from tests.support.paths import FIXGATE_BIN
from tests.support.services import Services

BERLIN = Area(52.52, 13.405, 8000.0)
KNOT = 1852.0 / 3600.0


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def drive(area: Area, speeds: SpeedRange, seed: int, dt: float, steps: int) -> list[Motion]:
    m = start_motion(area, speeds, seed)
    path = [m]
    for _ in range(steps):
        m = step(m, dt)
        path.append(m)
    return path


@pytest.mark.parametrize("speeds", [TRUCK_SPEEDS, WALKING_SPEEDS, DRIVING_SPEEDS])
@pytest.mark.parametrize("seed", range(5))
def test_speeds_stay_within_bounds(speeds: SpeedRange, seed: int) -> None:
    dt = 2.0
    path = drive(Area(52.52, 13.405, 1000.0), speeds, seed, dt=dt, steps=3000)
    for before, after in itertools.pairwise(path):
        assert speeds.low <= after.speed <= speeds.high
        # Straight-line distance can only be shorter than the distance driven.
        assert haversine_m(before.lat, before.lon, after.lat, after.lon) <= speeds.high * dt + 1e-6
    assert len({(m.target_lat, m.target_lon) for m in path}) > 3, "drove through several waypoints"


@pytest.mark.parametrize("seed", range(5))
def test_heading_is_the_direction_of_motion(seed: int) -> None:
    path = drive(BERLIN, TRUCK_SPEEDS, seed, dt=0.5, steps=2000)
    checked = 0
    for before, after in itertools.pairwise(path):
        if (before.target_lat, before.target_lon) != (after.target_lat, after.target_lon):
            continue  # turned at a waypoint within this step
        moved = bearing_deg(before.lat, before.lon, after.lat, after.lon)
        assert angle_diff(moved, before.heading) < 1e-3
        assert (
            angle_diff(
                after.heading, bearing_deg(after.lat, after.lon, after.target_lat, after.target_lon)
            )
            < 1e-9
        )
        assert angle_diff(after.heading, before.heading) < 1.0  # great circles bend slowly
        assert 0.0 <= after.heading < 360.0
        checked += 1
    assert checked > 1500


@pytest.mark.parametrize("seed", range(10))
def test_vehicles_stay_within_the_radius(seed: int) -> None:
    small = Area(48.137, 11.575, 1500.0)
    for dt in (0.2, 5.0, 120.0):  # a long dt crosses several waypoints in one step
        for m in drive(small, DRIVING_SPEEDS, seed, dt=dt, steps=500):
            assert haversine_m(small.lat, small.lon, m.lat, m.lon) <= small.radius_m + 0.01
            assert (
                haversine_m(small.lat, small.lon, m.target_lat, m.target_lon)
                <= small.radius_m + 0.01
            )


def test_step_is_pure_and_resumes_where_told() -> None:
    m = start_motion(BERLIN, TRUCK_SPEEDS, 42)
    assert step(m, 10.0) == step(m, 10.0)
    still = step(m, 0.0)
    assert (
        haversine_m(m.lat, m.lon, still.lat, still.lon) < 1e-6 and still.target_lat == m.target_lat
    )
    resumed = start_motion(BERLIN, TRUCK_SPEEDS, 7, at=(52.5, 13.4))
    assert (resumed.lat, resumed.lon) == (52.5, 13.4)


def test_payloads_decode_to_the_simulated_position() -> None:
    m = step(start_motion(BERLIN, TRUCK_SPEEDS, 3), 12.34)
    now = 1_790_000_000.25

    decoder = NmeaDecoder("truck", "demo")
    events = [e for line in nmea_epoch(m, now).splitlines() for e in decoder.feed_line(line, now)]
    events += decoder.flush(now)
    fixes = [e for e in events if isinstance(e, Fix)]
    assert len(fixes) == 1, events
    nmea = fixes[0]
    assert nmea.time.timestamp() == pytest.approx(now)
    assert haversine_m(nmea.lat, nmea.lon, m.lat, m.lon) < 0.5  # ddmm.mmmm: ~0.2 m
    assert nmea.speed == pytest.approx(m.speed, abs=0.05 * KNOT)
    assert angle_diff(nmea.heading or 0.0, m.heading) < 0.06

    owntracks = decode_owntracks(owntracks_payload(m, now, 77, "01"), "phone", "demo", now)
    assert isinstance(owntracks, Fix)
    assert haversine_m(owntracks.lat, owntracks.lon, m.lat, m.lon) < 0.05
    assert owntracks.speed == pytest.approx(m.speed, abs=0.5 / 3.6) and owntracks.battery == 77
    assert angle_diff(owntracks.heading or 0.0, m.heading) <= 0.5

    json_fixes, errors = decode_json_fixes(
        json_fix_payload("phone", "demo", m, now, 50), "phone", "demo", now
    )
    assert errors == () and len(json_fixes) == 1
    assert (json_fixes[0].lat, json_fixes[0].lon, json_fixes[0].speed) == (m.lat, m.lon, m.speed)


def test_fleet_plan_splits_phones_between_owntracks_and_json() -> None:
    plan = plan_fleet(2, 3, "acme")
    assert [(s.base_id, s.protocol) for s in plan] == [
        ("sim-acme-truck-01", Protocol.NMEA),
        ("sim-acme-truck-02", Protocol.NMEA),
        ("sim-acme-ot-01", Protocol.OWNTRACKS),
        ("sim-acme-ot-02", Protocol.OWNTRACKS),
        ("sim-acme-phone-01", Protocol.JSON),
    ]


# ---- end to end ----------------------------------------------------------------------


def _simulate(env: dict[str, str], state: Path, duration: str) -> subprocess.CompletedProcess[str]:
    args = [
        "simulate",
        "--trucks",
        "2",
        "--phones",
        "2",
        "--rate",
        "5",
        "--duration",
        duration,
        "--seed",
        "1",
        "--no-roads",  # great circles here, whatever FIXGATE_ROUTING_URL says
    ]
    return subprocess.run(
        [FIXGATE_BIN, *args, "--state", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _device_ids(db_url: str) -> list[str]:
    with psycopg.connect(db_url) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id").fetchall()]


def test_simulated_fleet_lands_in_timescaledb_and_redis(
    fixgate_env: dict[str, str], db_url: str, services: Services, redis_prefix: str, tmp_path: Path
) -> None:
    state = tmp_path / "simulator.json"
    with running_gateway(fixgate_env, tmp_path) as gw:
        # The fleet makes its phones' broker accounts, as with `fixgate stack env`.
        admin = services.mqtt_admin_url or ""
        env = {**fixgate_env, "FIXGATE_TCP_PORT": str(gw.tcp_port), "FIXGATE_MQTT_ADMIN_URL": admin}
        started = time.monotonic()
        run = _simulate(env, state, "3")
        assert run.returncode == 0, run.stderr
        assert time.monotonic() - started < 10
        ids = sorted(json.loads(state.read_text())["devices"])
        assert ids == [
            "sim-demo-ot-01",
            "sim-demo-phone-01",
            "sim-demo-truck-01",
            "sim-demo-truck-02",
        ]
        assert _device_ids(db_url) == ids
        assert "sent nmea=" in run.stdout, run.stdout

        def all_landed() -> bool:
            return all(
                count(db_url, d) > 0 and live(services.redis_url, redis_prefix, d) for d in ids
            )

        assert wait_for(all_landed, timeout_s=10), {d: count(db_url, d) for d in ids}
        for device_id in ids:
            assert live(services.redis_url, redis_prefix, device_id)["tenant"] == "demo"
        stored = {d: count(db_url, d) for d in ids}
        assert all(n >= 5 for n in stored.values()), stored  # ~15 each at 5 fix/s for 3 s

        # A second run reuses the devices (tokens from the state file), registers none.
        again = _simulate(env, state, "1")
        assert again.returncode == 0, again.stderr
        assert _device_ids(db_url) == ids
        assert wait_for(lambda: all(count(db_url, d) > stored[d] for d in ids), timeout_s=10)
        assert gw.metric("fixgate_auth_refused_total", listener="tcp", reason="wrong_token") == 0
        assert gw.metric("fixgate_fixes_rejected_total", reason="jump") == 0
