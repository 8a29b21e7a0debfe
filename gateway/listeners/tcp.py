"""The TCP NMEA listener: a thin asyncio Protocol around `devices.tcp_nmea.TcpNmeaSession`.

Per connection: bytes go into the session as they arrive (no task or future per read),
its events are acted on (a login is verified against the registry, fixes are submitted,
errors counted), and one timer is kept armed for the nearest deadline (login, idle, or
the session's epoch flush). Reads, fairness, backpressure and the drain are the shared
stream shell's (`gateway.listeners.stream`).

What a plain NMEA device can be promised: NMEA over TCP has no acknowledgements, so a fix
counts as received once the gateway has read it; fixes still in the socket or in an open
batch when the gateway is killed can be lost. A SIGTERM drains them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from devices.events import CloseConnection, DecodeError, Ignored, LoginRequest
from devices.fix import Fix
from devices.tcp_nmea import SessionEvent, TcpNmeaSession
from gateway.listeners.stream import READ_CHUNK_BYTES, StreamConnection, StreamListener
from gateway.registry.store import allows

MAX_PENDING_LINES_AT_LOGIN = READ_CHUNK_BYTES
"""Devices stream right after their login line, without waiting for an answer, so the
first read can carry a whole backlog. Reading pauses while the login is verified, so what
the session holds is at most one read, and a read of `READ_CHUNK_BYTES` holds at most one
line per byte. (The core's default, `devices.tcp_nmea.DEFAULT_MAX_PENDING_LINES`, is for
a caller that feeds it without pausing.)"""


class TcpListener(StreamListener["NmeaConnection"]):
    protocol: ClassVar[str] = "nmea"
    listener_label: ClassVar[str] = "tcp"

    def connection(self) -> NmeaConnection:
        return NmeaConnection(self)


class NmeaConnection(StreamConnection):
    def __init__(self, listener: TcpListener) -> None:
        super().__init__(listener)
        s = listener.settings
        self.session = TcpNmeaSession(
            max_line_bytes=s.tcp_max_line_bytes,
            max_errors=s.tcp_max_errors,
            max_pending_lines=MAX_PENDING_LINES_AT_LOGIN,
        )

    def feed(self, data: bytes, now: float) -> None:
        self._act(self.session.feed(data, now))

    def end_session(self, now: float) -> None:
        self._act(self.session.close(now))

    def session_deadline(self) -> float | None:
        return self.session.next_deadline()

    def on_session_timer(self, now: float) -> None:
        self._act(self.session.on_timer(now))

    def _act(self, events: Sequence[SessionEvent]) -> None:
        fixes: list[Fix] = []
        for event in events:
            match event:
                case Fix():
                    fixes.append(event)
                case DecodeError():
                    self.count_error("nmea", event.reason.value, event.detail)
                case LoginRequest():
                    self.busy = True
                    self.set_reading(False)
                    self.listener.spawn(self._verify(event))
                case CloseConnection():
                    self.close_now(str(event.reason))
                case Ignored():
                    pass
        if fixes:
            self.listener.ingest.submit(fixes, time.time())
            self.listener.writer.submitted()

    async def _verify(self, login: LoginRequest) -> None:
        registry = self.listener.registry
        device, refused = await registry.login(login.device_id, login.token)
        if device is not None and not allows(device, "nmea"):
            device, refused = None, "wrong_protocol"
        self.busy = False
        if self.closed:
            return
        if device is None:
            reason = refused or "unknown_device"
            self.listener.refused(login.device_id, reason, self.peer, self.address)
            self.session.reject()
            self.abort("login_refused")
            return
        self.logged_in = True
        self.device_id = device.id
        self._act(self.session.accept(device.id, device.tenant_id, time.time()))
        self.set_reading(True)
