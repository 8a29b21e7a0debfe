"""What every TCP device listener shares: a thin asyncio Protocol per connection, one timer,
fair decoding, pause/resume backpressure and the SIGTERM drain (uvicorn's shape).

A protocol's listener subclasses `StreamListener` (which connection class it serves, its
metrics label) and `StreamConnection` (`feed()` bytes into its sans-IO session and act on
the events; `end_session()` at EOF). The base owns everything around that:

- Reads: at most `READ_CHUNK_BYTES` into one buffer shared by the listener's connections.
  A read is decoded at once while the current loop iteration has spent less than
  `DECODE_SLICE_S` decoding; past that, it waits for the listener's decode pass (oldest
  first, at most `DECODE_SLICE_S` per pass), and its connection is not read meanwhile.
  Without this, one loop iteration decoded a 256 KiB read from every ready connection in
  turn (seconds, under a flood of 1,000 devices), and batch writes and /metrics waited.
- Backpressure: while the ingest queue is over its high-water mark (`Flow`), while a login
  is being verified, or while a read waits to be decoded, reading is paused; TCP's window
  pushes back on the device. Nothing is buffered beyond one read per connection.
- Timers: one per connection, re-armed for the nearest deadline: the login timeout until
  the device is accepted, then the idle timeout, and the session's own deadline if any.
- Replies: `OrderedReplies` writes acknowledgements in the order their messages came,
  whatever order their batches become durable in (two writes run at once).
- Drain: `drain()` stops reading on every connection; each closes once its last reply is
  written (`close_all()` ends the stragglers when the writers are done).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, ClassVar, Generic, TypeVar

from gateway import metrics
from gateway.config import Settings
from gateway.flow import Flow
from gateway.listeners.guard import AddressGuard, ConnectionCounts
from gateway.listeners.ordered import OrderedReplies
from gateway.logs import RateLimitedLog
from gateway.registry.cache import RegistryCache
from gateway.registry.store import FAILED_IDENTIFICATIONS, Device
from gateway.sinks.history import HistoryWriter
from ingest.pipeline import Ingest

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 16 * 1024
"""Most bytes one read takes from a connection: ~115 NMEA RMC+GGA epochs or ~10 Teltonika
packets of 50 records, a few milliseconds of decoding. Also the most a connection holds
undecoded (16 MiB for 1,000 devices)."""
DECODE_SLICE_S = 0.01
"""A decode pass yields to the event loop after this long, so batch writes, timers and
/metrics get a turn at least every ~10 ms however many devices are streaming."""
TIMER_SLACK_S = 0.01
"""The timer fires this much after its deadline, so the deadline has surely passed."""

C = TypeVar("C", bound="StreamConnection")


class StreamListener(Generic[C]):
    """One TCP port of one device protocol."""

    protocol: ClassVar[str]
    """The `protocol` label of this listener's metrics."""
    listener_label: ClassVar[str]
    """The `listener` label of `fixgate_auth_refused_total`."""

    def __init__(
        self,
        settings: Settings,
        registry: RegistryCache,
        ingest: Ingest,
        writer: HistoryWriter,
        flow: Flow,
        *,
        host: str,
        port: int,
        guard: AddressGuard | None = None,
    ) -> None:
        self.settings = settings
        self.guard = guard or AddressGuard(
            settings.auth_max_failures, settings.auth_failure_window_s, settings.auth_block_s
        )
        """Failed identifications per address; shared by the gateway's listeners."""
        self.open_per_address = ConnectionCounts(settings.tcp_max_connections_per_address)
        self.registry = registry
        self.ingest = ingest
        self.writer = writer
        self.flow = flow
        self.host, self.port = host, port
        self.server: asyncio.Server | None = None
        self.connections: set[C] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.device_log = RateLimitedLog(log)
        self.read_buffer = bytearray(READ_CHUNK_BYTES)
        self._to_decode: deque[C] = deque()
        self._decode_scheduled = False
        self._slice_end: float | None = None
        flow.on_change.append(self._flow_changed)
        registry.on_change.append(self._device_changed)
        metrics.TCP_CONNECTIONS.labels(self.protocol)  # shown at 0 from the start

    def connection(self) -> C:
        """A new connection's protocol object (one per accepted socket)."""
        raise NotImplementedError

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(self.connection, self.host, self.port, backlog=1024)
        port = self.server.sockets[0].getsockname()[1]
        log.info("%s: listening on %s:%d (tcp)", self.protocol, self.host, port)

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    def drain(self) -> int:
        """Stop reading on every connection; each closes once its replies are written.
        Return how many were open."""
        count = len(self.connections)
        for conn in list(self.connections):
            conn.drain()
        return count

    def close_all(self) -> int:
        """Close what `drain()` left open (replies that never became due); return how many."""
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

    def _device_changed(self, device_id: str, device: Device | None) -> None:
        """A device disabled or removed loses its connections at once."""
        if device is not None and device.enabled:
            return
        for conn in list(self.connections):
            if conn.device_id == device_id:
                metrics.TCP_CLOSED.labels(self.protocol, "device_disabled").inc()
                conn.finish(time.time())

    def refused(
        self, who: str, reason: str, peer: str, address: str, label: str | None = None
    ) -> None:
        """Count and log (rate-limited) an identity the registry refused; a wrong id or
        token counts against its address (`gateway.listeners.guard`)."""
        label = label or self.listener_label
        metrics.AUTH_REFUSED.labels(label, reason).inc()
        self.device_log.warning(
            (label, "login", who), time.time(),
            "%s: refused %s peer=%s reason=%s", label, who, peer, reason,
        )  # fmt: skip
        if reason in FAILED_IDENTIFICATIONS and self.guard.failed(address, time.monotonic()):
            metrics.AUTH_BLOCKS.labels(label).inc()
            log.warning(
                "%s: %s failed to identify more than %d times in %.0f s; refused for %.0f s",
                label, address, self.guard.max_failures, self.guard.window_s, self.guard.block_s,
            )  # fmt: skip

    def throttled(self, address: str, label: str | None = None) -> bool:
        """Whether `address` is refused before it identifies (counted when it is)."""
        if not self.guard.blocked(address, time.monotonic()):
            return False
        metrics.AUTH_THROTTLED.labels(label or self.listener_label).inc()
        return True

    # ---- fair decoding -------------------------------------------------------------

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

    def to_decode(self, conn: C) -> None:
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


