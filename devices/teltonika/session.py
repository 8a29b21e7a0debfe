"""One Teltonika TCP connection, sans-IO: bytes in, events out, acknowledgements as data.

The conversation (Teltonika Data Sending Protocols, "communication with server"):

    device: 000F 333536333037303432343431303133     IMEI login
    server: 01                                      accepted (00: refused, then closed)
    device: 00000000 <length> <AVL data> <CRC>      n records
    server: 0000000n                                 n records received: delete them

How the shell drives it:

1. `feed(data, now)` returns events. The first is `DeviceLogin(imei)`.
2. The shell looks the IMEI up, then calls `accept(device_id, tenant_id)` or `reject()`
   and writes the byte it returns (0x01 / 0x00; after 0x00 it closes the socket). A device
   waits for that byte before sending AVL data; anything it sent early stays buffered and
   is decoded by the next `feed()` (call `feed(b"", now)` after writing 0x01 if you want
   it decoded at once).
3. Each AVL frame becomes an `AvlPacket` (a `FixBatch`): the shell makes its `fixes`
   durable, then writes its `reply`, the four-byte record count. The session never sends
   anything itself, so a crash before durability means no acknowledgement, and the device
   sends the records again.
4. `DecodeError` events are counted; a `CloseConnection` event means close the socket.
   `close(now)` at EOF reports a frame cut short.

What each bad input does (the protocol has no resynchronisation marker):
- bad CRC: error, frame skipped, no acknowledgement (the device resends it); goes on.
- unsupported codec (12/13 command frames, 7), records that do not follow the layout,
  counts that disagree: error, no acknowledgement; goes on (the frame was intact).
- wrong preamble, impossible or oversized length, bad login: error, then close.
- more than `max_errors` errors since the last good frame: close (`TOO_MANY_ERRORS`).
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
from devices.teltonika.avl import AvlData, AvlRecord, parse_avl_data, record_fix
from devices.teltonika.framer import (
    MAX_AVL_DATA_BYTES,
    AvlFrame,
    Desync,
    ImeiFrame,
    Keepalive,
    TeltonikaFramer,
)

__all__ = [
    "DEFAULT_MAX_ERRORS",
    "LOGIN_ACCEPTED",
    "LOGIN_REFUSED",
    "AvlPacket",
    "SessionState",
    "TeltonikaEvent",
    "TeltonikaSession",
    "record_count_ack",
]

DEFAULT_MAX_ERRORS = 8
"""Decode errors tolerated since the last good frame before closing. A Teltonika unit
resends an unacknowledged packet until it is acknowledged, so a packet that cannot be
decoded arrives again and again; 8 in a row is past any transient corruption, and closing
makes the device reconnect (and log in) rather than loop on one connection forever."""

LOGIN_ACCEPTED: Final = b"\x01"
LOGIN_REFUSED: Final = b"\x00"
_IGNORED_KEEPALIVE: Final = Ignored(kind="keepalive")


class AvlPacket(FixBatch, frozen=True, kw_only=True):
    """One AVL frame: every record, its fix, and the acknowledgement (the record count)."""

    codec: int
    records: tuple[AvlRecord, ...]


TeltonikaEvent = DeviceLogin | AvlPacket | Ignored | DecodeError | CloseConnection


class SessionState(enum.Enum):
    AWAIT_LOGIN = "await_login"
    AWAIT_ACCEPT = "await_accept"
    """`DeviceLogin` returned; bytes are held until `accept()` or `reject()`."""
    ACCEPTED = "accepted"
    CLOSED = "closed"


def record_count_ack(count: int) -> bytes:
    """The server's answer to an AVL frame (TCP): the number of records, u32 big-endian."""
    return count.to_bytes(4, "big")


