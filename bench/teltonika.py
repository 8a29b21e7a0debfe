"""bench/ingest --mode teltonika: Teltonika units as fleets run them, against a real gateway.

--connections units (default 1,000) log in by IMEI, then each sends Codec 8E packets of
10-50 records (a random size per packet, as units batch what they buffered) and waits for
the four-byte record count before sending the next, as a real unit does before deleting
its records. Without --rate each unit sends its next packet as soon as the last is
acknowledged (sustained records/s); with --rate the units together offer that many records
a second (each unit paced), where receive-to-acknowledged latency means something.

Figures: records/s acknowledged (the acknowledgement comes only after commit or spool, so
it is records/s stored), p50/p99 send-to-acknowledged per packet measured by the units,
and lost/duplicated records counted in the database against what was acknowledged. The
units run in this process's event loop, on the same cores as the gateway.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from devtools.trackers import Record, teltonika_login, teltonika_packet

MIN_RECORDS, MAX_RECORDS = 10, 50
"""Records per packet: FMB units send what they buffered since the last send (1 s to
minutes of records at 1 Hz), bounded by their own packet size."""


def imeis(n: int) -> list[str]:
    return [f"35630704{i:07d}" for i in range(n)]


@dataclass
class Unit:
    imei: str
    t0: datetime
    acked: int = 0
    latencies: list[float] = field(default_factory=list)
    next_record: int = 0

    def packet(self, rng: random.Random) -> tuple[bytes, int]:
        n = rng.randint(MIN_RECORDS, MAX_RECORDS)
        first = self.next_record
        self.next_record += n
        records = [
            Record(
                time=self.t0 + timedelta(seconds=k), lat=50.0 + (k % 1000) * 1e-4, lon=10.0,
                io={239: 1, 66: 12_500, 16: 1000 * k},
            )
            for k in range(first, first + n)
        ]  # fmt: skip
        return teltonika_packet(records), n


async def run_unit(
    unit: Unit, port: int, until: float, records_per_s: float, rng: random.Random
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(teltonika_login(unit.imei))
        if await reader.readexactly(1) != b"\x01":
            raise RuntimeError(f"{unit.imei} refused")
        next_at = time.monotonic()
        if records_per_s:  # units wake at their own moments, not all in the same tick
            next_at += rng.uniform(0, MAX_RECORDS / records_per_s)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        while time.monotonic() < until:
            data, n = unit.packet(rng)
            sent = time.monotonic()
            writer.write(data)
            ack = int.from_bytes(await reader.readexactly(4), "big")
            unit.latencies.append(time.monotonic() - sent)
            if ack != n:
                raise RuntimeError(f"{unit.imei}: ack {ack} for {n} records")
            unit.acked += n
            if records_per_s:
                next_at += n / records_per_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        writer.close()


async def run_units(units: list[Unit], port: int, duration_s: float, rate: float) -> float:
    rng = random.Random(7)
    per_unit = rate / len(units) if rate else 0.0
    started = time.monotonic()
    until = started + duration_s
    await asyncio.gather(*(run_unit(u, port, until, per_unit, rng) for u in units))
    return time.monotonic() - started


@dataclass
class TeltonikaResult:
    records: int
    seconds: float
    p50_ms: float
    p99_ms: float
    lost: int
    duplicated: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def run(
    port: int, db_url: str, connections: int, duration_s: float, rate: float
) -> TeltonikaResult:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    units = [Unit(imei, t0) for imei in imeis(connections)]
    seconds = asyncio.run(run_units(units, port, duration_s, rate))
    acked = sum(u.acked for u in units)
    latencies = sorted(x for u in units for x in u.latencies)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT (device_id, time)) FROM positions"
        ).fetchone()
    assert row is not None
    total, distinct = row
    return TeltonikaResult(
        records=acked,
        seconds=seconds,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)],
        lost=max(0, acked - distinct),
        duplicated=total - distinct,
    )
