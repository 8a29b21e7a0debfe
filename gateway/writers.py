"""The asyncio shell around the ingest core: closes batches on time, writes them to
TimescaleDB (bounded concurrency), acknowledges them, then hands live positions to Redis.

History and live positions are decoupled: Redis being slow or away never holds back
history. Live updates coalesce per device (newest fix wins) while Redis is away, so that
backlog is bounded by the number of devices, not by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

from devices.fix import Fix
from ingest import metrics
from ingest.pg_writer import write_fixes
from ingest.pipeline import Batch, Ingest
from ingest.redis_writer import LiveWriter

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Flow:
    """Backpressure: listeners wait on `open` while too many fixes are unwritten."""

    def __init__(self, high_water: int) -> None:
        self.high_water = high_water
        self.low_water = high_water // 2
        self.open = asyncio.Event()
        self.open.set()
        self.on_change: list[Callable[[bool], None]] = []
        """Called with the new state when the flow opens or closes (listeners pause reads)."""

    def update(self, queued: int) -> None:
        metrics.QUEUE_DEPTH.set(queued)
        if queued >= self.high_water and self.open.is_set():
            self.open.clear()
            for changed in self.on_change:
                changed(False)
        elif queued <= self.low_water and not self.open.is_set():
            self.open.set()
            for changed in self.on_change:
                changed(True)


class HistoryWriter:
    def __init__(self, ingest: Ingest, pool: asyncpg.Pool, flow: Flow, live: LiveUpdater, max_concurrent: int) -> None:
        self.ingest = ingest
        self.pool = pool
        self.flow = flow
        self.live = live
        self._slots = asyncio.Semaphore(max_concurrent)
        self._kick = asyncio.Event()
        self._writing: set[asyncio.Task[None]] = set()
        self._in_flight_rows = 0
        self.database_ok = True

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
            stored = await self._write_durably(batch.rows)
            done = time.time()
            metrics.FIXES_STORED.inc(stored)
            metrics.FIXES_DUPLICATE.inc(len(batch.rows) - stored)
            metrics.BATCH_SIZE.observe(len(batch.rows))
            metrics.observe_latencies(batch.rows, done)  # perf: one bump per bucket per batch
            for ack in batch.acks:
                ack()
            self.live.offer(batch.live.values())
        finally:
            self._in_flight_rows -= len(batch.rows)
            self._slots.release()
            self.flow.update(self.ingest.pending + self._in_flight_rows)

    async def _write_durably(self, rows: list[Fix]) -> int:
        """Write until it works: a batch is never dropped. (The disk spool is a later step.)"""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                async with self.pool.acquire() as conn:
                    stored = await write_fixes(conn, rows, datetime.now(UTC))
                metrics.WRITE_SECONDS.labels("timescaledb").observe(time.perf_counter() - started)
                if not self.database_ok:
                    log.info("timescaledb: writes work again")
                self.database_ok = True
                return stored
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as e:
                metrics.WRITE_ERRORS.labels("timescaledb").inc()
                if self.database_ok:
                    log.warning("timescaledb: batch write failed, retrying: %s", e)
                self.database_ok = False
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
                attempt += 1


class LiveUpdater:
    def __init__(self, writer: LiveWriter) -> None:
        self.writer = writer
        self._pending: dict[str, Fix] = {}
        self._kick = asyncio.Event()
        self.redis_ok = True

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def offer(self, fixes: object) -> None:
        pending = self._pending
        for fix in fixes:  # type: ignore[attr-defined]
            current = pending.get(fix.device_id)
            if current is None or fix.time > current.time:
                pending[fix.device_id] = fix
        if pending:
            self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not (stop.is_set() and not self._pending):
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 0.5)
                self._kick.clear()
                continue
            taken, self._pending = self._pending, {}
            started = time.perf_counter()
            try:
                moved = await self.writer.write(taken.values())
            except (OSError, redis.exceptions.RedisError) as e:
                metrics.WRITE_ERRORS.labels("redis").inc()
                if self.redis_ok:
                    log.warning("redis: live update failed, will catch up: %s", e)
                self.redis_ok = False
                self.offer(taken.values())  # back in, newest still wins
                if stop.is_set():
                    log.warning("redis: %d live positions not written at shutdown", len(self._pending))
                    return
                await asyncio.sleep(RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)])
                attempt += 1
                continue
            attempt = 0
            if not self.redis_ok:
                log.info("redis: live updates work again")
            self.redis_ok = True
            metrics.WRITE_SECONDS.labels("redis").observe(time.perf_counter() - started)
            metrics.LIVE_UPDATES.inc(moved)


def redis_client(url: str) -> aioredis.Redis:
    # Short timeouts: a Redis that does not answer must not stall live updates for long.
    return aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10)
