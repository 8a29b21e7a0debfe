"""Scaling out: the position engine's throughput with 1, 2 and 4 `fixgate engine` processes
on the same backlog, on one Redis and on a Redis Cluster; and the cost of Redis's AOF on
ingest.

    eval "$(fixgate stack env)"    # and `fixgate stack up --redis-cluster` for --cluster-url
    .venv/bin/python -m bench.scale --mode engine [--engines 1,2,4] [--fixes 300000]
        [--devices 2000] [--fences 1000] [--cluster-url redis://127.0.0.1:56389/0]
    .venv/bin/python -m bench.scale --mode aof [--fixes 600000]

--mode engine: a fresh database with --fences geofences (bench/geofence's mix: 80 % circles
of 25-250 m, 19 % small polygons, 1 % service areas of 2-8 km, over a 40 x 40 km city) and
a trip per device (local ETAs: every fix is evaluated against the fences and the device's
trip and yields a `trip_update`). The backlog: --devices random walkers (5-20 m/s, one fix
a second), --fixes in all, written to the positions streams by the gateway's own writer
(gateway/sinks/live.py), the same backlog for every run (a fresh key prefix per run).
For each engine count the engines start and split the shards, then the backlog's entries
are written (the positions streams only: the engines' whole input, in a second or two),
and the figure is fixes evaluated per second by all engines together from the end of the
writing until 95 % of the backlog is done (sampled from their /metrics every 0.2 s), with
the CPU the engine processes used meanwhile (/proc): fixes per engine CPU second is the
figure that does not depend on what else the machine runs, and cores used says how much
of the machine the engines got. Beside it, the floor of the same run: one bare consumer that
reads the same backlog from the same streams (XREADGROUP, decode, XACK; no evaluation),
which is what moving the fixes through Redis costs one process here. The machine is
shared: run it twice and read ratios within one run.

--mode aof: bench/ingest's `--mode mqtt` (QoS 1, one fix per message, a preloaded broker
drained by a real gateway) run with the stack's Redis appendonly off, then on
(`appendfsync everysec`), then off and on again; prints each rate and on/off.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import shapely

from bench.geofence import T0, Walker, _point, fences
from bench.ingest import free_port, make_database, register_all, scrape
from contracts.keys import DEFAULT_SHARDS, Keys
from contracts.positions import entry_fixes
from devices.fix import Fix
from gateway.config import Settings
from gateway.redis_link import AnyRedis, connect, read_group

FIXGATE = str(Path(sys.executable).parent / "fixgate")
BATCH_DEVICES = 2000
"""Fixes per writer batch (one gateway batch): one fix of every device when 2,000."""


@dataclass
class Run:
    label: str
    engines: int
    rate: float
    seconds: float
    events: float
    per_engine: list[float]
    cpu_s: float
    """CPU seconds the engine processes used in the window, together."""

    @property
    def per_cpu_s(self) -> float:
        """Fixes evaluated per CPU second of the engines: what one core does, whatever the
        machine's other load leaves them."""
        return self.rate * self.seconds / max(self.cpu_s, 1e-9)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out: {what}")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _sum(metrics: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


def backlog(a: argparse.Namespace) -> list[list[Fix]]:
    """The same fixes for every run: batches of one fix per device per second."""
    rng = random.Random(a.seed)
    walkers = [Walker(f"sc-{i}", rng) for i in range(a.devices)]
    rounds = math.ceil(a.fixes / a.devices)
    fixes = [
        Fix(device_id=w.device, tenant_id="bench", time=T0 + timedelta(seconds=t),
            lat=f.lat, lon=f.lon, speed=f.speed, accuracy=f.accuracy)
        for t in range(rounds) for w in walkers for f in (w.step(t, rng),)
    ][: a.fixes]  # fmt: skip
    return [fixes[i : i + BATCH_DEVICES] for i in range(0, len(fixes), BATCH_DEVICES)]


async def setup_database(db_url: str, a: argparse.Namespace) -> None:
    import asyncpg

    from gateway.engine.fences import add_geofence
    from gateway.engine.trips import start_trip

    rng = random.Random(a.seed + 1)
    conn = await asyncpg.connect(db_url)
    try:
        for spec in fences(a.fences, rng):
            if spec.wkb is None:
                geom, radius = shapely.Point(spec.lon, spec.lat), spec.radius_m
            else:
                geom, radius = shapely.from_wkb(spec.wkb), None
            await add_geofence(
                conn, tenant="bench", name=spec.name, geometry=geom, kind=spec.kind,
                radius_m=radius, dwell_s=spec.dwell_s,
            )  # fmt: skip
        for i in range(a.devices):
            lat, lon = _point(rng)  # somewhere in the city: the trips never end here
            await start_trip(conn, tenant="bench", device=f"sc-{i}", lat=lat, lon=lon)
    finally:
        await conn.close()


