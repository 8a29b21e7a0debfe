"""Events that device protocol sessions return besides fixes.

Bad device input is a `DecodeError` event with a reason, never an exception: the session
keeps going (wsproto's `ParseFailed` becoming a `CloseConnection` event). Reasons are
Prometheus labels, so the set is closed.
"""

from __future__ import annotations

import enum

import msgspec


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


class CloseConnection(msgspec.Struct, frozen=True):
    """The session gave up on the peer; the shell must close the connection.

    The session has already stopped processing input when it returns this event.
    """

    reason: CloseReason
    detail: str = ""


class Ignored(msgspec.Struct, frozen=True):
    """Well-formed input that carries no fix by design (OwnTracks lwt, NMEA GSV...)."""

    kind: str
