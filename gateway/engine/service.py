"""The engine process (`fixgate engine`): startup, run, drain.

Startup serves health, opens PostgreSQL and Redis, loads every tenant's geofences and the
open trips, LISTENs for changes, joins the consumer group on `{prefix}positions`, then
runs: read entries (first its own unacknowledged ones, then new ones), wait while an older
entry is in another engine's hands (stream order across engines), evaluate them in one
batch, commit state + events per device atomically (`store`), acknowledge; take over
entries a dead consumer left pending (XAUTOCLAIM); reload what NOTIFY says changed, and
everything periodically. SIGTERM finishes the batch in hand, flushes ETA predictions
and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram
from redis.exceptions import ResponseError

from devices.fix import Fix
from gateway.collector import quiet_gc
from gateway.config import Settings
from gateway.engine import fences as fence_db
from gateway.engine import trips as trip_db
from gateway.engine.eta import EtaRecorder
from gateway.engine.route_source import RouteFn, route_source
from gateway.engine.settings import EngineSettings
from gateway.engine.store import StateStore
from gateway.http import serve_http
from gateway.sinks.live import decode_fixes
from geofence.engine import DeviceJob, DeviceResult, evaluate, route_ready, sync_trips
from geofence.events import TripArrived, TripUpdate, encode_event
from geofence.index import FenceIndex
from geofence.trips import RouteRequest, TripSpec, to_datetime

log = logging.getLogger("engine")

MAX_CAS_ATTEMPTS: Final = 10
"""Re-evaluations of a device whose state another engine moved meanwhile; each attempt
skips the fixes the other engine covered, so two or three always suffice in practice."""
READ_BLOCK_MS: Final = 1000
"""XREADGROUP blocks at most this long, so stop and claims are looked at every second."""
MAX_ROUTING_TASKS: Final = 64
"""Route requests in flight at once (OSRM answers in milliseconds; this bounds a burst)."""
ORDER_POLL_S: Final = 0.005
"""How often a batch waiting for older entries in another's hands looks again."""
ORDER_LOOK_AHEAD: Final = 100
"""Older pending entries looked at per check, oldest first (the ones in hand are among them)."""