async def write_backlog(
    client: AnyRedis, prefix: str, batches: list[list[Fix]], live: bool = True
) -> float:
    """The gateway's writes of the batches (live positions too unless `live` is off)."""
    from gateway.sinks.live import LiveWriter

    writer = LiveWriter(client, prefix, DEFAULT_SHARDS)
    started = time.monotonic()
    for batch in batches:
        await writer.write(batch if live else [], batch)
    return time.monotonic() - started


async def bare_floor(redis_url: str, prefix: str, batches: list[list[Fix]]) -> float:
    """Fixes/s one process reads, decodes and acknowledges from the streams (no evaluation)."""
    client = await connect(redis_url)
    keys = Keys(prefix)
    streams = keys.all_positions()
    for stream in streams:
        await client.xgroup_create(stream, "bare", id="0", mkstream=True)
    await write_backlog(client, prefix, batches, live=False)
    total = sum(len(b) for b in batches)
    read = 0
    started = time.monotonic()
    while read < total:
        for stream, entries in await read_group(
            client, "bare", "bare-1", dict.fromkeys(streams, ">"), count=500, block_ms=1000
        ):
            for _, fields in entries:
                read += len(entry_fixes(fields))
            await client.xack(stream, "bare", *[e[0] for e in entries])
    seconds = time.monotonic() - started
    await _drop(client, prefix)
    await client.aclose()
    return total / seconds


async def _drop(client: AnyRedis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(keys), 500):
        for k in keys[i : i + 500]:
            await client.delete(k)


def engine_run(
    a: argparse.Namespace, db_url: str, redis_url: str, label: str, n: int,
    batches: list[list[Fix]], log_dir: Path,
) -> Run:  # fmt: skip
    prefix = f"benchscale{uuid.uuid4().hex[:6]}:"
    env = {**os.environ, "FIXGATE_DATABASE_URL": db_url, "FIXGATE_REDIS_URL": redis_url,
           "FIXGATE_REDIS_PREFIX": prefix, "FIXGATE_ENGINE_LEASE_S": "3"}  # fmt: skip
    env.pop("FIXGATE_ROUTING_URL", None)
    total = sum(len(b) for b in batches)
    ports = [free_port() for _ in range(n)]
    procs = []
    for i, port in enumerate(ports):
        with open(log_dir / f"engine-{label}-{n}-{i}.log", "ab") as out:
            procs.append(subprocess.Popen(
                [FIXGATE, "engine"], env={**env, "FIXGATE_ENGINE_PORT": str(port)},
                stdout=out, stderr=out,
            ))  # fmt: skip
    samples: list[tuple[float, float, float, list[float], float]] = []
    try:
        _wait(lambda: all(_ready(p) for p in ports), 120, "engines ready")

        def split() -> bool:
            held = [scrape(p).get("fixgate_engine_shards", 0.0) for p in ports]
            return all(held) and sum(held) == DEFAULT_SHARDS

        _wait(split, 60, "the shards split between the engines")

        async def write() -> None:  # the positions entries only: the engines' whole input
            client = await connect(redis_url)
            await write_backlog(client, prefix, batches, live=False)
            await client.aclose()

        asyncio.run(write())
        deadline = time.monotonic() + a.timeout
        while time.monotonic() < deadline:
            metrics = [scrape(p) for p in ports]
            done = [_sum(m, "fixgate_engine_fixes_total{") for m in metrics]
            events = sum(_sum(m, "fixgate_engine_events_total{") for m in metrics)
            cpu = sum(_cpu_s(p.pid) for p in procs)
            samples.append((time.monotonic(), sum(done), events, done, cpu))
            if sum(done) >= total:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(
                f"backlog not done in {a.timeout} s: {samples[-1][1]:,.0f}/{total:,}"
            )
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)

        async def drop() -> None:
            client = await connect(redis_url)
            await _drop(client, prefix)
            await client.aclose()

        asyncio.run(drop())
    if samples[0][1] >= 0.5 * total:
        raise RuntimeError("half the backlog was done while it was written: use a larger --fixes")
    first = samples[0]  # the backlog is all there: every engine works from here on
    last = next(s for s in samples if s[1] >= 0.95 * total)
    seconds = max(1e-3, last[0] - first[0])
    done = last[1] - first[1]
    return Run(label, n, done / seconds, seconds, (last[2] - first[2]) / seconds,
               [(b - a_) / seconds for a_, b in zip(first[3], last[3], strict=True)],
               last[4] - first[4])  # fmt: skip


