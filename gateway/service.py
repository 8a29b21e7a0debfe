"""The gateway process: startup, run, drain (uvicorn's lifecycle shape).

Startup serves health first, opens the disk spool, opens the pools, loads the registry (from
its snapshot if the database is away), replays what an earlier run left in the spool, then
starts the writers and the listeners. SIGTERM or SIGINT sets `stop`; shutdown then runs in a fixed order under
`shutdown_timeout_s`: stop accepting (TCP, UDP and HTTP servers closed, MQTT loop stops
taking messages), stop reading (NMEA connections close at once, flushing their pending
epoch), write the last batches (their acknowledgements go out to the trackers and phones),
close the remaining connections, let live positions catch up, cancel what is left (with a
count), close the pools.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import asyncpg

from gateway.config import Settings
from gateway.flow import Flow
from gateway.http import serve_http
from gateway.listeners.gt06 import Gt06Listener
from gateway.listeners.guard import AddressGuard
from gateway.listeners.http_devices import HttpDevicesListener
from gateway.listeners.mqtt import MqttListener
from gateway.listeners.stream import StreamListener
from gateway.listeners.tcp import TcpListener
from gateway.listeners.teltonika import TeltonikaListener
from gateway.logs import setup_logging
from gateway.process import Life
from gateway.redis_link import REDIS_ERRORS, AnyRedis, connect
from gateway.registry.broker import BrokerFollower, BrokerSync
from gateway.registry.cache import SNAPSHOT_NAME, RegistryCache, RegistryUnavailable
from gateway.sinks.history import HistoryWriter
from gateway.sinks.live import LiveUpdater, LiveWriter
from gateway.sinks.postgres import prepare_connection
from gateway.sinks.retention import run_retention
from gateway.sinks.spool import Spool, SpoolError
from ingest.filters import FilterLimits
from ingest.pipeline import BatchLimits, Ingest

log = logging.getLogger("gateway")

REDIS_CONNECT_AT_START_S = 3.0
"""How long startup waits for Redis before going on without it (it connects later)."""


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.life = Life("gateway", settings.shutdown_timeout_s)
        self.stop = self.life.stop

    async def serve(self) -> None:
        await self.startup()
        log.info("gateway: running")
        await self.stop.wait()
        await self.shutdown()

    async def startup(self) -> None:
        s = self.settings
        self.http = await serve_http(s.metrics_host, s.metrics_port, self.not_ready)
        log.info("gateway: metrics on http://%s:%d/metrics", s.metrics_host, s.metrics_port)
        self.spool: Spool | None = None
        if s.spool_max_bytes > 0:
            self.spool = Spool(s.spool_dir, s.spool_max_bytes)
            self.spool.open()
        # No connection floor: during an outage asyncpg would log a traceback per retry.
        self.pool = await asyncpg.create_pool(
            s.database_url,
            min_size=0,
            max_size=s.max_concurrent_writes + 4,
            init=prepare_connection,
        )
        self.redis: AnyRedis | None = None
        try:  # a Redis away at start is connected to later: history goes on meanwhile
            self.redis = await asyncio.wait_for(connect(s.redis_url), REDIS_CONNECT_AT_START_S)
        except (*REDIS_ERRORS, TimeoutError) as e:
            log.warning(
                "gateway: redis not reachable at start (%s); live positions will catch up", e
            )
        self.registry = RegistryCache(self.pool, snapshot=s.spool_dir / SNAPSHOT_NAME)
        await self.registry.start()
        self.ingest = Ingest(
            FilterLimits(
                max_clock_skew_s=s.max_clock_skew_s,
                max_fix_age_s=s.retention_days * 86400.0,
                max_speed_mps=s.max_speed_mps,
            ),
            BatchLimits(max_batch_fixes=s.batch_max_fixes, max_batch_age_s=s.batch_max_age_s),
        )
        self.flow = Flow(s.max_queued_fixes)
        self.live = LiveUpdater(
            LiveWriter(self.redis, s.redis_prefix, s.position_shards), s.redis_url
        )
        self.history = HistoryWriter(
            self.ingest,
            self.pool,
            self.flow,
            self.live,
            s.max_concurrent_writes,
            self.spool,
            s.spool_after_s,
        )
        if self.spool is not None and self.spool.fixes:
            # An earlier run's spooled fixes go in before anything new is taken.
            self.life.starting = "replaying the spool"
            await self.history.replay(self.stop, until_empty=True)
            if self.spool.fixes:
                log.warning(
                    "gateway: %d spooled fixes wait for the database; starting anyway",
                    self.spool.fixes,
                )
            else:
                log.info("gateway: spool replayed")
        self.writers_stop = asyncio.Event()
        self.history_task = self.life.spawn(self.history.run(self.writers_stop), "history-writer")
        self.replay_task = self.life.spawn(self.history.replay(self.writers_stop), "spool-replay")
        self.live_task = self.life.spawn(self.live.run(self.writers_stop), "live-writer")
        self.life.spawn(self.registry.run(s.registry_refresh_s, self.stop), "registry-refresh")
        self.life.spawn(self.registry.listen(s.database_url, self.stop), "registry-listen")
        broker_sync = BrokerSync.from_settings(s)
        if broker_sync is not None:
            follower = BrokerFollower(broker_sync, self.registry)
            self.life.spawn(follower.run(self.stop), "broker-follower")
        self.life.spawn(
            run_retention(self.pool, s.retention_days, s.retention_interval_s, self.stop),
            "retention",
        )
        shared = (s, self.registry, self.ingest, self.history, self.flow)
        # One guard for every listener: an address guessing on one port is refused on all.
        guard = AddressGuard(s.auth_max_failures, s.auth_failure_window_s, s.auth_block_s)
        self.tcp = TcpListener(*shared, host=s.tcp_host, port=s.tcp_port, guard=guard)
        self.streams: list[StreamListener[Any]] = [self.tcp]
        for listener_class, host, port in (
            (TeltonikaListener, s.teltonika_host, s.teltonika_port),
            (Gt06Listener, s.gt06_host, s.gt06_port),
            (HttpDevicesListener, s.osmand_host, s.osmand_port),
        ):
            if port:  # 0 turns a listener off
                self.streams.append(listener_class(*shared, host=host, port=port, guard=guard))
        for listener in self.streams:
            await listener.start()
        self.mqtt = MqttListener(s, self.registry, self.ingest, self.history, self.flow)
        self.mqtt_task = self.life.spawn(self.mqtt.run(self.stop), "mqtt")
        self.life.ready()

    def not_ready(self) -> list[str]:
        """What keeps the gateway from accepting fixes (empty when it can)."""
        if starting := self.life.not_ready():
            return starting
        missing = []
        if not self.mqtt.connected:
            missing.append("mqtt broker not connected")
        if not self.history.can_accept():
            missing.append(
                "timescaledb not writable and spool " + ("full" if self.spool else "off")
            )
        elif self.spool is not None and self.spool.full:
            missing.append("spool full")
        if not self.flow.open.is_set():
            missing.append("ingest queue full")
        if not self.live.redis_ok:
            missing.append(
                "redis not reachable (fixes are stored; live positions and the engine wait)"
            )
        return missing

    async def shutdown(self) -> None:
        life = self.life
        life.draining()
        for listener in self.streams:
            listener.stop_accepting()
        # NMEA connections close at once (flushing their epoch); the trackers' and the
        # phones' once their last acknowledgement is written, after the writers below.
        for listener in self.streams:
            draining = listener.drain()
            log.info("gateway: draining %d %s connections", draining, listener.protocol)
        await life.finish(self.mqtt_task, "the MQTT listener")
        self.writers_stop.set()
        await life.finish(self.history_task, "the history writer")
        await life.finish(self.replay_task, "the spool replay")
        for listener in self.streams:  # their acknowledgements went out with the last batches
            if closed := listener.close_all():
                log.info("gateway: closed %d %s connections", closed, listener.protocol)
        await life.finish(self.live_task, "the live writer")
        listener_tasks = {t for listener in self.streams for t in listener.tasks}
        if stragglers := await life.cancel_stragglers(listener_tasks | self.mqtt.tasks):
            log.warning("gateway: cancelled %d tasks that did not finish in time", stragglers)
        self.http.close()
        if self.live.writer.client is not None:
            await self.live.writer.client.aclose()
        await self.pool.close()
        if self.spool is not None:
            self.spool.close()
            if self.spool.fixes:
                log.info("gateway: %d fixes wait in the spool for the next start", self.spool.fixes)
        log.info("gateway: stopped; %d fixes were still queued", self.ingest.pending)


async def run_gateway(settings: Settings) -> None:
    gateway = Gateway(settings)
    gateway.life.handle_signals()
    await gateway.serve()


def _raise_file_limit() -> None:
    """One descriptor per device connection: take all the kernel allows us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(settings: Settings) -> None:
    setup_logging(settings.log_level)
    _raise_file_limit()
    try:
        asyncio.run(run_gateway(settings))
    except (SpoolError, RegistryUnavailable) as e:
        log.error("gateway: cannot start: %s", e)
        raise SystemExit(1) from None
