"""The dispatcher console at fleet scale (issue 22 item 8), shared by its browser test and
`bench/console.py`: a tenant's fleet of technicians with devices, each device a TCP NMEA
connection to a real gateway sending a fix a second, and what the console page reports
while it draws them: how old each drawn position was (the page's own `fixgateConsole`
probe: the fix time to the frame that drew it) and the main thread's long tasks (a
PerformanceObserver of `longtask` entries, installed before the page's scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from devices.nmea_write import rmc_gga
from devices.tcp_nmea import login_sentence
from gateway.registry.tokens import hash_token

LONG_TASK_PROBE = """
window.__fixgateLongTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__fixgateLongTasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""
"""Installed before any page script (Playwright's add_init_script): every main-thread task
over 50 ms, as [start, duration] in ms of the page's clock."""
TASK_LIMIT_MS = 200.0
"""The issue's bound: no main-thread task over 200 ms while the fleet moves."""
LAG_LIMIT_MS = 1000.0
"""The issue's bound: an update appears within a second."""
CONNECT_BATCH = 100
"""Connections opened at once: a gateway's accept queue is not a thousand deep."""
FLEET_TOKEN = "fleet-scale-token-0000000000000000"
"""Every simulated device's token (one salted hash each): the fleet is the bench's own."""
KNOT_MPS = 1852 / 3600
METERS_PER_DEGREE = 111_195.0


async def seed_fleet(
    pg: asyncpg.Connection, tenant: str, count: int, prefix: str = "fleet"
) -> list[str]:
    """`count` devices and Available technicians, one each, in two statements; the ids."""
    devices = [f"{prefix}-{n:05d}" for n in range(count)]
    await pg.copy_records_to_table(
        "devices", columns=["id", "tenant_id", "kind", "token_hash"],
        records=[(d, tenant, "service_van", hash_token(FLEET_TOKEN)) for d in devices],
    )  # fmt: skip
    await pg.copy_records_to_table(
        "technicianmaster",
        columns=["tenant_id", "techniciancode", "firstname", "lastname", "availabilitystatus",
                 "device_id"],
        records=[(tenant, f"T-{d}", "Tech", d[-5:], "Available", d) for d in devices],
    )  # fmt: skip
    return devices


@dataclass
class Vehicle:
    device: str
    lat: float
    lon: float
    heading: float
    writer: asyncio.StreamWriter

    def step(self, speed_mps: float, rng: random.Random) -> None:
        self.heading = (self.heading + rng.uniform(-20, 20)) % 360
        d = speed_mps / METERS_PER_DEGREE
        self.lat += d * math.cos(math.radians(self.heading))
        self.lon += d * math.sin(math.radians(self.heading)) / math.cos(math.radians(self.lat))


class NmeaFleet:
    """Every device a TCP NMEA connection to the gateway, logged in with its token."""

    def __init__(self, vehicles: list[Vehicle]) -> None:
        self.vehicles = vehicles
        self.sent = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(
        cls, port: int, devices: Sequence[str], center: tuple[float, float], seed: int = 7
    ) -> AsyncIterator[NmeaFleet]:
        rng = random.Random(seed)
        vehicles: list[Vehicle] = []
        try:
            for first in range(0, len(devices), CONNECT_BATCH):
                batch = devices[first : first + CONNECT_BATCH]
                pairs = await asyncio.gather(
                    *(asyncio.open_connection("127.0.0.1", port) for _ in batch)
                )
                for device, (_, writer) in zip(batch, pairs, strict=True):
                    writer.write(login_sentence(device, FLEET_TOKEN))
                    lat = center[0] + rng.uniform(-0.02, 0.02)
                    lon = center[1] + rng.uniform(-0.03, 0.03)
                    vehicles.append(Vehicle(device, lat, lon, rng.uniform(0, 360), writer))
            yield cls(vehicles)
        finally:
            for v in vehicles:
                v.writer.close()

    async def drive(self, seconds: float, speed_mps: float = 9.0, seed: int = 11) -> None:
        """A fix a second from every vehicle, spread evenly over each second, stamped with
        the time it is sent (NMEA: to the centisecond)."""
        rng = random.Random(seed)
        n = len(self.vehicles)
        start = time.monotonic()
        tick = 0
        while time.monotonic() - start < seconds:
            second = start + tick
            for i, v in enumerate(self.vehicles):
                due = second + i / n
                wait = due - time.monotonic()
                if wait > 0.002:
                    await asyncio.sleep(wait)
                v.step(speed_mps, rng)
                v.writer.write(rmc_gga(datetime.now(UTC), v.lat, v.lon,
                                       speed_mps / KNOT_MPS, v.heading))  # fmt: skip
                self.sent += 1
            await asyncio.gather(*(v.writer.drain() for v in self.vehicles))
            tick += 1


@dataclass(frozen=True)
class ConsoleFigures:
    technicians: int
    fixes_sent: int
    seconds: float
    updates_drawn: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    longest_task_ms: float
    """The longest main-thread task while the fleet moved."""
    tasks_over_limit: int
    load_longest_task_ms: float
    """The longest task while the page loaded the fleet (before the moves)."""

    def lines(self) -> list[str]:
        return [
            f"fleet: {self.technicians} technicians, {self.fixes_sent} fixes sent through the"
            f" gateway in {self.seconds:.0f} s ({self.fixes_sent / self.seconds:.0f}/s)",
            f"console: {self.updates_drawn} position updates drawn"
            f" ({self.updates_drawn / self.seconds:.0f}/s); age when drawn (fix time to frame)"
            f" p50 {self.lag_p50_ms:.0f} ms, p99 {self.lag_p99_ms:.0f} ms,"
            f" max {self.lag_max_ms:.0f} ms (bound {LAG_LIMIT_MS:.0f} ms)",
            f"main thread: longest task {self.longest_task_ms:.0f} ms while moving,"
            f" {self.tasks_over_limit} over {TASK_LIMIT_MS:.0f} ms; while loading the fleet"
            f" {self.load_longest_task_ms:.0f} ms",
        ]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(page: Any, fleet: NmeaFleet, seconds: float) -> ConsoleFigures:
    """Drive the fleet for `seconds` while the console (`page`, loaded, its probe installed)
    draws it; what the page saw."""
    technicians = int(await page.evaluate("window.fixgateConsole.technicians()"))
    drawn_before = int(await page.evaluate("window.fixgateConsole.drawn()"))
    started_ms = float(await page.evaluate("performance.now()"))
    sent_before = fleet.sent
    began = time.monotonic()
    await fleet.drive(seconds)
    elapsed = time.monotonic() - began
    await asyncio.sleep(1.0)  # the last second's fixes reach the page
    lags = [float(x) for x in await page.evaluate(f"window.fixgateConsole.lags({drawn_before})")]
    tasks = await page.evaluate("window.__fixgateLongTasks")
    moving = [d for start, d in tasks if start >= started_ms]
    loading = [d for start, d in tasks if start < started_ms]
    return ConsoleFigures(
        technicians=technicians, fixes_sent=fleet.sent - sent_before, seconds=elapsed,
        updates_drawn=len(lags), lag_p50_ms=percentile(lags, 0.5),
        lag_p99_ms=percentile(lags, 0.99), lag_max_ms=max(lags, default=float("nan")),
        longest_task_ms=max(moving, default=0.0),
        tasks_over_limit=sum(1 for d in moving if d > TASK_LIMIT_MS),
        load_longest_task_ms=max(loading, default=0.0),
    )  # fmt: skip
