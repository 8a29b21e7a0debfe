"""The engine process against real Redis and TimescaleDB: fixes written by the gateway's
LiveWriter into the positions stream, events read back from the events stream."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from contracts.keys import Keys
from devices.fix import Fix
from tests.support.engine import (
    EngineProcess,
    events,
    feed,
    fixgate,
    fixgate_lines,
    hold,
    key,
    pending,
    reference,
    register,
    wait_events,
    wait_split,
)
from tests.support.geofence import fix, offset

LAT, LON = 43.7384, 7.4246  # Monaco
TENANT = "acme"


def square_geojson(tmp_path: Path, half_m: float, centre: tuple[float, float] = (LAT, LON)) -> Path:
    s, w = offset(*centre, -half_m, -half_m)
    n, e = offset(*centre, half_m, half_m)
    path = tmp_path / "fence.geojson"
    path.write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]})
    )
    return path


def passes(
    device: str, n: int, t0: float = 0.0, span_m: float = 400.0, speed: float = 10.0
) -> list[Fix]:
    """n passes west-east and back through the centre, one fix a second."""
    out: list[Fix] = []
    t = t0
    steps = int(2 * span_m / speed)
    for k in range(n):
        for i in range(steps + 1):
            x = -span_m + i * speed
            x = x if k % 2 == 0 else -x
            out.append(fix(t, *offset(LAT, LON, 0.0, x), device=device, tenant=TENANT, speed=speed))
            t += 1
    return out


def batches_of(fixes: list[Fix], size: int) -> list[list[Fix]]:
    return [fixes[i : i + size] for i in range(0, len(fixes), size)]


def interleave(*streams: list[Fix]) -> list[Fix]:
    return sorted((f for s in streams for f in s), key=lambda f: (f.time, f.device_id))


async def test_a_fence_added_by_the_cli_yields_enter_and_exit_per_pass(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "truck-1", TENANT)
    fid = fixgate(
        fixgate_env,
        "geofence",
        "add",
        "--tenant",
        TENANT,
        "--name",
        "yard",
        str(square_geojson(tmp_path, 100)),
    )
    assert fid.isdigit()
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        fixes = passes("truck-1", 2)
        await feed(redis_client, redis_prefix, batches_of(fixes, 7))
        got = await wait_events(redis_client, redis_prefix, 4)
        await asyncio.sleep(1.0)
        got = await events(redis_client, redis_prefix)
    finally:
        assert engine.stop() == 0
    assert [(e["type"], e["geofence"]) for e in got] == [
        ("geofence_enter", int(fid)),
        ("geofence_exit", int(fid)),
    ] * 2
    assert [key(e) for e in got] == [key(e) for e in await reference(db_url, batches_of(fixes, 7))]


async def test_a_fence_added_while_the_engine_runs_is_used_within_a_second(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "truck-1", TENANT)
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        fid = fixgate(
            fixgate_env,
            "geofence",
            "add",
            "--tenant",
            TENANT,
            "--name",
            "late",
            str(square_geojson(tmp_path, 50)),
        )
        await asyncio.sleep(1.0)
        await feed(
            redis_client, redis_prefix, [[fix(0, LAT, LON, device="truck-1", tenant=TENANT)]]
        )
        got = await wait_events(redis_client, redis_prefix, 1, timeout_s=5)
    finally:
        engine.stop()
    assert [(e["type"], e["geofence"]) for e in got] == [("geofence_enter", int(fid))]


async def test_a_trip_updates_then_arrives_once_and_its_etas_are_scored(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "van-1", TENANT)
    dest = offset(LAT, LON, 0.0, 600.0)
    trip = fixgate(
        fixgate_env,
        "trip",
        "start",
        "--tenant",
        TENANT,
        "--device",
        "van-1",
        "--to",
        f"{dest[0]},{dest[1]}",
        "--ref",
        "req-7",
    )
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        drive = [
            fix(t, *offset(LAT, LON, 0.0, t * 10.0), device="van-1", tenant=TENANT, speed=10.0)
            for t in range(59)
        ]
        stop = [
            fix(59 + t, *offset(LAT, LON, 0.0, 595.0), device="van-1", tenant=TENANT, speed=0.0)
            for t in range(5)
        ]
        await feed(redis_client, redis_prefix, batches_of(drive + stop, 5))
        got = await wait_events(redis_client, redis_prefix, 1 + 59)
        await asyncio.sleep(2.0)  # the arrival's database work and the ETA flush
        got = await events(redis_client, redis_prefix)
        metrics = await asyncio.to_thread(engine.get, "/metrics")
    finally:
        engine.stop()
    assert 'fixgate_engine_eta_abs_error_seconds_count{band="250m-1km"}' in metrics
    assert 'fixgate_engine_events_total{type="trip_arrived"} 1.0' in metrics
    updates = [e for e in got if e["type"] == "trip_update"]
    arrived = [e for e in got if e["type"] == "trip_arrived"]
    assert [a["trip"] for a in arrived] == [trip] and arrived[0]["ref"] == "req-7"
    dist = [u["distance_m"] for u in updates]
    assert len(updates) >= 50 and dist == sorted(dist, reverse=True)
    assert {u["calculation"] for u in updates} == {"local"}
    conn = await asyncpg.connect(db_url)
    try:
        state = await conn.fetchval("SELECT state FROM trips WHERE id = $1", trip)
        scored = await conn.fetchval(
            "SELECT count(*) FROM eta_predictions WHERE trip_id = $1 AND error_s IS NOT NULL", trip
        )
    finally:
        await conn.close()
    assert state == "arrived" and scored == len(updates)
    report = fixgate_lines(fixgate_env, "eta", "report", "--since", "2025-03-01T00:00:00Z")
    # The table: a header, then the four bands; every prediction lies within 1 km.
    assert [line.split()[0] for line in report] == ["band", "0-250m", "250m-1km", "1-3km", "3km+"]
    counts = {line.split()[0]: int(line.split()[1]) for line in report[1:]}
    assert (
        counts["0-250m"] + counts["250m-1km"] == len(updates)
        and counts["1-3km"] == counts["3km+"] == 0
    )


async def test_a_trip_canceled_from_the_cli_emits_trip_canceled_once(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "van-1", TENANT)
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        await feed(redis_client, redis_prefix, [[fix(0, LAT, LON, device="van-1", tenant=TENANT)]])
        trip = fixgate(
            fixgate_env,
            "trip",
            "start",
            "--tenant",
            TENANT,
            "--device",
            "van-1",
            "--to",
            f"{LAT + 0.01},{LON}",
        )
        first = await wait_events(redis_client, redis_prefix, 1, timeout_s=5)
        fixgate(fixgate_env, "trip", "cancel", trip)
        got = await wait_events(redis_client, redis_prefix, 2, timeout_s=5)
    finally:
        engine.stop()
    assert [e["type"] for e in first] == ["trip_update"]  # at once, from the last position
    assert [(e["type"], e["trip"]) for e in got] == [("trip_update", trip), ("trip_canceled", trip)]


def _fleet() -> list[list[Fix]]:
    devices = [f"dev-{i:02d}" for i in range(12)]
    fixes = interleave(*[passes(d, 6, t0=i * 0.1) for i, d in enumerate(devices)])
    return batches_of(fixes, 24)


async def _fleet_in_a_yard(
    fixgate_env: dict[str, str], db_url: str, tmp_path: Path
) -> list[list[Fix]]:
    """The fault tests' fleet: 12 devices registered, driving in and out of one yard."""
    for i in range(12):
        await register(db_url, f"dev-{i:02d}", TENANT)
    fixgate(
        fixgate_env,
        "geofence",
        "add",
        "--tenant",
        TENANT,
        "--name",
        "yard",
        str(square_geojson(tmp_path, 100)),
    )
    return _fleet()


