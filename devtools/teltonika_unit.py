"""A simulated Teltonika truck (an FMB-style unit): Codec 8 Extended over TCP.

Like a real unit it records a fix every period whether or not it is connected, keeps the
records in its memory, and sends them in batches (every 5-10 s here): one AVL packet, then
it waits for the server's four-byte record count and deletes exactly that many records
only when the count matches. Anything else (no answer, a wrong count, a closed
connection) keeps the records, and the unit logs in again and resends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from devtools.trackers import Record, teltonika_login, teltonika_packet

log = logging.getLogger("simulate")

BATCH_EVERY_S: Final = (5.0, 10.0)
"""Between two packets: FMB units send every few seconds while moving (their "send
period"), drawn per packet."""
MAX_BATCH_RECORDS: Final = 50
"""Records per packet at most (Codec 8E counts them in one byte; units send tens)."""
MAX_STORED_RECORDS: Final = 10_000
"""A unit's record memory; past it the oldest are overwritten, as on the device."""
ACK_TIMEOUT_S: Final = 30.0
"""The gateway answers once the records are durable (committed or spooled, ~1 s); beyond
this the unit gives up on the connection and resends."""
LOGIN_TIMEOUT_S: Final = 10.0
IO_IGNITION: Final = 239
IO_EXTERNAL_VOLTAGE_MV: Final = 66
IO_ODOMETER_M: Final = 16


def imei_for(device_id: str) -> str:
    """A stable 15-digit IMEI for a simulated device: 14 digits from its id and the Luhn
    check digit (3GPP TS 23.003), so it looks like a real one."""
    body = "35" + str(int(hashlib.sha256(device_id.encode()).hexdigest(), 16))[:12]
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


@dataclass
class UnitMemory:
    """The records a unit holds until the server acknowledges them."""

    records: deque[Record] = field(default_factory=lambda: deque(maxlen=MAX_STORED_RECORDS))
    odometer_m: float = 0.0
    acked: int = 0
    resends: int = 0
    """Packets sent again after a connection failed before their acknowledgement."""
    in_flight: bool = False
    """A packet was sent and not acknowledged yet."""

    def record(
        self, now: float, lat: float, lon: float, speed_mps: float, heading: float, moved_m: float
    ) -> None:
        self.odometer_m += moved_m
        self.records.append(
            Record(
                time=datetime.fromtimestamp(round(now, 3), UTC),
                lat=lat,
                lon=lon,
                altitude_m=40,
                angle_deg=round(heading) % 360,
                satellites=9,
                speed_kmh=round(speed_mps * 3.6),
                io={
                    IO_IGNITION: 1,
                    IO_EXTERNAL_VOLTAGE_MV: 13_800,
                    IO_ODOMETER_M: round(self.odometer_m),
                },
            )
        )


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    memory: UnitMemory,
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """Send batches until stop (then one last batch); raise ConnectionError on any failure."""
    while True:
        stopping = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*BATCH_EVERY_S))
            stopping = True
        batch = list(memory.records)[:MAX_BATCH_RECORDS]
        if batch:
            writer.write(teltonika_packet(batch))
            memory.in_flight = True
            await writer.drain()
            try:
                ack = await asyncio.wait_for(reader.readexactly(4), ACK_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError) as e:
                raise ConnectionError(f"no acknowledgement ({e!r})") from None
            count = int.from_bytes(ack, "big")
            if count != len(batch):
                raise ConnectionError(f"acknowledged {count} of {len(batch)} records")
            for _ in range(count):
                memory.records.popleft()
            memory.acked += count
            memory.in_flight = False
        if stopping:
            return


async def session(
    imei: str,
    host: str,
    port: int,
    memory: UnitMemory,
    stop: asyncio.Event,
    rng: random.Random,
    connect_timeout_s: float,
) -> None:
    """One connection: login, then batches; returns at stop, raises OSError/ConnectionError."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout_s)
    try:
        writer.write(teltonika_login(imei))
        await writer.drain()
        try:
            answer = await asyncio.wait_for(reader.readexactly(1), LOGIN_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError):
            raise ConnectionError("no answer to the IMEI login") from None
        if answer != b"\x01":
            raise ConnectionError(f"IMEI {imei} refused (is the device registered and enabled?)")
        if memory.in_flight:  # the last connection died before the acknowledgement
            memory.resends += 1
        await _exchange(reader, writer, memory, stop, rng)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
