"""Fix evaluations per second in the engine core: 10,000 devices against 10,000 geofences;
and (--mode lag) the event lag of a real gateway and engine under a fixed offered rate.

    python -m bench.geofence [--devices 10000] [--fences 10000] [--batches 20]
    python -m bench.geofence --mode lag [--rate 10000] [--duration 30] [--devices 2000]

--mode lag: a fresh database with --fences geofences (circles of 25-250 m and small
polygons where the fleet drives) and a trip per device (local ETAs: every fix of every
device is evaluated against its trip and the fences, and yields a `trip_update`); a real
`fixgate gateway` and `fixgate engine`; bench/ingest's paced TCP NMEA senders offer
--rate fixes/s for --duration s. Figure: the engine's own histogram
`fixgate_engine_event_lag_seconds` (fix received by the gateway -> its event committed to
`{prefix}events`), p50/p99 over the run after a warm-up (linear within its buckets), and
how many fixes the gateway received and events the engine wrote. Needs the stack
(`eval "$(fixgate stack env)"`).

(as a module: run as a file, its own name would hide the `geofence` package.)

One tenant holds every fence (the worst case: one STRtree holds them all): 80 % circles of
25-250 m (customer sites), 19 % small polygons of 40-400 m with 5-40 vertices (yards,
depots), 1 % service areas of 2-8 km across with 100-300 vertices (about one covers any
point, as zones tiling a city do), over a 40 x 40 km city at 52.5 N. Each device drives a random walk at 5-20 m/s with 3-15 m accuracy and sends one fix
a second; a batch is one fix of every device (what the shell evaluates per stream read).
Printed: evaluations/s of `geofence.engine.evaluate` alone, and with each device's state
round-tripped through msgpack as the shell does with Redis; events per second too.
Single process, single thread; rates are per CPU second of this process (process_time),
so other load on the machine does not count against them; wall-clock rates are printed too.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from datetime import UTC, datetime, timedelta

import shapely

from contracts.geodesy import metres_per_degree
from devices.fix import Fix
from geofence.config import EngineConfig
from geofence.engine import DeviceJob, evaluate
from geofence.index import FenceIndex, FenceSpec
from geofence.state import DeviceState, decode_state, encode_state

CENTRE = (52.52, 13.405)
HALF_SIDE_M = 20_000.0
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _point(rng: random.Random) -> tuple[float, float]:
    m_lat, m_lon = metres_per_degree(CENTRE[0])
    return (
        CENTRE[0] + rng.uniform(-HALF_SIDE_M, HALF_SIDE_M) / m_lat,
        CENTRE[1] + rng.uniform(-HALF_SIDE_M, HALF_SIDE_M) / m_lon,
    )


def _polygon(rng: random.Random, lat: float, lon: float, radius_m: float, vertices: int) -> bytes:
    m_lat, m_lon = metres_per_degree(lat)
    ring = []
    for k in range(vertices):
        a = 2 * math.pi * k / vertices
        r = radius_m * rng.uniform(0.7, 1.0)
        ring.append((lon + r * math.cos(a) / m_lon, lat + r * math.sin(a) / m_lat))
    return shapely.to_wkb(shapely.Polygon(ring))


def fences(n: int, rng: random.Random) -> list[FenceSpec]:
    out: list[FenceSpec] = []
    for i in range(n):
        lat, lon = _point(rng)
        roll = i % 100
        if roll < 80:
            out.append(
                FenceSpec(
                    id=i, tenant="t", name=f"c{i}", lat=lat, lon=lon, radius_m=rng.uniform(25, 250)
                )
            )
        elif roll < 99:
            wkb = _polygon(rng, lat, lon, rng.uniform(20, 200), rng.randint(5, 40))
            out.append(FenceSpec(id=i, tenant="t", name=f"p{i}", wkb=wkb, dwell_s=300.0))
        else:
            wkb = _polygon(rng, lat, lon, rng.uniform(1000, 4000), rng.randint(100, 300))
            out.append(FenceSpec(id=i, tenant="t", name=f"a{i}", kind="service_area", wkb=wkb))
    return out


class Walker:
    def __init__(self, device: str, rng: random.Random) -> None:
        self.device = device
        self.lat, self.lon = _point(rng)
        self.heading = rng.uniform(0, 2 * math.pi)
        self.speed = rng.uniform(5, 20)
        self.accuracy = rng.uniform(3, 15)

    def step(self, t: int, rng: random.Random) -> Fix:
        self.heading += rng.gauss(0, 0.2)
        m_lat, m_lon = metres_per_degree(self.lat)
        self.lat += self.speed * math.cos(self.heading) / m_lat
        self.lon += self.speed * math.sin(self.heading) / m_lon
        return Fix(
            device_id=self.device, tenant_id="t", time=T0 + timedelta(seconds=t), lat=self.lat, lon=self.lon,
            speed=self.speed, accuracy=self.accuracy,
        )  # fmt: skip


def lag_mode(a: argparse.Namespace) -> None:
    """Gateway + engine, fences and trips, a paced TCP load: the event lag p50/p99."""
    import asyncio
    import os
    import subprocess
    import sys
    import tempfile
    import urllib.request
    import uuid
    from pathlib import Path

    import asyncpg
    import psycopg

    from bench.ingest import (
        free_port,
        make_database,
        quantile,
        register_all,
        scrape,
        start_gateway,
        wait_ready,
    )
    from bench.load import TcpLoad, device_lat
    from gateway.config import Settings
    from gateway.engine.fences import add_geofence
    from gateway.engine.trips import start_trip

    settings = Settings()
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_lag_{uuid.uuid4().hex[:8]}"
    db_url = make_database(admin, name)
    prefix = f"benchlag{uuid.uuid4().hex[:6]}:"
    devices = [f"lag-{i}" for i in range(a.devices)]
    rng = random.Random(a.seed)
    tokens = register_all(db_url, devices)

    async def setup() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            for i in range(a.fences):
                # Where the fleet drives: lat 48.0-49.0 (bench/load.device_lat), lon 11.0.
                lat, lon = 48.0 + rng.uniform(0, 1.0), 11.0 + rng.uniform(-0.01, 0.01)
                if i % 5:
                    geom = shapely.Point(lon, lat)
                    radius: float | None = rng.uniform(25, 250)
                else:
                    geom = shapely.from_wkb(_polygon(rng, lat, lon, rng.uniform(20, 200), 12))
                    radius = None
                await add_geofence(conn, tenant="bench", name=f"f{i}", geometry=geom,
                                   radius_m=radius)  # fmt: skip
            for d in devices:
                await start_trip(conn, tenant="bench", device=d, lat=device_lat(d) + 0.05, lon=11.0)
        finally:
            await conn.close()

    asyncio.run(setup())
    env = {**os.environ, "FIXGATE_DATABASE_URL": db_url, "FIXGATE_REDIS_PREFIX": prefix}
    env.pop("FIXGATE_ROUTING_URL", None)
    log_dir = Path(tempfile.mkdtemp(prefix="fixgate-bench-lag-"))
    engine_port = free_port()
    fixgate = str(Path(sys.executable).parent / "fixgate")
    gw = start_gateway({**env, "FIXGATE_SPOOL_DIR": str(log_dir / "spool")},
                       log_dir / "gateway.log", free_port(), free_port())  # fmt: skip
    with open(log_dir / "engine.log", "ab") as out:
        engine = subprocess.Popen(
            [fixgate, "engine"], env={**env, "FIXGATE_ENGINE_PORT": str(engine_port)},
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        wait_ready(gw, 60)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{engine_port}/readyz") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and engine.poll() is None, "engine not ready"
            time.sleep(0.2)
        per_device = max(1, round(a.rate * a.duration / len(devices)))
        # Fix times from now on: a device's fixes are 1 s apart and go out every
        # devices/rate s, so fix time stays within the gateway's clock-skew tolerance.
        load = TcpLoad(gw.tcp_port, [(d, tokens[d], per_device) for d in devices],
                       int(time.time()), a.rate, a.senders)  # fmt: skip
        load.wait_ready(600)
        go = load.go()
        time.sleep(a.warmup)
        before_e, before_g = scrape(engine_port), scrape(gw.metrics_port)
        t_before = time.monotonic()
        time.sleep(max(0.0, go + a.duration - time.monotonic()))
        after_e, after_g = scrape(engine_port), scrape(gw.metrics_port)
        window = time.monotonic() - t_before
        sent, took = load.wait(a.duration * 3 + 120)
    finally:
        engine.terminate()
        engine.wait(30)
        gw.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        import redis

        client = redis.Redis.from_url(settings.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()

    def delta(b: dict[str, float], af: dict[str, float], key: str) -> float:
        return sum(v - b.get(k, 0.0) for k, v in af.items() if k.startswith(key))

    lag = "fixgate_engine_event_lag_seconds"
    got = delta(before_g, after_g, "fixgate_fixes_received_total{")
    events = delta(before_e, after_e, "fixgate_engine_events_total{")
    print(f"offered {a.rate:,} fixes/s for {a.duration:.0f} s from {len(devices)} TCP devices"
          f" ({sent:,} fixes sent in {took:.1f} s: {sent / took:,.0f}/s achieved);"
          f" {a.fences:,} geofences, a trip per device")  # fmt: skip
    print(f"measured {window:.0f} s after {a.warmup:.0f} s warm-up: gateway received"
          f" {got / window:,.0f} fixes/s, engine wrote {events / window:,.0f} events/s")  # fmt: skip
    print(f"event lag (gateway received -> event in stream): p50 {quantile(before_e, after_e, lag, 0.5) * 1000:.0f} ms,"
          f" p99 {quantile(before_e, after_e, lag, 0.99) * 1000:.0f} ms"
          f" ({delta(before_e, after_e, lag + '_count'):,.0f} batches with events)")  # fmt: skip
    wait, stored = "fixgate_engine_stream_wait_seconds", "fixgate_receive_to_stored_seconds"
    print(f"  of which gateway received -> stored: p50 {quantile(before_g, after_g, stored, 0.5) * 1000:.0f} ms,"
          f" p99 {quantile(before_g, after_g, stored, 0.99) * 1000:.0f} ms;"
          f" positions entry waiting for the engine: p50 {quantile(before_e, after_e, wait, 0.5) * 1000:.0f} ms,"
          f" p99 {quantile(before_e, after_e, wait, 0.99) * 1000:.0f} ms")  # fmt: skip
    batch = "fixgate_engine_batch_seconds"
    batches = delta(before_e, after_e, batch + "_count")
    fixes_read = delta(before_e, after_e, "fixgate_engine_fixes_total{")
    print(f"  engine batches: {batches / window:,.1f}/s of {fixes_read / max(batches, 1):,.0f} fixes,"
          f" read -> acknowledged p50 {quantile(before_e, after_e, batch, 0.5) * 1000:.0f} ms,"
          f" p99 {quantile(before_e, after_e, batch, 0.99) * 1000:.0f} ms")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=("core", "lag"), default="core")
    p.add_argument("--devices", type=int, default=None, help="core: 10000; lag: 2000")
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=int, default=10_000, help="lag: fixes/s offered")
    p.add_argument("--duration", type=float, default=30.0, help="lag: seconds of load")
    p.add_argument("--warmup", type=float, default=5.0, help="lag: seconds before measuring")
    p.add_argument("--senders", type=int, default=2, help="lag: TCP sender processes")
    a = p.parse_args()
    if a.mode == "lag":
        a.devices = a.devices or 2000
        lag_mode(a)
        return
    a.devices = a.devices or 10_000
    rng = random.Random(a.seed)
    started = time.perf_counter()
    index = FenceIndex(fences(a.fences, rng))
    built = time.perf_counter() - started
    walkers = [Walker(f"d{i}", rng) for i in range(a.devices)]
    batches = [[w.step(t, rng) for w in walkers] for t in range(a.batches)]
    config = EngineConfig(routing_enabled=False)
    indexes = {"t": index}

    states = {w.device: DeviceState(device=w.device, tenant="t") for w in walkers}
    evaluate(
        [DeviceJob(state=states[f.device_id], fixes=[f]) for f in batches[0]], indexes, config, 0.0
    )
    core_s = core_wall = 0.0
    events = 0
    for batch in batches[1:]:
        jobs = [DeviceJob(state=states[f.device_id], fixes=[f]) for f in batch]
        t, w = time.process_time(), time.perf_counter()
        results = evaluate(jobs, indexes, config, 0.0)
        core_s += time.process_time() - t
        core_wall += time.perf_counter() - w
        events += sum(len(r.events) for r in results)
    n = a.devices * (a.batches - 1)

    stored = {w.device: encode_state(DeviceState(device=w.device, tenant="t")) for w in walkers}
    shell_s = 0.0
    for k, batch in enumerate(batches):
        t = time.process_time()
        jobs = [DeviceJob(state=decode_state(stored[f.device_id]), fixes=[f]) for f in batch]
        for r in evaluate(jobs, indexes, config, 0.0):
            stored[r.state.device] = encode_state(r.state)
        if k > 0:  # the first batch (every device enters its areas) is warm-up, as above
            shell_s += time.process_time() - t
    m = a.devices * (a.batches - 1)

    print(f"fences: {a.fences} in one tenant's STRtree, built in {built:.2f} s")
    print(f"devices: {a.devices}, {a.batches} batches of one fix per device")
    print(
        f"core only:            {n / core_s:>9,.0f} fix evaluations/s  ({n} in {core_s:.2f} CPU s,"
        f" {n / core_wall:,.0f}/s wall; {events / n:.3f} events per fix)"
    )
    print(
        f"core + msgpack state: {m / shell_s:>9,.0f} fix evaluations/s  ({m} in {shell_s:.2f} CPU s)"
    )


if __name__ == "__main__":
    main()