def engine_mode(a: argparse.Namespace) -> None:
    import psycopg

    settings = Settings()
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    db_url = make_database(admin, name)
    log_dir = Path(tempfile.mkdtemp(prefix="fixgate-bench-scale-"))
    counts = [int(n) for n in a.engines.split(",")]
    targets = [("redis", settings.redis_url)] + (
        [("cluster", a.cluster_url)] if a.cluster_url else []
    )
    try:
        register_all(db_url, [f"sc-{i}" for i in range(a.devices)])
        asyncio.run(setup_database(db_url, a))
        batches = backlog(a)
        total = sum(len(b) for b in batches)
        print(f"backlog: {total:,} fixes of {a.devices:,} devices (each on a trip), "
              f"{a.fences:,} geofences, {DEFAULT_SHARDS} shards; {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        runs: list[Run] = []
        floors: dict[str, float] = {}
        for label, url in targets:
            floors[label] = asyncio.run(
                bare_floor(url, f"benchfloor{uuid.uuid4().hex[:6]}:", batches)
            )
            print(
                f"  [{label}] floor: one bare consumer reads {floors[label]:,.0f} fixes/s",
                flush=True,
            )
            for n in counts:
                run = engine_run(a, db_url, url, label, n, batches, log_dir)
                runs.append(run)
                shares = ", ".join(f"{r:,.0f}" for r in run.per_engine)
                print(f"  [{label}] {n} engine(s): {run.rate:,.0f} fixes/s evaluated "
                      f"({run.events:,.0f} events/s; per engine {shares}) over {run.seconds:.1f} s;"
                      f" the engines used {run.cpu_s / run.seconds:.2f} cores,"
                      f" {run.per_cpu_s:,.0f} fixes per CPU second; load average"
                      f" {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print("\nredis     engines  fixes/s  x one  cores used  fixes/CPU-s  events/s  floor fixes/s")
    for r in runs:
        one = next(x.rate for x in runs if x.label == r.label and x.engines == counts[0])
        print(f"{r.label:9} {r.engines:>7} {r.rate:>8,.0f} {r.rate / one:>6.2f}"
              f" {r.cpu_s / r.seconds:>11.2f} {r.per_cpu_s:>12,.0f} {r.events:>9,.0f}"
              f" {floors[r.label]:>14,.0f}")  # fmt: skip


def aof_mode(a: argparse.Namespace) -> None:
    import redis

    settings = Settings()
    client = redis.Redis.from_url(settings.redis_url)
    rates: dict[str, list[float]] = {"no": [], "yes": []}
    try:
        for setting in ("no", "yes") * a.repeat:
            client.config_set("appendonly", setting)
            if setting == "yes":
                client.config_set("appendfsync", "everysec")
                _wait(lambda: not int(client.info("persistence")["aof_rewrite_in_progress"]),
                      120, "AOF rewrite")  # fmt: skip
            out = subprocess.run(
                [sys.executable, "bench/ingest.py", "--mode", "mqtt", "--fixes", str(a.fixes), "--no-bare"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            found = re.search(r"stored ([\d,]+) fixes/s", out.stdout)
            assert found, out.stdout[-2000:]
            rate = float(found.group(1).replace(",", ""))
            rates[setting].append(rate)
            print(f"  appendonly {setting:3}: MQTT QoS 1 {rate:,.0f} fixes/s stored", flush=True)
    finally:
        client.config_set("appendonly", "yes")
        client.close()
    off, on = rates["no"], rates["yes"]
    print(f"\nAOF off: {', '.join(f'{r:,.0f}' for r in off)} fixes/s; AOF on (everysec): "
          f"{', '.join(f'{r:,.0f}' for r in on)} fixes/s; on/off per pair: "
          f"{', '.join(f'{b / x:.2f}' for x, b in zip(off, on, strict=True))}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=("engine", "aof"), default="engine")
    p.add_argument("--engines", default="1,2,4", help="engine process counts, comma separated")
    p.add_argument("--fixes", type=int, default=300_000)
    p.add_argument("--devices", type=int, default=2000)
    p.add_argument("--fences", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--cluster-url", default=None, help="also run against this Redis Cluster node")
    p.add_argument("--repeat", type=int, default=2, help="aof: off/on pairs")
    a = p.parse_args()
    if a.mode == "engine":
        engine_mode(a)
    else:
        aof_mode(a)


if __name__ == "__main__":
    main()