@pytest.mark.fault
async def test_engine_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    batches = await _fleet_in_a_yard(fixgate_env, db_url, tmp_path)
    expected = await reference(db_url, batches)
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    await asyncio.to_thread(engine.wait_ready)
    # A consumer that reads the first entries and dies without acknowledging them.
    await feed(redis_client, redis_prefix, batches[:5])
    assert await hold(redis_client, redis_prefix, "dead-one", count=5) > 0
    feeding = asyncio.create_task(feed(redis_client, redis_prefix, batches[5:], pause_s=0.01))
    await wait_events(redis_client, redis_prefix, len(expected) // 3)
    engine.kill()
    await feeding
    again = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(again.wait_ready)
        got = await wait_events(redis_client, redis_prefix, len(expected), timeout_s=60)
        # Every entry delivered again (as after a crash between commit and XACK): the
        # committed state makes all of it late, so nothing is emitted twice.
        for stream in Keys(redis_prefix).all_positions():
            await redis_client.xgroup_setid(stream, "engine", "0")
        await asyncio.sleep(4.0)
        got = await events(redis_client, redis_prefix)
        left = await pending(redis_client, redis_prefix)
    finally:
        again.stop()
    assert left == 0
    assert len(expected) > 100
    assert sorted(key(e) for e in got) == sorted(key(e) for e in expected)
    assert not [k for k, n in Counter(e["id"] for e in got).items() if n > 1]


@pytest.mark.fault
async def test_entries_in_another_consumers_hands_are_taken_over_before_newer_ones(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """A consumer holds the first entries (read, never acknowledged) when the engine takes
    the shards: it claims and evaluates them before the newer ones, so their fixes are not
    made late by the newer ones and the events are one engine's."""
    batches = await _fleet_in_a_yard(fixgate_env, db_url, tmp_path)
    expected = await reference(db_url, batches)
    # The first 17 batches, up to the first fence entries (12:00:32-34).
    await feed(redis_client, redis_prefix, batches[:17])
    fed = sum([await redis_client.xlen(s) for s in Keys(redis_prefix).all_positions()])
    assert await hold(redis_client, redis_prefix, "slow-one") == fed > 0
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        await feed(redis_client, redis_prefix, batches[17:], pause_s=0.005)
        await wait_events(redis_client, redis_prefix, len(expected), timeout_s=60)
        await asyncio.sleep(2.0)
        got = await events(redis_client, redis_prefix)
    finally:
        engine.stop()
    assert sorted(key(e) for e in got) == sorted(key(e) for e in expected)


@pytest.mark.fault
async def test_two_engines_on_one_stream_emit_what_one_emits(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    batches = await _fleet_in_a_yard(fixgate_env, db_url, tmp_path)
    expected = await reference(db_url, batches)
    one = EngineProcess(fixgate_env, tmp_path / "one.log", FIXGATE_ENGINE_READ_COUNT="3")
    two = EngineProcess(fixgate_env, tmp_path / "two.log", FIXGATE_ENGINE_READ_COUNT="3")
    try:
        await asyncio.to_thread(one.wait_ready)
        await asyncio.to_thread(two.wait_ready)
        await wait_split(one, two)
        await feed(redis_client, redis_prefix, batches, pause_s=0.005)
        await wait_events(redis_client, redis_prefix, len(expected), timeout_s=60)
        await asyncio.sleep(2.0)
        got = await events(redis_client, redis_prefix)
        evaluated = [
            engine.metric("fixgate_engine_fixes_total", result="evaluated") for engine in (one, two)
        ]
    finally:
        one.stop()
        two.stop()
    assert sorted(key(e) for e in got) == sorted(key(e) for e in expected)
    # Device by device, the same events in the same order as one engine's.
    assert per_device(got) == per_device(expected)
    assert all(n > 0 for n in evaluated), evaluated  # both did a share of the work


@pytest.mark.fault
async def test_an_engine_whose_redis_came_back_empty_goes_on_by_itself(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    """Redis restarted without its data (streams, consumer groups, leases, states gone):
    the engine's reads answer NOGROUP; it makes its groups and leases again and evaluates
    what comes next, from a fresh state, without a restart of its own."""
    batches = await _fleet_in_a_yard(fixgate_env, db_url, tmp_path)
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        await feed(redis_client, redis_prefix, batches[: len(batches) // 2], pause_s=0.005)
        first = await wait_events(redis_client, redis_prefix, 1)
        await asyncio.sleep(1.0)
        keys = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
        await redis_client.delete(*keys)  # as an empty restart leaves it
        await feed(redis_client, redis_prefix, batches[len(batches) // 2 :], pause_s=0.005)
        again = await wait_events(redis_client, redis_prefix, 1, timeout_s=30)
        alive, ready = engine.proc.poll() is None, engine.get("/readyz")
    finally:
        engine.stop()
    assert first and again, engine.log.read_text()[-2000:]
    assert alive and "ready" in ready


def per_device(found: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, str, str]]]:
    out: dict[str, list[tuple[str, str, str, str]]] = {}
    for event in found:
        out.setdefault(event["device"], []).append(key(event))
    return out


async def test_geofences_are_listed_and_a_removed_one_is_left_silently(
    fixgate_env: dict[str, str],
    db_url: str,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    await register(db_url, "truck-1", TENANT)
    point = tmp_path / "point.geojson"
    point.write_text(
        json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [LON, LAT]}})
    )
    circle_id = fixgate(
        fixgate_env,
        "geofence",
        "add",
        "--tenant",
        TENANT,
        "--name",
        "site",
        "--radius-m",
        "40",
        "--kind",
        "customer",
        "--dwell-s",
        "60",
        str(point),
    )
    square_id = fixgate(
        fixgate_env,
        "geofence",
        "add",
        "--tenant",
        TENANT,
        "--name",
        "yard",
        str(square_geojson(tmp_path, 100)),
    )
    listing = fixgate_lines(fixgate_env, "geofence", "list", "--tenant", TENANT)
    assert [line.split()[:3] for line in listing[1:]] == [
        [circle_id, TENANT, "site"],
        [square_id, TENANT, "yard"],
    ]
    engine = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        await asyncio.to_thread(engine.wait_ready)
        await feed(
            redis_client, redis_prefix, [[fix(0, LAT, LON, device="truck-1", tenant=TENANT)]]
        )
        entered = await wait_events(redis_client, redis_prefix, 2, timeout_s=5)
        fixgate(fixgate_env, "geofence", "remove", circle_id)
        await asyncio.sleep(1.0)
        far = offset(LAT, LON, 0.0, 2000.0)
        await feed(redis_client, redis_prefix, [[fix(10, *far, device="truck-1", tenant=TENANT)]])
        got = await wait_events(redis_client, redis_prefix, 3, timeout_s=5)
        await asyncio.sleep(0.5)
        got = await events(redis_client, redis_prefix)
    finally:
        engine.stop()
    assert sorted((e["type"], e["geofence"]) for e in entered) == sorted(
        [("geofence_enter", int(circle_id)), ("geofence_enter", int(square_id))]
    )
    assert [(e["type"], e["geofence"]) for e in got[2:]] == [("geofence_exit", int(square_id))]
