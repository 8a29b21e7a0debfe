"""Fix evaluations per second in the engine core: 10,000 devices against 10,000 geofences.

    python -m bench.geofence [--devices 10000] [--fences 10000] [--batches 20]

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

from devices.fix import Fix
from geofence.config import EngineConfig
from geofence.engine import DeviceJob, evaluate
from geofence.geodesy import metres_per_degree
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


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--fences", type=int, default=10_000)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
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
