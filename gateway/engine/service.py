"""The engine process (`fixgate engine`): startup, run, drain.

Startup serves health, opens PostgreSQL and Redis (waiting for Redis if it is away), loads
every tenant's geofences and the open trips, LISTENs for changes, then runs:
  - the leases (gateway/engine/leases.py): every tick, announce this process, renew its
    shards' leases, give back those the round robin now gives another, take those it gives
    this one; a shard taken starts with its pending entries (XAUTOCLAIM, whoever held them:
    a dead engine, or this one after a failed batch), then its new ones;
  - the consume loop: read the held shards' positions streams (consumer group), evaluate the
    entries in one batch, commit state + events per device atomically and fenced by the
    shard's token (`store`), acknowledge. One process per shard keeps each device's fixes
    in stream order; any number of processes divide the shards;
  - reloads of what NOTIFY says changed, and everything periodically.
A Redis restart (even an empty one: NOGROUP) is survived in place: the groups and leases
are made again and the consumer goes on. SIGTERM finishes the batch in hand, gives the
shards back (the others take them at their next tick), flushes ETA predictions and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Final

import asyncpg
from prometheus_client import Counter, Gauge, Histogram

from contracts.keys import Keys
from contracts.positions import entry_fixes
from devices.fix import Fix
from gateway.collector import quiet_gc
from gateway.config import Settings
from gateway.engine import fences as fence_db
from gateway.engine import trips as trip_db
from gateway.engine.eta import EtaRecorder
from gateway.engine.leases import Leases
from gateway.engine.route_source import RouteFn, route_source
from gateway.engine.settings import EngineSettings
from gateway.engine.store import StateStore
from gateway.http import serve_http
from gateway.process import Life
from gateway.redis_link import (
    REDIS_ERRORS,
    AnyRedis,
    Entries,
    Poll,
    connect_when_up,
    ensure_groups,
    nogroup,
    read_group,
)
from geofence.engine import DeviceJob, DeviceResult, evaluate, route_ready, sync_trips
from geofence.events import TripArrived, TripUpdate, encode_event
from geofence.index import FenceIndex
from geofence.trips import RouteRequest, TripSpec, to_datetime

log = logging.getLogger("engine")

MAX_CAS_ATTEMPTS: Final = 10
"""Re-evaluations of a device whose state moved meanwhile (a trip change or a route beside
its fixes); each attempt skips the fixes already covered, so two always suffice."""
READ_BLOCK_MS: Final = 1000
"""XREADGROUP blocks at most this long, so stop and new shards are looked at every second."""
MAX_ROUTING_TASKS: Final = 64
"""Route requests in flight at once (OSRM answers in milliseconds; this bounds a burst)."""
EVALUATE_CHUNK_DEVICES: Final = 500
"""Devices evaluated between two yields to the event loop (a few ms of CPU), so that a
large batch never keeps the lease loop from renewing."""
IDLE_S: Final = 0.2
"""How long a process that holds no shard waits before looking again."""
RETRY_S: Final = 1.0
"""Wait after a failed read or batch (Redis away) before the next try."""

FIXES = Counter("fixgate_engine_fixes_total", "Fixes read from the positions stream", ["result"])
EVENTS = Counter("fixgate_engine_events_total", "Events written to the events stream", ["type"])
CONFLICTS = Counter(
    "fixgate_engine_cas_conflicts_total",
    "State commits refused (the device's state moved meanwhile)",
)
FENCED = Counter(
    "fixgate_engine_fenced_total", "Commits refused because another engine took the shard"
)
SHARDS_HELD = Gauge("fixgate_engine_shards", "Shards of the positions stream this engine holds")
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
        self.life = Life("engine", settings.shutdown_timeout_s)
        self.stop = self.life.stop
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
        self.keys = Keys(settings.redis_prefix, settings.position_shards)
        self.routing_slots = asyncio.Semaphore(MAX_ROUTING_TASKS)
        self.redis_ok = True
        self.busy: set[int] = set()
        """Shards whose entries are in hand now (not given back until done)."""
        self.take_over: set[int] = set()
        """Held shards whose pending entries are to be claimed before new ones are read."""

    def not_ready(self) -> list[str]:
        if starting := self.life.not_ready():
            return starting
        return [] if self.redis_ok else ["redis not reachable"]

    # ---- lifecycle --------------------------------------------------------------------

    async def serve(self) -> None:
        self.life.handle_signals()
        await self.startup()
        log.info(
            "engine: running as %s (group %s, %d shards)",
            self.consumer, self.es.engine_group, self.keys.shards,
        )  # fmt: skip
        await self.stop.wait()
        await self.shutdown()

    async def startup(self) -> None:
        s, es = self.settings, self.es
        self.http = await serve_http(es.engine_host, es.engine_port, self.not_ready)
        log.info("engine: metrics on http://%s:%d/metrics", es.engine_host, es.engine_port)
        self.pool = await asyncpg.create_pool(s.database_url, min_size=1, max_size=4)
        self.life.starting = "waiting for redis"
        self.redis: AnyRedis = await connect_when_up(
            s.redis_url,
            socket_timeout=10,
            on_wait=lambda e: log.warning("engine: waiting for redis: %s", e),
        )
        self.life.starting = "loading geofences and trips"
        self.store = StateStore(self.redis, s.redis_prefix, self.keys.shards)
        self.leases = Leases(self.redis, self.keys, self.consumer, es.engine_lease_s)
        self.http_client: Any = None
        if self.route_fn is not None:
            import httpx

            self.http_client = httpx.AsyncClient()
        await self.reload_all()
        await self.listen()
        self.lease_task = self.life.spawn(self.lease_loop(), "leases")
        self.consume_task = self.life.spawn(self.consume(), "consume")
        self.life.spawn(self.reload_loop(), "reload")
        self.life.spawn(self.eta_loop(), "eta-flush")
        quiet_gc()
        self.life.ready()

    async def shutdown(self) -> None:
        life = self.life
        life.draining()
        await life.finish(self.consume_task, "the batch in hand")
        self.lease_task.cancel()
        await asyncio.gather(self.lease_task, return_exceptions=True)
        # The others take the shards at their next tick, not after the leases lapse.
        if not await life.finish(self.leases.release_all(), "giving the shards back"):
            log.warning("engine: shards not given back; they lapse instead")
        await life.cancel_stragglers()  # the loops (reloads, ETA flush) and routes in flight
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
            self.life.spawn(self.reload_tenant(payload), "reload-tenant")
        else:
            self.life.spawn(self.reload_device_trips(payload), "reload-trips")

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

    # ---- the shards and their streams -------------------------------------------------

    async def lease_loop(self) -> None:
        tick = max(0.2, self.es.engine_lease_s / 5)
        while not self.stop.is_set():
            try:
                taken, given = await self.leases.tick(self.busy)
                if taken:
                    streams = [self.keys.positions(s) for s in taken]
                    await ensure_groups(self.redis, streams, self.es.engine_group)
                    self.take_over |= taken
                self.take_over -= given
                if not self.redis_ok:
                    log.warning("engine: redis answers again")
                self.redis_ok = True
            except Exception as e:  # Redis away: the leases lapse, and are taken again after
                if self.redis_ok:
                    log.warning("engine: redis: %s; evaluating nothing until it answers", e)
                self.redis_ok = False
            SHARDS_HELD.set(len(self.leases.held))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), tick)

    async def consume(self) -> None:
        group = self.es.engine_group
        poll = Poll()
        while not self.stop.is_set():
            held = set(self.leases.held)
            if not held:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), IDLE_S)
                continue
            try:
                claim = sorted(self.take_over & held)
                if claim:
                    await self.claim(claim[0])
                    self.take_over.discard(claim[0])
                    continue
                # COUNT is per stream: the batch stays about engine_read_count entries.
                per_stream = max(1, self.es.engine_read_count // len(held))
                replies = await read_group(
                    self.redis, group, self.consumer,
                    {self.keys.positions(s): ">" for s in sorted(held)},
                    count=per_stream, block_ms=READ_BLOCK_MS, poll=poll,
                )  # fmt: skip
                if replies:
                    await self.handle(replies)
            except Exception as e:  # Redis away or restarted: read what is pending again
                if nogroup(e):
                    log.warning("engine: %s; making the consumer groups again", e)
                    with contextlib.suppress(*REDIS_ERRORS):
                        streams = [self.keys.positions(s) for s in held]
                        await ensure_groups(self.redis, streams, group)
                else:
                    log.warning("engine: batch not done (%s: %s); retrying", type(e).__name__, e)
                self.take_over |= held
                await asyncio.sleep(RETRY_S)

    async def claim(self, shard: int) -> None:
        """The shard's pending entries, whoever held them, in stream order: the entries a
        dead engine (or this one's failed batch) left unacknowledged."""
        stream = self.keys.positions(shard)
        start = "0-0"
        while not self.stop.is_set() and shard in self.leases.held:
            reply = await self.redis.xautoclaim(
                stream, self.es.engine_group, self.consumer, 0, start,
                count=self.es.engine_read_count,
            )  # fmt: skip
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            entries: Entries = [(e[0], e[1]) for e in reply[1] if e and e[1]]
            gone = [e[0] for e in reply[1] if e and not e[1]]
            if gone:  # trimmed while pending: nothing left to evaluate
                await self.redis.xack(stream, self.es.engine_group, *gone)
            if entries:
                log.info("engine: shard %d: %d pending entries taken over", shard, len(entries))
                await self.handle([(stream, entries)])
            if start == "0-0":
                return

    async def handle(self, replies: Sequence[tuple[str, Entries]]) -> None:
        shard_of = {self.keys.positions(s): s for s in self.leases.held}
        tokens = dict(self.leases.held)
        taken = [
            (shard_of[stream], stream, entries) for stream, entries in replies if stream in shard_of
        ]
        self.busy = {shard for shard, _, _ in taken}
        try:
            fenced = await self._handle([e for _, _, entries in taken for e in entries], tokens)
            pipe = self.redis.pipeline(transaction=False)
            for shard, stream, entries in taken:
                if shard not in fenced:
                    pipe.xack(stream, self.es.engine_group, *[e[0] for e in entries])
            await pipe.execute()
        finally:
            self.busy = set()

    async def _handle(self, entries: Entries, tokens: dict[int, int]) -> set[int]:
        """Evaluate and commit; the shards found fenced (their entries not to be acked)."""
        started = time.perf_counter()
        by_device: dict[str, list[Fix]] = {}
        tenant_of: dict[str, str] = {}
        read_ms = time.time() * 1000
        for entry_id, fields in entries:
            # The entry id's first part is when Redis appended it, in ms (its clock: the
            # same host's or one kept in sync).
            STREAM_WAIT.observe(max(0.0, read_ms - int(entry_id.split(b"-", 1)[0])) / 1000)
            for fix in entry_fixes(fields):
                by_device.setdefault(fix.device_id, []).append(fix)
                tenant_of[fix.device_id] = fix.tenant_id
        devices = list(by_device)
        fenced: set[int] = set()
        for _ in range(MAX_CAS_ATTEMPTS):
            if not devices:
                break
            loaded = await self.store.load([(d, tenant_of[d]) for d in devices])
            jobs = [
                DeviceJob(state=st, fixes=by_device[d], trips=self.trips.get(d))
                for d, (st, _) in zip(devices, loaded, strict=True)
            ]
            results = []
            for first in range(0, len(jobs), EVALUATE_CHUNK_DEVICES):
                chunk = jobs[first : first + EVALUATE_CHUNK_DEVICES]
                results += evaluate(chunk, self.indexes, self.config, time.time())
                await asyncio.sleep(0)  # the lease loop renews between chunks
            commits = [(r, rev) for r, (_, rev) in zip(results, loaded, strict=True) if r.changed]
            stored = await self.store.commit(
                [(r.state, rev, [encode_event(e) for e in r.events]) for r, rev in commits], tokens
            )
            retry: list[str] = []
            refused: set[str] = set()
            for (result, _), ok in zip(commits, stored, strict=True):
                device = result.state.device
                if ok:
                    await self.after_commit(result, by_device[device])
                elif ok is None:
                    fenced.add(self.keys.shard(device))
                    refused.add(device)
                else:
                    retry.append(device)
                    refused.add(device)
            if retry:
                CONFLICTS.inc(len(retry))
            evaluated = late = 0
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
            raise RuntimeError(
                f"{len(devices)} devices still conflicting after {MAX_CAS_ATTEMPTS} attempts"
            )
        for shard in fenced:
            FENCED.inc()
            self.leases.lost(shard)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        return fenced

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
            self.life.spawn(self.record_arrivals(arrived, stale), "arrivals")
        for request in result.route_requests:
            self.life.spawn(self.fetch_route(request), "route")

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
        """Apply a state change outside the fix path (trip sync, a route) under the CAS and
        the shard's fencing token; only the engine holding the device's shard does."""
        shard = self.keys.shard(device)
        for _ in range(MAX_CAS_ATTEMPTS):
            token = self.leases.held.get(shard)
            if token is None:
                return  # another engine's device: it does this on its own NOTIFY
            [(state, rev)] = await self.store.load([(device, tenant)])
            result: DeviceResult = step(state)
            if not result.changed:
                return
            [ok] = await self.store.commit(
                [(result.state, rev, [encode_event(e) for e in result.events])], {shard: token}
            )
            if ok:
                await self.after_commit(result, [])
                return
            if ok is None:
                FENCED.inc()
                self.leases.lost(shard)
                return
            CONFLICTS.inc()


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