FIXES = Counter("fixgate_engine_fixes_total", "Fixes read from the positions stream", ["result"])
EVENTS = Counter("fixgate_engine_events_total", "Events written to the events stream", ["type"])
ORDER_WAITS = Counter(
    "fixgate_engine_order_waits_total",
    "Looks again while an older stream entry was in another engine's hands",
)
CONFLICTS = Counter(
    "fixgate_engine_cas_conflicts_total", "State commits refused (another engine moved the device)"
)
_EVENTS_BY_TYPE: dict[type, Any] = {}
"""EVENTS' child per event type, resolved once (labels() per event is a measurable cost)."""
FIXES_EVALUATED = FIXES.labels("evaluated")
FIXES_LATE = FIXES.labels("late")
BATCH_SECONDS = Histogram(
    "fixgate_engine_batch_seconds", "Read-to-acknowledged time of a batch of entries"
)
EVENT_LAG = Histogram(
    "fixgate_engine_event_lag_seconds",
    "Fix received by the gateway -> its events committed to the stream",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STREAM_WAIT = Histogram(
    "fixgate_engine_stream_wait_seconds",
    "Positions entry appended by the gateway -> read by this engine (the consumer's backlog)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Engine:
    def __init__(self, settings: Settings, es: EngineSettings) -> None:
        self.settings = settings
        self.es = es
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.ready = False
        self.indexes: dict[str, FenceIndex] = {}
        self.trips: dict[str, list[TripSpec]] = {}
        self.eta = EtaRecorder()
        self.route_fn: RouteFn | None = route_source(es.routing_url)
        config = es.core_config()
        if self.route_fn is None and config.routing_enabled:
            import msgspec

            config = msgspec.structs.replace(config, routing_enabled=False)
        self.config = config
        self.consumer = es.engine_consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.stream = f"{settings.redis_prefix}positions"
        self.routing_slots = asyncio.Semaphore(MAX_ROUTING_TASKS)
        self.in_hand: set[bytes] = set()
        """Ids of the entries this engine is handling now (a read batch, a claimed one)."""

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def not_ready(self) -> list[str]:
        return [] if self.ready else ["starting"]

    # ---- lifecycle --------------------------------------------------------------------

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        await self.startup()
        log.info("engine: running as consumer %s of group %s", self.consumer, self.es.engine_group)
        await self.stop.wait()
        await self.shutdown()

    async def startup(self) -> None:
        s, es = self.settings, self.es
        self.http = await serve_http(es.engine_host, es.engine_port, self.not_ready)
        log.info("engine: metrics on http://%s:%d/metrics", es.engine_host, es.engine_port)
        self.pool = await asyncpg.create_pool(s.database_url, min_size=1, max_size=4)
        self.redis = aioredis.from_url(s.redis_url, socket_timeout=10, socket_connect_timeout=5)
        self.store = StateStore(self.redis, s.redis_prefix)
        self.http_client: Any = None
        if self.route_fn is not None:
            import httpx

            self.http_client = httpx.AsyncClient()
        await self.reload_all()
        await self.listen()
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists already
            await self.redis.xgroup_create(self.stream, es.engine_group, id="$", mkstream=True)
        self.consume_task = self._spawn(self.consume(), "consume")
        self._spawn(self.claim_loop(), "claim")
        self._spawn(self.reload_loop(), "reload")
        self._spawn(self.eta_loop(), "eta-flush")
        quiet_gc()
        self.ready = True

    async def shutdown(self) -> None:
        log.info("engine: draining")
        self.ready = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self.consume_task), self.settings.shutdown_timeout_s
            )
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self.pool.acquire() as conn:
                await self.eta.flush(conn)
        await self.listener.close()
        self.http.close()
        if self.http_client is not None:
            await self.http_client.aclose()
        await self.redis.aclose()
        await self.pool.close()
        log.info("engine: stopped")

    # ---- reloads ------------------------------------------------------------------------

    async def listen(self) -> None:
        """A connection of its own for LISTEN (a pooled one would be handed to others)."""
        self.listener = await asyncpg.connect(self.settings.database_url)
        await self.listener.add_listener("fixgate_geofences", self._on_notify)
        await self.listener.add_listener("fixgate_trips", self._on_notify)

    async def reload_all(self) -> None:
        async with self.pool.acquire() as conn:
            fences = await fence_db.load_fences(conn)
            self.trips = await trip_db.engine_view(conn)
        self.indexes = {t: FenceIndex(f) for t, f in fences.items() if f}

    async def reload_tenant(self, tenant: str) -> None:
        async with self.pool.acquire() as conn:
            fences = (await fence_db.load_fences(conn, tenant=tenant))[tenant]
        if fences:
            self.indexes[tenant] = FenceIndex(fences)
        else:
            self.indexes.pop(tenant, None)
        log.info("engine: tenant %s has %d geofences", tenant, len(fences))

    async def reload_device_trips(self, device: str) -> None:
        async with self.pool.acquire() as conn:
            view = await trip_db.engine_view(conn, device=device)
        specs = view[device]
        self.trips[device] = specs
        tenant = await device_tenant(self.pool, device)
        if tenant is None:
            return
        await self._update_device(
            device, tenant, lambda st: sync_trips(st, specs, self.config, time.time())
        )

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        payload = str(payload)
        if channel == "fixgate_geofences":
            self._spawn(self.reload_tenant(payload), "reload-tenant")
        else:
            self._spawn(self.reload_device_trips(payload), "reload-trips")

    async def reload_loop(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.es.engine_reload_s)
            if self.stop.is_set():
                return
            try:
                if self.listener.is_closed():
                    await self.listen()  # the database went away: NOTIFY again from now on
                await self.reload_all()
            except Exception as e:  # the next round retries; NOTIFY still works meanwhile
                log.warning("engine: periodic reload failed: %s", e)

    async def eta_loop(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.es.eta_flush_s)
            if self.eta.pending:
                try:
                    async with self.pool.acquire() as conn:
                        await self.eta.flush(conn)
                except Exception as e:
                    log.warning("engine: eta predictions not written yet: %s", e)

    # ---- the stream ---------------------------------------------------------------------

    async def consume(self) -> None:
        backlog = True  # first our own pending entries (a restart under a stable name)
        while not self.stop.is_set():
            try:
                reply: Any = await self.redis.xreadgroup(
                    self.es.engine_group, self.consumer, {self.stream: "0" if backlog else ">"},
                    count=self.es.engine_read_count, block=None if backlog else READ_BLOCK_MS,
                )  # fmt: skip
            except (aioredis.ConnectionError, aioredis.TimeoutError) as e:
                log.warning("engine: redis: %s; retrying", e)
                await asyncio.sleep(1.0)
                continue
            entries: Any = reply[0][1] if reply else []
            if backlog and not entries:
                backlog = False
                continue
            if entries:
                await self.handle(entries)

    async def claim_loop(self) -> None:
        idle_ms = int(self.es.engine_claim_idle_s * 1000)
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.5, self.es.engine_claim_idle_s / 4))
            if self.stop.is_set():
                return
            try:
                start = "0-0"
                while True:
                    reply = await self.redis.xautoclaim(
                        self.stream, self.es.engine_group, self.consumer, idle_ms, start,
                        count=self.es.engine_read_count,
                    )  # fmt: skip
                    start, entries = reply[0], [e for e in reply[1] if e and e[1]]
                    if entries:
                        log.info("engine: took over %d entries from a dead consumer", len(entries))
                        await self.handle(entries)
                    if start in (b"0-0", "0-0"):
                        break
            except Exception as e:
                log.warning("engine: claiming pending entries failed: %s", e)

    async def handle(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> None:
        ids = [e[0] for e in entries]
        await self.wait_for_older(ids)
        self.in_hand.update(ids)
        try:
            await self._handle(entries)
        finally:
            self.in_hand.difference_update(ids)

    async def wait_for_older(self, ids: Sequence[bytes]) -> None:
        """Wait while an older entry is being handled elsewhere (another engine, or this
        one's claim of it): a device's fixes in it come first. Handled at once, the newer
        batch would commit first and make the older fixes late, so two engines would emit
        other events than one. A dead holder's entries are claimed after
        FIXGATE_ENGINE_CLAIM_IDLE_S; after twice that the batch goes ahead regardless (the
        compare-and-set still keeps the state whole)."""
        first = min(ids, key=_entry_order).decode()
        deadline = time.monotonic() + 2 * self.es.engine_claim_idle_s
        me = self.consumer.encode()
        while time.monotonic() < deadline:
            try:
                older = await self.redis.xpending_range(
                    self.stream, self.es.engine_group, "-", f"({first}", ORDER_LOOK_AHEAD
                )
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                return  # Redis away: the reads fail too, and the batch is redelivered
            if not any(
                _as_bytes(p["consumer"]) != me or _as_bytes(p["message_id"]) in self.in_hand
                for p in older
            ):
                return
            ORDER_WAITS.inc()
            await asyncio.sleep(ORDER_POLL_S)

    async def _handle(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> None:
        started = time.perf_counter()
        by_device: dict[str, list[Fix]] = {}
        tenant_of: dict[str, str] = {}
        read_ms = time.time() * 1000
        for entry_id, fields in entries:
            # The entry id's first part is when Redis appended it, in ms (its clock: the
            # same host's or one kept in sync).
            STREAM_WAIT.observe(max(0.0, read_ms - int(entry_id.split(b"-", 1)[0])) / 1000)
            raw = fields.get(b"fixes")
            if raw is None:
                continue
            for fix in decode_fixes(raw):
                by_device.setdefault(fix.device_id, []).append(fix)
                tenant_of[fix.device_id] = fix.tenant_id
        devices = list(by_device)
        for _ in range(MAX_CAS_ATTEMPTS):
            if not devices:
                break
            loaded = await self.store.load([(d, tenant_of[d]) for d in devices])
            jobs = [
                DeviceJob(state=st, fixes=by_device[d], trips=self.trips.get(d))
                for d, (st, _) in zip(devices, loaded, strict=True)
            ]
            results = evaluate(jobs, self.indexes, self.config, time.time())
            commits = [(r, rev) for r, (_, rev) in zip(results, loaded, strict=True) if r.changed]
            stored = await self.store.commit(
                [(r.state, rev, [encode_event(e) for e in r.events]) for r, rev in commits]
            )
            retry: list[str] = []
            for (result, _), ok in zip(commits, stored, strict=True):
                if ok:
                    await self.after_commit(result, by_device[result.state.device])
                else:
                    retry.append(result.state.device)
            if retry:
                CONFLICTS.inc(len(retry))
            evaluated = late = 0
            refused = set(retry)
            for r, job in zip(results, jobs, strict=True):
                if not r.changed:
                    late += len(job.fixes)
                elif r.state.device not in refused:
                    evaluated += r.evaluated
                    late += len(job.fixes) - r.evaluated
            FIXES_EVALUATED.inc(evaluated)
            FIXES_LATE.inc(late)
            devices = retry
        else:
            log.error(
                "engine: %d devices still conflicting after %d attempts",
                len(devices),
                MAX_CAS_ATTEMPTS,
            )
            return  # not acknowledged: redelivered later
        await self.redis.xack(self.stream, self.es.engine_group, *[e[0] for e in entries])
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def after_commit(self, result: DeviceResult, fixes: Sequence[Fix]) -> None:
        now = time.time()
        received = [f.received_at.timestamp() for f in fixes if f.received_at is not None]
        for event in result.events:
            kind = type(event)
            counter = _EVENTS_BY_TYPE.get(kind)
            if counter is None:
                counter = _EVENTS_BY_TYPE[kind] = EVENTS.labels(kind.__struct_config__.tag)
            counter.inc()
            if isinstance(event, TripUpdate):
                self.eta.add(event)
        if result.events and received:
            EVENT_LAG.observe(max(0.0, now - min(received)))
        arrived = [e for e in result.events if isinstance(e, TripArrived)]
        done = set(result.state.done)
        stale = [
            t.id
            for t in self.trips.get(result.state.device, [])
            if t.state in ("waiting", "active") and t.id in done
        ]
        if arrived or stale:
            self._spawn(self.record_arrivals(arrived, stale), "arrivals")
        for request in result.route_requests:
            self._spawn(self.fetch_route(request), "route")

    async def record_arrivals(self, arrived: list[TripArrived], stale: list[str]) -> None:
        try:
            async with self.pool.acquire() as conn:
                for event in arrived:
                    at = event.fix_time or event.detected_at
                    await trip_db.mark_arrived(conn, event.trip, at)
                    await self.eta.arrived(conn, event.trip, at)
                for trip_id in stale:
                    if trip_id not in {e.trip for e in arrived}:
                        await trip_db.mark_arrived(
                            conn, trip_id, to_datetime(int(time.time() * 1e6))
                        )
        except Exception as e:  # the stale-trip check retries on the device's next fix
            log.warning("engine: recording arrivals failed: %s", e)

    async def fetch_route(self, request: RouteRequest) -> None:
        if self.route_fn is None or self.es.routing_url is None:
            return
        async with self.routing_slots:
            try:
                route = await self.route_fn(
                    self.http_client, self.es.routing_url, request.origin, request.destination,
                    self.es.routing_timeout_s,
                )  # fmt: skip
            except Exception as e:  # the client's own failures mean: no route this time
                log.warning("engine: routing failed: %s", e)
                route = None
        await self._update_device(
            request.device,
            request.tenant,
            lambda st: route_ready(st, request, route, self.config, time.time()),
        )

    async def _update_device(self, device: str, tenant: str, step: Any) -> None:
        """Apply a state change outside the fix path (trip sync, a route) under the CAS."""
        for _ in range(MAX_CAS_ATTEMPTS):
            [(state, rev)] = await self.store.load([(device, tenant)])
            result: DeviceResult = step(state)
            if not result.changed:
                return
            [ok] = await self.store.commit(
                [(result.state, rev, [encode_event(e) for e in result.events])]
            )
            if ok:
                await self.after_commit(result, [])
                return
            CONFLICTS.inc()


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def device_tenant(pool: asyncpg.Pool, device: str) -> str | None:
    async with pool.acquire() as conn:
        tenant: str | None = await conn.fetchval(
            "SELECT tenant_id FROM devices WHERE id = $1", device
        )
        return tenant


def main(settings: Settings, es: EngineSettings) -> None:
    from gateway.logs import setup_logging

    setup_logging(settings.log_level)
    asyncio.run(Engine(settings, es).serve())
