"""Events that device protocol sessions return besides fixes.

Bad device input is a `DecodeError` event with a reason, never an exception: the session
keeps going (wsproto's `ParseFailed` becoming a `CloseConnection` event). Reasons are
Prometheus labels, so the set is closed.
"""

from __future__ import annotations

import enum

import msgspec

from devices.fix import Fix


class DecodeErrorReason(enum.StrEnum):
    BAD_CHECKSUM = "bad_checksum"
    MISSING_CHECKSUM = "missing_checksum"
    LINE_TOO_LONG = "line_too_long"
    NOT_NMEA = "not_nmea"
    BAD_SENTENCE = "bad_sentence"
    UNSUPPORTED_SENTENCE = "unsupported_sentence"
    NO_DATE = "no_date"
    INVALID_JSON = "invalid_json"
    WRONG_TYPE = "wrong_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    OUT_OF_RANGE = "out_of_range"
    """Valid JSON of the right type whose value is physically impossible (lat 91, speed < 0)."""
    EMPTY_BATCH = "empty_batch"
    """A JSON batch (array) with no fixes in it."""
    BATCH_TOO_LARGE = "batch_too_large"
    """A JSON batch with more fixes than the decoder's `max_fixes_per_message`."""
    NOT_LOGGED_IN = "not_logged_in"
    BAD_LOGIN = "bad_login"
    MALFORMED_CHECKSUM = "malformed_checksum"
    """A `*` is present but not followed by exactly two hex digits at the end of the line."""
    NO_TIME = "no_time"
    """A position without a time of day: it cannot be placed in any epoch."""
    PENDING_OVERFLOW = "pending_overflow"
    """A line arrived while the login was being verified and the holding buffer was full."""
    # Appended for the binary trackers and the Traccar Client app (issue 12).
    IMPOSSIBLE_LENGTH = "impossible_length"
    """A length field below the protocol's minimum, or one its datagram contradicts."""
    FRAME_TOO_LARGE = "frame_too_large"
    """A length field above the protocol's named maximum (`max_*_bytes`)."""
    BAD_FRAME = "bad_frame"
    """Bytes that are not a frame: a wrong preamble, start or stop marker, or garbage."""
    TRUNCATED = "truncated"
    """The stream ended (EOF) in the middle of a frame."""
    UNSUPPORTED_CODEC = "unsupported_codec"
    """A well-formed Teltonika frame of a codec fixgate does not decode (12, 13, 7...)."""
    UNSUPPORTED_MESSAGE = "unsupported_message"
    """A well-formed GT06 frame of a protocol number fixgate does not know."""
    BAD_RECORD = "bad_record"
    """A checksummed frame whose body does not follow its codec's or message's layout."""
    RECORD_COUNT_MISMATCH = "record_count_mismatch"
    """Teltonika: the two record counts disagree, or differ from the records present."""
    MISSING_FIELD = "missing_field"
    """A required field is absent (`detail` names it)."""
    BAD_FIELD = "bad_field"
    """A field that does not parse as its type (`detail` names it)."""
    # Appended for the per-message bounds of NMEA over MQTT (issue 20).
    TOO_MANY_LINES = "too_many_lines"
    """A message with more lines than its listener's `max_*_lines`: the rest is refused."""
    TOO_MANY_ERRORS = "too_many_errors"
    """A message with more decode errors than its listener's `max_*_errors`: the rest is refused."""


class DecodeError(msgspec.Struct, frozen=True):
    """Input that could not become a fix. `detail` is for a (rate-limited) log line."""

    reason: DecodeErrorReason
    detail: str = ""


class LoginRequest(msgspec.Struct, frozen=True):
    """A TCP device identified itself; the shell must verify it against the registry."""

    device_id: str
    token: str


class CloseReason(enum.StrEnum):
    TOO_MANY_ERRORS = "too_many_errors"
    PROTOCOL_ERROR = "protocol_error"
    """The stream cannot be followed any more (a bad length or preamble in a protocol with
    no resynchronisation marker); the device reconnects and logs in again."""


class CloseConnection(msgspec.Struct, frozen=True):
    """The session gave up on the peer; the shell must close the connection.

    The session has already stopped processing input when it returns this event.
    """

    reason: CloseReason
    detail: str = ""


class Ignored(msgspec.Struct, frozen=True):
    """Well-formed input that carries no fix by design (OwnTracks lwt, NMEA GSV...)."""

    kind: str


class DeviceLogin(msgspec.Struct, frozen=True):
    """A binary tracker identified itself by IMEI (Teltonika, GT06).

    The shell looks the IMEI up in the registry, then calls the session's `accept()` or
    `reject()` and writes the bytes they return to the device at once.
    """

    imei: str


class FixBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Fixes to make durable, and the bytes that acknowledge them to the device.

    The shell commits or spools `fixes` and only then writes `reply` (when non-empty), in
    the order the events came: the device deletes what `reply` acknowledges, so sending it
    early loses data on a crash. A batch with no fixes (a heartbeat) still carries its
    reply, which waits behind the replies of earlier batches. Protocol sessions return
    subclasses with what the protocol said besides the fixes.
    """

    fixes: tuple[Fix, ...]
    reply: bytes


class ErrorBudget:
    """Decode errors a session tolerates since its last good fix or frame; past the bound
    it gives up on the peer. One mechanism for every stream protocol (NMEA, Teltonika,
    GT06): a healthy device's occasional bad sentence never costs it the connection, a
    peer speaking something else is cut off after `max_errors` + 1 errors."""

    __slots__ = ("max_errors", "spent")

    def __init__(self, max_errors: int) -> None:
        if max_errors < 0:
            raise ValueError(f"max_errors must not be negative, not {max_errors}")
        self.max_errors = max_errors
        self.spent = 0

    def reset(self) -> None:
        """A good fix or frame: the count starts again."""
        self.spent = 0

    def spend(self, since: str) -> CloseConnection | None:
        """Count one error; the close event once the budget is exhausted."""
        self.spent += 1
        if self.spent <= self.max_errors:
            return None
        return CloseConnection(
            CloseReason.TOO_MANY_ERRORS, f"{self.spent} decode errors since {since}"
        )
