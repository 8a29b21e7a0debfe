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
import contextlib
import logging
import resource
import signal
from collections.abc import Coroutine
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
from gateway.registry.broker import BrokerFollower, BrokerSync
from gateway.registry.cache import SNAPSHOT_NAME, RegistryCache, RegistryUnavailable
from gateway.sinks.history import HistoryWriter
from gateway.sinks.live import LiveUpdater, LiveWriter, redis_client
from gateway.sinks.postgres import prepare_connection
from gateway.sinks.retention import run_retention
from gateway.sinks.spool import Spool, SpoolError
from ingest.filters import FilterLimits
from ingest.pipeline import BatchLimits, Ingest

log = logging.getLogger("gateway")


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.starting: str | None = "starting"
        """What startup is doing (readiness reports it), None once the listeners run."""

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

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
        self.redis = redis_client(s.redis_url)
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
        self.live = LiveUpdater(LiveWriter(self.redis, s.redis_prefix))
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
            self.starting = "replaying the spool"
            await self.history.replay(self.stop, until_empty=True)
            if self.spool.fixes:
                log.warning(
                    "gateway: %d spooled fixes wait for the database; starting anyway",
                    self.spool.fixes,
                )
            else:
                log.info("gateway: spool replayed")
        self.writers_stop = asyncio.Event()
        self.history_task = self._spawn(self.history.run(self.writers_stop), "history-writer")
        self.replay_task = self._spawn(self.history.replay(self.writers_stop), "spool-replay")
        self.live_task = self._spawn(self.live.run(self.writers_stop), "live-writer")
        self._spawn(self.registry.run(s.registry_refresh_s, self.stop), "registry-refresh")
        self._spawn(self.registry.listen(s.database_url, self.stop), "registry-listen")
        broker_sync = BrokerSync.from_settings(s)
        if broker_sync is not None:
            follower = BrokerFollower(broker_sync, self.registry)
            self._spawn(follower.run(self.stop), "broker-follower")
        self._spawn(
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
        self.mqtt_task = self._spawn(self.mqtt.run(self.stop), "mqtt")
        self.starting = None

    def not_ready(self) -> list[str]:
        """What keeps the gateway from accepting fixes (empty when it can)."""
        if self.starting is not None:
            return [self.starting]
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
        return missing

    async def shutdown(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout_s

        def left() -> float:
            return max(0.1, deadline - asyncio.get_running_loop().time())

        log.info("gateway: draining (timeout %.0f s)", self.settings.shutdown_timeout_s)
        for listener in self.streams:
            listener.stop_accepting()
        # NMEA connections close at once (flushing their epoch); the trackers' and the
        # phones' once their last acknowledgement is written, after the writers below.
        for listener in self.streams:
            draining = listener.drain()
            log.info("gateway: draining %d %s connections", draining, listener.protocol)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.mqtt_task), left())
        self.writers_stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.history_task), left())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.replay_task), left())
        for listener in self.streams:  # their acknowledgements went out with the last batches
            if closed := listener.close_all():
                log.info("gateway: closed %d %s connections", closed, listener.protocol)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.live_task), left())
        listener_tasks = {t for listener in self.streams for t in listener.tasks}
        stragglers = [t for t in self.tasks | listener_tasks | self.mqtt.tasks if not t.done()]
        for task in stragglers:
            task.cancel()
        if stragglers:
            log.warning("gateway: cancelled %d tasks that did not finish in time", len(stragglers))
            await asyncio.gather(*stragglers, return_exceptions=True)
        self.http.close()
        await self.redis.aclose()
        await self.pool.close()
        if self.spool is not None:
            self.spool.close()
            if self.spool.fixes:
                log.info("gateway: %d fixes wait in the spool for the next start", self.spool.fixes)
        log.info("gateway: stopped; %d fixes were still queued", self.ingest.pending)


async def run_gateway(settings: Settings) -> None:
    gateway = Gateway(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.stop.set)
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
