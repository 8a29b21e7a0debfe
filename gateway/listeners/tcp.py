"""The TCP NMEA listener: a thin asyncio Protocol around `devices.tcp_nmea.TcpNmeaSession`.

Per connection: bytes go into the session as they arrive (no task or future per read),
its events are acted on (a login is verified against the registry, fixes are submitted,
errors counted), and one timer is kept armed for the nearest deadline (login, idle, or
the session's epoch flush). Backpressure: while the ingest queue is over its high-water
mark every connection pauses reading, and TCP's window pushes back on the devices.

Fairness: a read takes at most `READ_CHUNK_BYTES` into one shared buffer. It is decoded at
once while the current loop iteration has spent less than `DECODE_SLICE_S` decoding (the
common case: a tracker's epoch every second); past that, decoding is deferred to the
listener's decode pass, which runs for at most `DECODE_SLICE_S` before yielding to the
event loop, and a connection with bytes waiting to be decoded is not read.
Otherwise one loop iteration decoded a 256 KiB read from every ready connection in turn
(seconds, under a flood of 1,000 devices), and batch writes and /metrics waited for it.

What a plain NMEA device can be promised: NMEA over TCP has no acknowledgements, so a fix
counts as received once the gateway has read it; fixes still in the socket or in an open
batch when the gateway is killed can be lost. A SIGTERM drains them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from typing import Any

from devices.events import CloseConnection, DecodeError, Ignored, LoginRequest
from devices.fix import Fix
from devices.tcp_nmea import SessionEvent, TcpNmeaSession
from gateway import metrics
from gateway.config import Settings
from gateway.flow import Flow
from gateway.logs import RateLimitedLog
from gateway.registry.cache import RegistryCache
from gateway.registry.store import Device
from gateway.sinks.history import HistoryWriter
from ingest.pipeline import Ingest

log = logging.getLogger(__name__)
READ_CHUNK_BYTES = 16 * 1024
"""Most bytes one read takes from a connection: ~115 RMC+GGA epochs, a few milliseconds of
decoding. Also the most a connection holds undecoded (16 MiB for 1,000 devices)."""
MAX_PENDING_LINES_AT_LOGIN = READ_CHUNK_BYTES
"""Devices stream right after their login line, without waiting for an answer, so the
first read can carry a whole backlog. Reading pauses while the login is verified, so what
the session holds is at most one read, and a read of `READ_CHUNK_BYTES` holds at most one
line per byte. (The core's default, `devices.tcp_nmea.DEFAULT_MAX_PENDING_LINES`, is for
a caller that feeds it without pausing.)"""
DECODE_SLICE_S = 0.01
"""A decode pass yields to the event loop after this long, so batch writes, timers and
/metrics get a turn at least every ~10 ms however many devices are streaming."""


class TcpListener:
    def __init__(
        self,
        settings: Settings,
        registry: RegistryCache,
        ingest: Ingest,
        writer: HistoryWriter,
        flow: Flow,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.ingest = ingest
        self.writer = writer
        self.flow = flow
        self.server: asyncio.Server | None = None
        self.connections: set[NmeaConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.device_log = RateLimitedLog(log)
        self.read_buffer = bytearray(READ_CHUNK_BYTES)
        self._to_decode: deque[NmeaConnection] = deque()
        self._decode_scheduled = False
        self._slice_end: float | None = None
        flow.on_change.append(self._flow_changed)
        registry.on_change.append(self._device_changed)

    def _device_changed(self, device_id: str, device: Device | None) -> None:
        """A device disabled or removed loses its connections at once."""
        if device is not None and device.enabled:
            return
        for conn in list(self.connections):
            if conn.session.device_id == device_id:
                metrics.TCP_CLOSED.labels("device_disabled").inc()
                conn.finish(time.time())

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: NmeaConnection(self),
            self.settings.tcp_host,
            self.settings.tcp_port,
            backlog=1024,
        )
        log.info("tcp: listening on %s:%d", self.settings.tcp_host, self.settings.tcp_port)

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    def drain(self) -> int:
        """Close every connection, flushing each session's pending epoch; return how many."""
        count = len(self.connections)
        for conn in list(self.connections):
            conn.finish(time.time())
        return count

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _flow_changed(self, open_: bool) -> None:
        for conn in self.connections:
            conn.set_reading(open_)

    def may_decode_now(self) -> bool:
        """Whether a read may be decoded at once: nothing is waiting (first come, first
        decoded) and this loop iteration has decoded for less than DECODE_SLICE_S."""
        if self._to_decode:
            return False
        now = time.perf_counter()
        if self._slice_end is None:
            self._slice_end = now + DECODE_SLICE_S
            # Runs first in the next iteration, before its reads: the budget is per iteration.
            asyncio.get_running_loop().call_soon(self._end_slice)
            return True
        return now < self._slice_end

    def _end_slice(self) -> None:
        self._slice_end = None

    def to_decode(self, conn: NmeaConnection) -> None:
        self._to_decode.append(conn)
        if not self._decode_scheduled:
            self._decode_scheduled = True
            asyncio.get_running_loop().call_soon(self._decode_pass)

    def _decode_pass(self) -> None:
        """Decode waiting reads, oldest first, for one time slice; then yield."""
        self._decode_scheduled = False
        queue = self._to_decode
        deadline = time.perf_counter() + DECODE_SLICE_S
        while queue and time.perf_counter() < deadline:
            queue.popleft().decode_pending()
        if queue:
            self._decode_scheduled = True
            asyncio.get_running_loop().call_soon(self._decode_pass)