class StreamConnection(asyncio.BufferedProtocol):
    """One device connection: the base's reads, timer and backpressure around `feed()`."""

    def __init__(self, listener: StreamListener[Any]) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.address = "?"
        """The peer's address (host), as the per-address bounds count it."""
        self.counted = False
        """Counted in the listener's open connections per address."""
        self.device_id: str | None = None
        """The registered device, once its login was accepted."""
        self.logged_in = False
        """Accepted: the idle timeout applies instead of the login timeout."""
        self.busy = False
        """Waiting for something (the registry, a durable fix) with reading paused."""
        self.paused = False
        self.closed = False
        self.draining = False
        self.last_data = time.monotonic()
        self.opened = self.last_data
        self.timer: asyncio.TimerHandle | None = None
        self.pending: bytes | None = None
        """A read not decoded yet (reading is paused meanwhile), and when it arrived."""
        self.pending_at = 0.0
        self.replies: OrderedReplies[bytes] = OrderedReplies(self._write_replies)

    refuse_blocked_at_connect: ClassVar[bool] = True
    """A blocked address's connection is closed at once (HTTP answers 429 per request)."""

    # ---- what a protocol provides ----------------------------------------------------

    def feed(self, data: bytes, now: float) -> None:
        """Bytes read at `now` (wall clock): into the session, and act on its events."""
        raise NotImplementedError

    def end_session(self, now: float) -> None:
        """The connection ends (EOF, closed by us): the session's last events."""
        raise NotImplementedError

    def session_deadline(self) -> float | None:
        """When the session wants `on_session_timer` (wall clock), if ever."""
        return None

    def on_session_timer(self, now: float) -> None:
        return None

    # ---- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream server's: readable, pausable
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.peer = str(peername)
        self.address = str(peername[0]) if isinstance(peername, tuple) else self.peer
        listener = self.listener
        if not listener.open_per_address.opened(self.address):
            metrics.TCP_CLOSED.labels(listener.protocol, "per_address_limit").inc()
            self.closed = True
            transport.abort()
            return
        self.counted = True
        if self.refuse_blocked_at_connect and listener.throttled(self.address):
            # The same for every id it would present: closed before it says which.
            metrics.TCP_CLOSED.labels(listener.protocol, "throttled").inc()
            self.closed = True
            transport.close()
            return
        listener.connections.add(self)
        metrics.TCP_CONNECTIONS.labels(listener.protocol).inc()
        if not listener.flow.open.is_set():
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
        self.feed(data, self.pending_at)  # stamped when it was read
        self.set_reading(True)
        # A new session deadline may be due before the armed timer (login or idle): re-arm.
        deadline = self.session_deadline()
        if deadline is not None and self.timer is not None:
            loop_due = self.timer.when()
            if loop_due > asyncio.get_running_loop().time() + (deadline - time.time()) + 0.05:
                self.timer.cancel()
                self._arm_timer()

    def eof_received(self) -> bool:
        self.decode_pending()  # what was read before the EOF belongs to the session
        self.finish(time.time())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.listener.open_per_address.closed(self.address)
            self.counted = False
        if self not in self.listener.connections:
            return  # refused in connection_made
        self.decode_pending()
        if not self.closed:
            self.closed = True
            self.end_session(time.time())
        self.listener.connections.discard(self)
        metrics.TCP_CONNECTIONS.labels(self.listener.protocol).dec()
        if self.timer is not None:
            self.timer.cancel()

    # ---- control -------------------------------------------------------------------

    def finish(self, now: float) -> None:
        """Decode what was read, end the session, close."""
        if self.closed:
            return
        self.decode_pending()
        if self.closed:
            return
        self.closed = True
        self.end_session(now)
        if self.transport is not None:
            self.transport.close()

    def drain(self) -> None:
        """SIGTERM: read no more; close once every queued reply is written."""
        self.draining = True
        self.decode_pending()
        self.set_reading(False)
        if not self.replies:
            self.finish(time.time())

    def abort(self, reason: str) -> None:
        """Close for `reason` (counted)."""
        metrics.TCP_CLOSED.labels(self.listener.protocol, reason).inc()
        self.finish(time.time())

    def close_now(self, reason: str) -> None:
        """The session gave up (`CloseConnection`): counted, closed without ending it again."""
        metrics.TCP_CLOSED.labels(self.listener.protocol, reason).inc()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _write_replies(self, replies: list[bytes]) -> None:
        self.write(b"".join(replies))
        if self.draining and not self.replies:
            self.finish(time.time())

    def set_reading(self, on: bool) -> None:
        """Idempotent pause/resume (uvicorn's FlowControl); a pending login, or a read
        still waiting to be decoded, also pauses."""
        if self.transport is None or self.closed:
            return
        want_paused = (
            not on
            or self.busy
            or self.draining
            or self.pending is not None
            or not self.listener.flow.open.is_set()
        )
        if want_paused and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        elif not want_paused and self.paused:
            self.transport.resume_reading()
            self.paused = False

    def count_error(self, protocol: str, reason: str, detail: str) -> None:
        metrics.DECODE_ERRORS.labels(protocol, reason).inc()
        self.listener.device_log.warning(
            (protocol, self.device_id or self.peer, reason), time.time(),
            "%s: decode error device=%s peer=%s reason=%s detail=%s",
            protocol, self.device_id, self.peer, reason, detail[:120],
        )  # fmt: skip

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
        deadline = self.session_deadline()  # wall clock
        if deadline is not None:
            due = min(due, mono + max(0.0, deadline - time.time()))
        # loop.time() is monotonic; translate our monotonic deadline onto it.
        self.timer = loop.call_at(
            loop.time() + max(0.0, due - mono) + TIMER_SLACK_S, self._on_timer
        )

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        s = self.listener.settings
        mono, now = time.monotonic(), time.time()
        if not self.logged_in and not self.busy and mono >= self.opened + s.tcp_login_timeout_s:
            self.abort("login_timeout")
            return
        if (
            self.logged_in
            and not self.busy
            and not self.replies
            and mono >= self.last_data + s.tcp_idle_timeout_s
        ):
            self.abort("idle_timeout")
            return
        deadline = self.session_deadline()
        if deadline is not None and now >= deadline:
            self.on_session_timer(now)
        self._arm_timer()
