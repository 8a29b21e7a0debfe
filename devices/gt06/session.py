"""One GT06 (Concox) TCP connection, sans-IO: bytes in, events out, responses as data.

How the shell drives it:

1. `feed(data, now)` returns events; the device's first frame, the login (0x01), becomes
   `DeviceLogin(imei)`.
2. The shell looks the IMEI up, then calls `accept(device_id, tenant_id)` (which returns
   the login response `7878 05 01 <serial> <crc> 0D0A` to write at once) or `reject()`
   (GT06 has no refusal message: it returns b"" and the shell closes). Frames that arrive
   before the answer stay buffered and are decoded by the next `feed()` (call
   `feed(b"", now)` after writing the response to decode them at once).
3. Each message becomes a `Gt06Packet` (a `FixBatch`): the shell makes its `fixes` durable,
   then writes its `reply` when non-empty. The protocol defines a response for the login,
   the heartbeat (0x13) and the alarms (0x16, 0x26, 0x27, 0x32): `7878 05 <protocol>
   <serial> <crc> 0D0A`; location messages have none (reply b""). A heartbeat has no fix
   but its status and its reply.
4. `DecodeError` events are counted; the session goes on (GT06 can resynchronise on its
   start markers) unless the login is refused, a second login names another IMEI, or
   `max_errors` errors come in a row (`CloseConnection`). `close(now)` at EOF reports a
   frame cut short.

Frames from a device that has not logged in are `NOT_LOGGED_IN` errors: without the login
there is no identity to store them under.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Final

from devices.events import (
    CloseConnection,
    CloseReason,
    DecodeError,
    DecodeErrorReason,
    DeviceLogin,
    ErrorBudget,
    FixBatch,
    Ignored,
)
from devices.fix import Fix, Protocol
from devices.gt06.decoder import (
    ALARM_PROTOCOLS,
    HEARTBEAT,
    LOGIN,
    Heartbeat,
    Location,
    Login,
    TerminalStatus,
    decode_frame,
)
from devices.gt06.framer import Gt06Frame, Gt06Framer, build_frame
from devices.units import kmh_to_mps

__all__ = [
    "DEFAULT_MAX_ERRORS",
    "RESPONSE_PROTOCOLS",
    "Gt06Event",
    "Gt06Packet",
    "Gt06Session",
    "SessionState",
    "response",
]

DEFAULT_MAX_ERRORS = 16
"""Decode errors tolerated since the last good frame before closing. GT06 firmwares mix in
vendor messages fixgate does not decode, and garbage costs one error per run (not per
byte), so a healthy device rarely has more than a few in a row; 16 in a row is a peer that
is not speaking GT06, cut off after at most 16 frames' worth of bytes."""

RESPONSE_PROTOCOLS: Final = frozenset({LOGIN, HEARTBEAT}) | ALARM_PROTOCOLS
"""Messages the server must answer; the device resends them until it is answered."""


class Gt06Packet(FixBatch, frozen=True, kw_only=True):
    """One decoded message: its fix (none for a heartbeat), response, and status."""

    protocol: int
    serial: int
    status: TerminalStatus | None


Gt06Event = DeviceLogin | Gt06Packet | Ignored | DecodeError | CloseConnection


class SessionState(enum.Enum):
    AWAIT_LOGIN = "await_login"
    AWAIT_ACCEPT = "await_accept"
    ACCEPTED = "accepted"
    CLOSED = "closed"


def response(protocol: int, serial: int) -> bytes:
    """The server's acknowledgement of a message: `7878 05 <protocol> <serial> <crc> 0D0A`."""
    return build_frame(protocol, b"", serial)