class TeltonikaSession:
    """Login, then AVL frames, for one TCP connection."""

    def __init__(
        self,
        *,
        max_avl_data_bytes: int = MAX_AVL_DATA_BYTES,
        max_errors: int = DEFAULT_MAX_ERRORS,
    ) -> None:
        self.errors = ErrorBudget(max_errors)
        self._framer = TeltonikaFramer(max_avl_data_bytes=max_avl_data_bytes)
        self._state = SessionState.AWAIT_LOGIN
        self._imei: str | None = None
        self._device_id: str | None = None
        self._tenant_id: str | None = None

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def imei(self) -> str | None:
        """The IMEI the device logged in with, once it has."""
        return self._imei

    @property
    def device_id(self) -> str | None:
        """The accepted device, once `accept()` has been called."""
        return self._device_id

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> list[TeltonikaEvent]:
        """Bytes received at `now` (Unix seconds, wall clock). `b""` decodes held bytes."""
        out: list[TeltonikaEvent] = []
        if self._state is SessionState.CLOSED:
            return out
        self._framer.feed(data)
        if self._state is SessionState.AWAIT_LOGIN:
            self._login(out)
        if self._state is SessionState.ACCEPTED:
            self._frames(now, out)
        if not self._closed() and self._framer.over_limit():
            detail = f"{self._framer.buffered_bytes} bytes held in state {self._state.value}"
            self._fatal(DecodeError(DecodeErrorReason.PENDING_OVERFLOW, detail), out)
        return out

    def accept(self, device_id: str, tenant_id: str) -> bytes:
        """The registry accepted the IMEI: the byte to send (0x01)."""
        if self._state is SessionState.CLOSED:
            return b""  # gave up while the registry was answering
        if self._state is not SessionState.AWAIT_ACCEPT:
            raise RuntimeError(f"accept() in state {self._state.value}")
        if not device_id or not tenant_id:
            raise ValueError("device_id and tenant_id must be non-empty")
        self._device_id, self._tenant_id = device_id, tenant_id
        self._state = SessionState.ACCEPTED
        return LOGIN_ACCEPTED

    def reject(self) -> bytes:
        """The registry refused the IMEI: the byte to send (0x00) before closing."""
        if self._state is SessionState.CLOSED:
            return b""
        if self._state is not SessionState.AWAIT_ACCEPT:
            raise RuntimeError(f"reject() in state {self._state.value}")
        self._state = SessionState.CLOSED
        self._framer.clear()
        return LOGIN_REFUSED

    def close(self, now: float) -> list[TeltonikaEvent]:
        """EOF: a frame cut short is a `TRUNCATED` error. The session is then closed."""
        out: list[TeltonikaEvent] = []
        if self._state is SessionState.CLOSED:
            return out
        held = self._framer.buffered_bytes
        if held and self._state is not SessionState.AWAIT_ACCEPT:
            detail = f"EOF with {held} bytes of an incomplete frame"
            out.append(DecodeError(DecodeErrorReason.TRUNCATED, detail))
        self._state = SessionState.CLOSED
        self._framer.clear()
        return out

    def next_deadline(self) -> float | None:
        """The protocol has no timer of its own (idle timeouts are the shell's)."""
        return None

    def on_timer(self, now: float) -> list[TeltonikaEvent]:
        return []

    def _closed(self) -> bool:
        # A method, not an inline test: the state changes under calls like `_frames()`.
        return self._state is SessionState.CLOSED

    # -- phases ----------------------------------------------------------------------------

    def _login(self, out: list[TeltonikaEvent]) -> None:
        while self._state is SessionState.AWAIT_LOGIN:
            item = self._framer.next_login()
            if item is None:
                return
            if isinstance(item, Keepalive):
                out.append(_IGNORED_KEEPALIVE)
            elif isinstance(item, Desync):
                self._fatal(item.error, out)
            else:
                assert isinstance(item, ImeiFrame)
                self._imei = item.imei
                self._state = SessionState.AWAIT_ACCEPT
                out.append(DeviceLogin(item.imei))

    def _frames(self, now: float, out: list[TeltonikaEvent]) -> None:
        received_at: datetime | None = None
        while self._state is SessionState.ACCEPTED:
            item = self._framer.next_frame()
            if item is None:
                return
            if isinstance(item, AvlFrame):
                parsed = parse_avl_data(item.data)
                if isinstance(parsed, DecodeError):
                    self._error(parsed, out)
                    continue
                if received_at is None:
                    received_at = datetime.fromtimestamp(now, UTC)
                out.append(self._packet(parsed, received_at))
                self.errors.reset()
            elif isinstance(item, Keepalive):
                out.append(_IGNORED_KEEPALIVE)
            elif isinstance(item, Desync):
                self._fatal(item.error, out)
            else:
                self._error(item, out)

    def _packet(self, parsed: AvlData, received_at: datetime) -> AvlPacket:
        assert self._device_id is not None and self._tenant_id is not None
        device_id, tenant_id = self._device_id, self._tenant_id
        fixes = tuple(record_fix(r, device_id, tenant_id, received_at) for r in parsed.records)
        return AvlPacket(
            fixes=fixes,
            reply=record_count_ack(len(parsed.records)),
            codec=parsed.codec,
            records=parsed.records,
        )

    # -- errors ----------------------------------------------------------------------------

    def _error(self, error: DecodeError, out: list[TeltonikaEvent]) -> None:
        out.append(error)
        closing = self.errors.spend("the last good frame")
        if closing is not None:
            self._close(closing, out)

    def _fatal(self, error: DecodeError, out: list[TeltonikaEvent]) -> None:
        out.append(error)
        self._close(CloseConnection(CloseReason.PROTOCOL_ERROR, error.reason.value), out)

    def _close(self, event: CloseConnection, out: list[TeltonikaEvent]) -> None:
        out.append(event)
        self._state = SessionState.CLOSED
        self._framer.clear()
