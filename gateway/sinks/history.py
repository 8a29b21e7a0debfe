"""The asyncio shell around the ingest core: closes batches on time, makes them durable
(TimescaleDB, or the disk spool while it is away), acknowledges them, then hands live
positions to Redis.

History and live positions are decoupled: Redis being slow or away never holds back
history. Live updates coalesce per device (newest fix wins) while Redis is away, so that
backlog is bounded by the number of devices, not by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import asyncpg
import msgspec

from devices.fix import Fix
from gateway import metrics
from gateway.flow import Flow
from gateway.logs import RateLimitedLog
from gateway.retry import RETRY_BACKOFF_S, backoff
from gateway.sinks.health import SinkHealth
from gateway.sinks.live import LiveUpdater
from gateway.sinks.postgres import write_fixes
from gateway.sinks.spool import Spool
from ingest.pipeline import Batch, Ingest

log = logging.getLogger(__name__)

_unstorable_log = RateLimitedLog(log)

UNSTORABLE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # asyncpg refusing to encode a value for its column (float4 overflow...)
    OverflowError,  # ... or an integer too large for it (smallint)
    TypeError,
    asyncpg.DataError,  # the server's class 22: a value it will not take
    asyncpg.IntegrityConstraintViolationError,  # class 23: a constraint a row breaks
)
"""Errors that say the rows are wrong, not the database: retrying cannot help, and the
batch would block the spool forever. The filter keeps such values out (`ingest.filters`);
this is the second line, for whatever it does not know about (a spool written by an
older, laxer fixgate; a column constraint added later)."""
UNSTORABLE = "unstorable"
"""The `fixgate_fixes_rejected_total` reason of a fix dropped for such an error."""
REPLAY_PROBE_S = (0.1, 0.25, 0.5, 1.0)
REPLAY_BATCH_FIXES = 20_000
"""Spooled records are merged up to this many fixes per database write: an outage spools
one record per (small) batch, and a transaction each made the replay crawl beside live
traffic. Four full live batches (`FIXGATE_BATCH_MAX_FIXES` is 5,000 by default)."""


class HistoryWriter:
    """Makes each batch durable, then acknowledges it: committed to TimescaleDB, or, when
    the database fails or takes longer than `spool_after_s`, fsynced to the disk spool.

    While the database is down, batches go straight to the spool; the replayer (`replay`)
    probes the database with the oldest spooled batch and, once that works, new batches go
    to the database again while the replayer drains the rest. A batch the spool cannot
    take (full, or no spool) stays in memory, unacknowledged, and is retried; the queue it
    holds keeps the listeners paused (`Flow`), so nothing more is accepted meanwhile.
    """

    def __init__(
        self,
        ingest: Ingest,
        pool: asyncpg.Pool,
        flow: Flow,
        live: LiveUpdater,
        max_concurrent: int,
        spool: Spool | None = None,
        spool_after_s: float = 5.0,
    ) -> None:
        self.ingest = ingest
        self.pool = pool
        self.flow = flow
        self.live = live
        self.spool = spool
        self.spool_after_s = spool_after_s
        self.database = SinkHealth("timescaledb")
        metrics.FIXES_REJECTED.labels(UNSTORABLE)  # shown at 0 from the start
        self._counts = metrics.IngestCountsExport(ingest.counts)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._kick = asyncio.Event()
        self._spooled = asyncio.Event()
        self._writing: set[asyncio.Task[None]] = set()
        self._in_flight_rows = 0

    @property
    def database_ok(self) -> bool:
        return self.database.ok

    def can_accept(self) -> bool:
        """Somewhere durable to put the next batch: the database, or room in the spool."""
        return self.database.ok or (self.spool is not None and not self.spool.full)

    def submitted(self) -> None:
        """Listeners call this after `ingest.submit`: wakes the loop, applies backpressure."""
        self._kick.set()
        self.flow.update(self.ingest.pending + self._in_flight_rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Close batches when full or old; on `stop`, write what is left and return."""
        while True:
            deadline = self.ingest.next_deadline()
            if self.ingest.ready(time.time()):
                await self._start_write()
                continue
            if stop.is_set():
                break
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._race(stop), timeout)
            self._kick.clear()
        await self._start_write()
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)

    async def _race(self, stop: asyncio.Event) -> None:
        kick, stopped = asyncio.ensure_future(self._kick.wait()), asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((kick, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            kick.cancel()
            stopped.cancel()

    async def _start_write(self) -> None:
        self._counts.sync()
        batch = self.ingest.take()
        if batch is None:
            return
        await self._slots.acquire()
        self._in_flight_rows += len(batch.rows)
        task = asyncio.create_task(self._write(batch))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, batch: Batch) -> None:
        try:
            await self._make_durable(batch.rows)
            for ack in batch.acks:
                ack()
            self.live.offer(batch.live)
        finally:
            self._in_flight_rows -= len(batch.rows)
            self._slots.release()
            self.flow.update(self.ingest.pending + self._in_flight_rows)

    async def _make_durable(self, rows: list[Fix]) -> None:
        """Until the rows are committed or spooled: a batch is never dropped."""
        attempt = 0
        while True:
            spool_has_room = self.spool is not None and not self.spool.full
            # A database write is bounded by `spool_after_s` only when the spool can take over.
            if (self.database.ok or not spool_has_room) and await self._store(
                rows, self.spool_after_s if spool_has_room else None
            ):
                return
            if self.spool is not None:
                try:
                    if await self.spool.append(rows):
                        self._spooled.set()
                        return
                except Exception as e:
                    log.error("spool: write failed (%r); keeping the batch in memory", e)
            await asyncio.sleep(backoff(RETRY_BACKOFF_S, attempt))
            attempt += 1

    async def _store(self, rows: list[Fix], timeout_s: float | None) -> bool:
        """One attempt to commit the rows to TimescaleDB; True when they are in (all but
        the rows the database refuses for what they hold, which are dropped and counted)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                async with self.pool.acquire() as conn:
                    stored = await write_fixes(conn, rows, datetime.now(UTC))
        except UNSTORABLE_ERRORS as e:
            return await self._store_around(rows, e, timeout_s)
        except Exception as e:
            # Any other failure, also asyncpg's own state errors when a connection dies
            # mid-way: the batch is kept and goes to the spool or is retried, never dropped.
            self.database.failed(e, "batches go to the spool" if self.spool else "retrying")
            return False
        done = time.time()
        metrics.WRITE_SECONDS.labels("timescaledb").observe(time.perf_counter() - started)
        metrics.FIXES_STORED.inc(stored)
        metrics.FIXES_DUPLICATE.inc(len(rows) - stored)
        metrics.BATCH_SIZE.observe(len(rows))
        metrics.observe_latencies(rows, done)  # one bump per bucket per batch
        self.database.worked()
        return True

    async def _store_around(
        self, rows: list[Fix], error: Exception, timeout_s: float | None
    ) -> bool:
        """The database refused these rows for a value one of them holds: store the rest.
        Halving finds each refused row in log2(len) writes per row; alone, it is dropped,
        counted as rejected `unstorable`, and logged (a bounded rate per device)."""
        if len(rows) == 1:
            fix = rows[0]
            metrics.FIXES_REJECTED.labels(UNSTORABLE).inc()
            _unstorable_log.warning(
                (fix.device_id,), time.monotonic(), "timescaledb: fix of %s at %s not storable (%s: %s): %s",
                fix.device_id, fix.time.isoformat(), type(error).__name__, error, msgspec.json.encode(fix).decode(),
            )  # fmt: skip
            return True
        half = len(rows) // 2
        return await self._store(rows[:half], timeout_s) and await self._store(
            rows[half:], timeout_s
        )

    async def replay(self, stop: asyncio.Event, until_empty: bool = False) -> None:
        """Move spooled batches into TimescaleDB, oldest first, until stopped (or, with
        `until_empty`, until the spool is empty or the database fails)."""
        if self.spool is None:
            return
        attempt = 0
        while not stop.is_set():
            try:
                # The first write after an outage is the probe: one record, kept cheap.
                found = await self.spool.peek(
                    REPLAY_BATCH_FIXES if attempt == 0 and self.database.ok else 1
                )
            except OSError as e:
                log.error("spool: cannot read (%s); retrying", e)
                await asyncio.sleep(RETRY_BACKOFF_S[-1])
                continue
            if found is None:
                if until_empty:
                    return
                self._spooled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._spooled.wait(), 1.0)
                continue
            cursor, rows = found
            if not await self._store(rows, self.spool_after_s):
                if until_empty:
                    return
                # The replayer is the database's probe: keep it short, a refused connection is cheap.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff(REPLAY_PROBE_S, attempt))
                attempt += 1
                continue
            attempt = 0
            await self.spool.consume(cursor)