class Gt06Session:
    """Login, then messages, for one GT06 TCP connection."""

    def __init__(self, *, max_errors: int = DEFAULT_MAX_ERRORS) -> None:
        self.errors = ErrorBudget(max_errors)
        self._framer = Gt06Framer()
        self._state = SessionState.AWAIT_LOGIN
        self._imei: str | None = None
        self._login_serial = 0
        self._utc_offset_s = 0
        self._device_id: str | None = None
        self._tenant_id: str | None = None

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def imei(self) -> str | None:
        return self._imei

    @property
    def utc_offset_s(self) -> int:
        """The device's time zone from its login (0 when it declared none)."""
        return self._utc_offset_s

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> list[Gt06Event]:
        """Bytes received at `now` (Unix seconds, wall clock). `b""` decodes held bytes."""
        out: list[Gt06Event] = []
        if self._closed():
            return out
        self._framer.feed(data)
        received_at: datetime | None = None
        while self._state is SessionState.AWAIT_LOGIN or self._state is SessionState.ACCEPTED:
            item = self._framer.next_frame()
            if item is None:
                break
            if isinstance(item, DecodeError):
                self._error(item, out)
                continue
            if received_at is None:
                received_at = datetime.fromtimestamp(now, UTC)
            self._on_frame(item, received_at, out)
        if not self._closed() and self._framer.over_limit():
            detail = f"{self._framer.buffered_bytes} bytes held in state {self._state.value}"
            out.append(DecodeError(DecodeErrorReason.PENDING_OVERFLOW, detail))
            self._close(CloseConnection(CloseReason.PROTOCOL_ERROR, detail), out)
        return out

    def accept(self, device_id: str, tenant_id: str) -> bytes:
        """The registry accepted the IMEI: the login response to send."""
        if self._closed():
            return b""
        if self._state is not SessionState.AWAIT_ACCEPT:
            raise RuntimeError(f"accept() in state {self._state.value}")
        if not device_id or not tenant_id:
            raise ValueError("device_id and tenant_id must be non-empty")
        self._device_id, self._tenant_id = device_id, tenant_id
        self._state = SessionState.ACCEPTED
        return response(LOGIN, self._login_serial)

    def reject(self) -> bytes:
        """The registry refused the IMEI: GT06 has no refusal, so nothing to send; close."""
        if self._state is not SessionState.AWAIT_ACCEPT and not self._closed():
            raise RuntimeError(f"reject() in state {self._state.value}")
        self._state = SessionState.CLOSED
        self._framer.clear()
        return b""

    def close(self, now: float) -> list[Gt06Event]:
        """EOF: a frame cut short is a `TRUNCATED` error. The session is then closed."""
        out: list[Gt06Event] = []
        if self._closed():
            return out
        if self._state is not SessionState.AWAIT_ACCEPT:
            error = self._framer.eof_error()
            if error is not None:
                out.append(error)
        self._state = SessionState.CLOSED
        self._framer.clear()
        return out

    def next_deadline(self) -> float | None:
        """The protocol has no timer of its own (idle timeouts are the shell's)."""
        return None

    def on_timer(self, now: float) -> list[Gt06Event]:
        return []

    def _closed(self) -> bool:
        # A method, not an inline test: the state changes under calls like `_on_frame()`.
        return self._state is SessionState.CLOSED

    # -- messages --------------------------------------------------------------------------

    def _on_frame(self, frame: Gt06Frame, received_at: datetime, out: list[Gt06Event]) -> None:
        message = decode_frame(frame, self._utc_offset_s)
        if isinstance(message, DecodeError):
            self._error(message, out)
            return
        if isinstance(message, Login):
            self._login(message, frame.serial, out)
            return
        if self._state is not SessionState.ACCEPTED:
            detail = f"protocol 0x{frame.protocol:02X} before the login"
            self._error(DecodeError(DecodeErrorReason.NOT_LOGGED_IN, detail), out)
            return
        self.errors.reset()
        if isinstance(message, Ignored):
            out.append(message)
            return
        reply = (
            response(frame.protocol, frame.serial) if frame.protocol in RESPONSE_PROTOCOLS else b""
        )
        if isinstance(message, Heartbeat):
            status = message.status
            fixes: tuple[Fix, ...] = ()
        else:
            assert isinstance(message, Location)
            status = message.status
            fixes = (self._fix(message, received_at),)
        out.append(
            Gt06Packet(
                fixes=fixes,
                reply=reply,
                protocol=frame.protocol,
                serial=frame.serial,
                status=status,
            )
        )

    def _login(self, login: Login, serial: int, out: list[Gt06Event]) -> None:
        if self._state is SessionState.AWAIT_LOGIN:
            self._imei = login.imei
            self._login_serial = serial
            self._utc_offset_s = login.utc_offset_s or 0
            self._state = SessionState.AWAIT_ACCEPT
            self.errors.reset()
            out.append(DeviceLogin(login.imei))
        elif login.imei == self._imei:  # a repeated login (it missed our response): answer
            self.errors.reset()
            out.append(
                Gt06Packet(
                    fixes=(),
                    reply=response(LOGIN, serial),
                    protocol=LOGIN,
                    serial=serial,
                    status=None,
                )
            )
        else:
            detail = f"second login as {login.imei}, logged in as {self._imei}"
            out.append(DecodeError(DecodeErrorReason.BAD_LOGIN, detail))
            self._close(CloseConnection(CloseReason.PROTOCOL_ERROR, detail), out)

    def _fix(self, location: Location, received_at: datetime) -> Fix:
        assert self._device_id is not None and self._tenant_id is not None
        return Fix(
            device_id=self._device_id,
            tenant_id=self._tenant_id,
            time=location.time,
            lat=location.lat,
            lon=location.lon,
            speed=kmh_to_mps(location.speed_kmh),
            heading=None if location.course_deg is None else float(location.course_deg),
            satellites=location.satellites,
            valid=location.positioned,
            protocol=Protocol.GT06,
            received_at=received_at,
            ignition=location.ignition,
            alarm=location.alarm,
        )

    # -- errors ----------------------------------------------------------------------------

    def _error(self, error: DecodeError, out: list[Gt06Event]) -> None:
        out.append(error)
        closing = self.errors.spend("the last good frame")
        if closing is not None:
            self._close(closing, out)

    def _close(self, event: CloseConnection, out: list[Gt06Event]) -> None:
        out.append(event)
        self._state = SessionState.CLOSED
        self._framer.clear()
