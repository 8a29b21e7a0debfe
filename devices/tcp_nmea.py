"""One NMEA-over-TCP device connection, sans-IO: bytes in, events out.

The conversation: the device's first line is the login, a proprietary sentence
`$PFXGL,<device_id>,<token>*hh`, which becomes a `LoginRequest`. The shell checks it against
the registry (asynchronously) and calls `accept()` or `reject()`; lines arriving meanwhile
wait in a bounded buffer and are decoded on `accept()`. From then on every line goes
through `NmeaDecoder`. Too many decode errors in a row end the session with a
`CloseConnection` event; the shell closes the socket.

    framer (bytes -> lines) -> login -> NmeaDecoder (lines -> fixes)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from devices.checksum import split_sentence, with_checksum
from devices.events import (
    CloseConnection,
    DecodeError,
    DecodeErrorReason,
    ErrorBudget,
    Ignored,
    LoginRequest,
)
from devices.fix import Fix
from devices.framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from devices.nmea import DEFAULT_TIMEOUT_EPOCH_IDLE_S, NmeaDecoder, NmeaEvent, Parser

__all__ = [
    "DEFAULT_MAX_ERRORS",
    "DEFAULT_MAX_PENDING_LINES",
    "SessionEvent",
    "SessionState",
    "TcpNmeaSession",
    "login_sentence",
]

SessionEvent = Fix | DecodeError | Ignored | LoginRequest | CloseConnection

DEFAULT_MAX_ERRORS = 32
"""Decode errors tolerated since the last fix (or since connecting) before giving up. The
worst receiver in the test corpus, a GPS-320FW cold-booting in front of a satellite
simulator, sends 8 broken sentences in a row between fixes; 32 is four times that. A peer
speaking some other protocol produces nothing but errors and is cut off after 33 lines (at
most 33 KiB). The count restarts at every fix, so a healthy device on a long-lived
connection is never cut off for occasional bad sentences."""

DEFAULT_MAX_PENDING_LINES = 64
"""Lines held while the login is verified. The registry answers in milliseconds, in which a
device sends at most one reporting burst (a multi-GNSS receiver emits about 25 sentences a
second); 64 is over two seconds of that, and at most 64 KiB with the default line bound."""

_LOGIN_ADDRESS: Final = b"PFXGL"
_LOGIN_PREFIX: Final = b"$PFXGL,"
# The registry's rules for ids (`gateway.registry.store.add_device`) and tokens
# (`gateway.registry.tokens`), so that every registered device can log in. Lengths need no bound of
# their own: the whole login line is within the framer's `max_line_bytes`.
_FORBIDDEN_DEVICE_ID_CHARS: Final = frozenset("/+#,*$ ")
FORBIDDEN_TOKEN_CHARS: Final = frozenset(",*$\r\n")
"""Login tokens travel inside an NMEA sentence: no commas, asterisks or dollar signs
(the registry refuses such tokens, `gateway.registry.tokens`)."""


class SessionState(enum.Enum):
    AWAIT_LOGIN = "await_login"
    """No login line yet: anything else is `NOT_LOGGED_IN`."""
    AWAIT_ACCEPT = "await_accept"
    """`LoginRequest` returned; lines are held until `accept()` or `reject()`."""
    ACCEPTED = "accepted"
    """Lines are decoded into fixes."""
    CLOSED = "closed"
    """Rejected, given up (`CloseConnection`) or finished at EOF: input is discarded."""


def login_sentence(device_id: str, token: str) -> bytes:
    """The login line a device sends first: `$PFXGL,<device_id>,<token>*hh` plus CR LF."""
    if not _is_device_id(device_id):
        raise ValueError(
            f"not a device id (empty, unprintable or one of /+#,*$ and space): {device_id!r}"
        )
    if not _is_token(token):
        raise ValueError("not a token (empty, unprintable, or one of , * $)")
    body = b"%s,%s,%s" % (_LOGIN_ADDRESS, device_id.encode(), token.encode())
    return with_checksum(body) + b"\r\n"


class TcpNmeaSession:
    """Login, then NMEA decoding, for one TCP connection.

    Every method returns the events its input produced, in order. Bad input is a
    `DecodeError` event; the only exceptions are for calls made in the wrong state.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_errors: int = DEFAULT_MAX_ERRORS,
        max_pending_lines: int = DEFAULT_MAX_PENDING_LINES,
        timeout_epoch_idle_s: float = DEFAULT_TIMEOUT_EPOCH_IDLE_S,
        parser: Parser = "fast",
    ) -> None:
        if max_pending_lines < 0:
            raise ValueError("max_pending_lines must not be negative")
        self.errors = ErrorBudget(max_errors)
        self.max_pending_lines = max_pending_lines
        self.timeout_epoch_idle_s = timeout_epoch_idle_s
        self._parser: Parser = parser
        self._framer = LineFramer(max_line_bytes)
        self._state = SessionState.AWAIT_LOGIN
        self._decoder: NmeaDecoder | None = None
        self._pending: list[bytes] = []
        self._eof = False  # `close()` was called (possibly while the login was verified)

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def device_id(self) -> str | None:
        """The accepted device, once `accept()` has been called."""
        return None if self._decoder is None else self._decoder.device_id

    def feed(self, data: bytes | bytearray | memoryview, now: float) -> list[SessionEvent]:
        """Bytes received at `now` (Unix seconds, wall clock); `b""` is not EOF, see `close()`."""
        out: list[SessionEvent] = []
        if self._state is SessionState.CLOSED or self._eof:
            return out  # the shell is closing the socket; stragglers are discarded
        items = self._framer.feed(data)
        decoder = self._decoder
        if self._state is SessionState.ACCEPTED and decoder is not None:
            # The hot path: straight to the decoder, nothing else to decide per line.
            for item in items:
                events = decoder.feed_line(item, now) if isinstance(item, bytes) else [item]
                if events:
                    self._take(events, out)
                    if self._closed():
                        break
            return out
        for item in items:
            if isinstance(item, DecodeError):
                self._take_error(item, out)
            else:
                self._on_line(item, now, out)
            if self._closed():
                break
        return out

    def accept(self, device_id: str, tenant_id: str, now: float) -> list[SessionEvent]:
        """The registry accepted the login: decode the held lines (stamped `now`)."""
        if self._state is SessionState.CLOSED:
            return []  # gave up while the registry was answering; nothing to do
        if self._state is not SessionState.AWAIT_ACCEPT:
            raise RuntimeError(f"accept() in state {self._state.value}")
        self._decoder = NmeaDecoder(
            device_id,
            tenant_id,
            timeout_epoch_idle_s=self.timeout_epoch_idle_s,
            parser=self._parser,
        )
        self._state = SessionState.ACCEPTED
        pending, self._pending = self._pending, []
        out: list[SessionEvent] = []
        for line in pending:
            self._decode(line, now, out)
            if self._closed():
                return out
        if self._eof:
            self._take(self._decoder.flush(now), out)
            self._state = SessionState.CLOSED
        return out

    def reject(self) -> None:
        """The registry refused the login: discard everything; the shell closes."""
        if self._state is SessionState.AWAIT_LOGIN or self._state is SessionState.ACCEPTED:
            raise RuntimeError(f"reject() in state {self._state.value}")
        self._pending.clear()
        self._state = SessionState.CLOSED

    def close(self, now: float) -> list[SessionEvent]:
        """EOF: decode a trailing unterminated line and emit the pending epoch.

        If the login is still being verified, the held lines wait: the shell must still
        call `accept()` (which then decodes and flushes them) or `reject()`.
        """
        out: list[SessionEvent] = []
        if self._state is SessionState.CLOSED or self._eof:
            return out
        self._eof = True
        for item in self._framer.close():
            if isinstance(item, DecodeError):
                self._take_error(item, out)
            else:
                self._on_line(item, now, out)
        if self._state is SessionState.ACCEPTED and self._decoder is not None:
            self._take(self._decoder.flush(now), out)
        if self._state is not SessionState.AWAIT_ACCEPT:
            self._state = SessionState.CLOSED
        return out

    def next_deadline(self) -> float | None:
        """When `on_timer()` wants to run (same clock as `now`), or None."""
        if self._state is not SessionState.ACCEPTED or self._decoder is None:
            return None
        return self._decoder.next_deadline()

    def on_timer(self, now: float) -> list[SessionEvent]:
        """Emit the epoch of a device that went quiet (see `NmeaDecoder.on_timer`)."""
        out: list[SessionEvent] = []
        if self._state is SessionState.ACCEPTED and self._decoder is not None:
            self._take(self._decoder.on_timer(now), out)
        return out

    def _closed(self) -> bool:
        # A method, not an inline test: the state changes under calls like `_take()`.
        return self._state is SessionState.CLOSED

    # -- lines -----------------------------------------------------------------------------

    def _on_line(self, line: bytes, now: float, out: list[SessionEvent]) -> None:
        state = self._state
        if state is SessionState.ACCEPTED:
            self._decode(line, now, out)
        elif state is SessionState.AWAIT_ACCEPT:
            if len(self._pending) < self.max_pending_lines:
                self._pending.append(line)
            else:
                detail = f"{self.max_pending_lines} lines already held"
                self._take_error(DecodeError(DecodeErrorReason.PENDING_OVERFLOW, detail), out)
        else:
            self._login(line, out)

    def _decode(self, line: bytes, now: float, out: list[SessionEvent]) -> None:
        assert self._decoder is not None
        events = self._decoder.feed_line(line, now)
        if events:
            self._take(events, out)

    def _login(self, line: bytes, out: list[SessionEvent]) -> None:
        if not line.startswith(_LOGIN_PREFIX):
            excerpt = line[:24].decode("ascii", "backslashreplace")
            self._take_error(DecodeError(DecodeErrorReason.NOT_LOGGED_IN, excerpt), out)
            return
        body = split_sentence(line)
        if not isinstance(body, bytes):
            self._take_error(DecodeError(DecodeErrorReason.BAD_LOGIN, body.value), out)
            return
        request = _parse_login(body)
        if request is None:
            self._take_error(DecodeError(DecodeErrorReason.BAD_LOGIN, "malformed"), out)
            return
        out.append(request)
        self._state = SessionState.AWAIT_ACCEPT

    # -- error budget ----------------------------------------------------------------------

    def _take(self, events: Sequence[NmeaEvent], out: list[SessionEvent]) -> None:
        for event in events:
            if isinstance(event, DecodeError):
                self._take_error(event, out)
                if self._state is SessionState.CLOSED:
                    return
            else:
                if isinstance(event, Fix):
                    self.errors.reset()
                out.append(event)

    def _take_error(self, error: DecodeError, out: list[SessionEvent]) -> None:
        out.append(error)
        closing = self.errors.spend(f"the last fix, last: {error.reason}")
        if closing is not None:
            out.append(closing)
            self._state = SessionState.CLOSED
            self._pending.clear()


def _parse_login(body: bytes) -> LoginRequest | None:
    parts = body.split(b",")
    if len(parts) != 3 or parts[0] != _LOGIN_ADDRESS:
        return None
    try:
        device_id, token = parts[1].decode(), parts[2].decode()
    except UnicodeDecodeError:
        return None
    if not _is_device_id(device_id) or not _is_token(token):
        return None
    return LoginRequest(device_id, token)


def _is_device_id(text: str) -> bool:
    return bool(text) and text.isprintable() and not _FORBIDDEN_DEVICE_ID_CHARS.intersection(text)


def _is_token(text: str) -> bool:
    return bool(text) and text.isprintable() and not FORBIDDEN_TOKEN_CHARS.intersection(text)