class NmeaConnection(asyncio.BufferedProtocol):
    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        s = listener.settings
        self.session = TcpNmeaSession(
            max_line_bytes=s.tcp_max_line_bytes,
            max_errors=s.tcp_max_errors,
            max_pending_lines=MAX_PENDING_LINES_AT_LOGIN,
        )
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.logged_in = False
        self.verifying = False
        self.paused = False
        self.closed = False
        self.last_data = time.monotonic()
        self.opened = self.last_data
        self.timer: asyncio.TimerHandle | None = None
        self.pending: bytes | None = None
        """A read not decoded yet (reading is paused meanwhile), and when it arrived."""
        self.pending_at = 0.0

    # ---- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's: readable, pausable
        self.transport = transport
        self.peer = str(transport.get_extra_info("peername"))
        self.listener.connections.add(self)
        metrics.TCP_CONNECTIONS.inc()
        if not self.listener.flow.open.is_set():
            self.set_reading(False)
        self._arm_timer()

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.listener.read_buffer  # one buffer for all: its bytes are copied out at once

    def buffer_updated(self, nbytes: int) -> None:
        self.last_data = time.monotonic()
        self.pending = bytes(self.listener.read_buffer[:nbytes])
        self.pending_at = time.time()
        if self.listener.may_decode_now():
            self.decode_pending()
            return
        self.set_reading(True)  # pauses: bytes are waiting
        self.listener.to_decode(self)

    def decode_pending(self) -> None:
        data, self.pending = self.pending, None
        if data is None or self.closed:
            return
        self._act(self.session.feed(data, self.pending_at))  # stamped when it was read
        self.set_reading(True)
        # A new pending epoch may be due before the armed timer (login or idle): re-arm.
        now = time.time()
        epoch = self.session.next_deadline()
        if epoch is not None and self.timer is not None:
            loop_due = self.timer.when()
            if loop_due > asyncio.get_running_loop().time() + (epoch - now) + 0.05:
                self.timer.cancel()
                self._arm_timer()

    def eof_received(self) -> bool:
        self.decode_pending()  # what was read before the EOF belongs to the session
        self.finish(time.time())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.decode_pending()
        if not self.closed:
            self.closed = True
            self._act(self.session.close(time.time()))
        self.listener.connections.discard(self)
        metrics.TCP_CONNECTIONS.dec()
        if self.timer is not None:
            self.timer.cancel()

    # ---- control -------------------------------------------------------------------

    def finish(self, now: float) -> None:
        """Flush the pending epoch and close."""
        if self.closed:
            return
        self.decode_pending()
        if self.closed:
            return
        self.closed = True
        self._act(self.session.close(now))
        if self.transport is not None:
            self.transport.close()

    def _abort(self, reason: str) -> None:
        metrics.TCP_CLOSED.labels(reason).inc()
        self.finish(time.time())

    def set_reading(self, on: bool) -> None:
        """Idempotent pause/resume (uvicorn's FlowControl); a pending login, or a read
        still waiting to be decoded, also pauses."""
        if self.transport is None or self.closed:
            return
        want_paused = (
            not on
            or self.verifying
            or self.pending is not None
            or not self.listener.flow.open.is_set()
        )
        if want_paused and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        elif not want_paused and self.paused:
            self.transport.resume_reading()
            self.paused = False

    # ---- events --------------------------------------------------------------------

    def _act(self, events: Sequence[SessionEvent]) -> None:
        fixes: list[Fix] = []
        for event in events:
            match event:
                case Fix():
                    fixes.append(event)
                case DecodeError():
                    self._count_error(event)
                case LoginRequest():
                    self.verifying = True
                    self.set_reading(False)
                    self.listener.spawn(self._verify(event))
                case CloseConnection():
                    metrics.TCP_CLOSED.labels(str(event.reason)).inc()
                    self.closed = True
                    if self.transport is not None:
                        self.transport.close()
                case Ignored():
                    pass
        if fixes:
            self.listener.ingest.submit(fixes, time.time())
            self.listener.writer.submitted()

    def _count_error(self, error: DecodeError) -> None:
        metrics.DECODE_ERRORS.labels("nmea", error.reason.value).inc()
        self.listener.device_log.warning(
            ("tcp", self.session.device_id or self.peer, error.reason.value), time.time(),
            "tcp: decode error device=%s peer=%s reason=%s detail=%s",
            self.session.device_id, self.peer, error.reason.value, error.detail[:120],
        )  # fmt: skip

    async def _verify(self, login: LoginRequest) -> None:
        device, refused = await self.listener.registry.login(login.device_id, login.token)
        self.verifying = False
        if self.closed:
            return
        if device is None:
            metrics.AUTH_REFUSED.labels("tcp", refused or "unknown").inc()
            self.listener.device_log.warning(
                ("tcp", "login", login.device_id), time.time(),
                "tcp: login refused device=%s peer=%s reason=%s", login.device_id, self.peer, refused,
            )  # fmt: skip
            self.session.reject()
            self._abort("login_refused")
            return
        self.logged_in = True
        self._act(self.session.accept(device.id, device.tenant_id, time.time()))
        self.set_reading(True)

    # ---- the one timer -------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        s = self.listener.settings
        mono = time.monotonic()
        if self.logged_in:
            due = self.last_data + s.tcp_idle_timeout_s
        else:
            due = self.opened + s.tcp_login_timeout_s
        epoch = self.session.next_deadline()  # wall clock
        if epoch is not None:
            due = min(due, mono + max(0.0, epoch - time.time()))
        # loop.time() is monotonic; translate our monotonic deadline onto it.
        self.timer = loop.call_at(loop.time() + max(0.0, due - mono) + 0.01, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        s = self.listener.settings
        mono, now = time.monotonic(), time.time()
        if (
            not self.logged_in
            and not self.verifying
            and mono >= self.opened + s.tcp_login_timeout_s
        ):
            self._abort("login_timeout")
            return
        if self.logged_in and mono >= self.last_data + s.tcp_idle_timeout_s:
            self._abort("idle_timeout")
            return
        epoch = self.session.next_deadline()
        if epoch is not None and now >= epoch:
            self._act(self.session.on_timer(now))
        self._arm_timer()
