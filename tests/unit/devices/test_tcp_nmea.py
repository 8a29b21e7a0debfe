"""devices.tcp_nmea.TcpNmeaSession: login, held lines, error budget, EOF and timer."""

from __future__ import annotations

from typing import Any

import pytest

from devices.checksum import with_checksum
from devices.events import (
    CloseConnection,
    CloseReason,
    DecodeError,
    Ignored,
    LoginRequest,
)
from devices.events import DecodeErrorReason as R
from devices.fix import Fix
from devices.nmea import DEFAULT_TIMEOUT_EPOCH_IDLE_S
from devices.tcp_nmea import SessionEvent, SessionState, TcpNmeaSession, login_sentence
from tests.support.paths import gpsd_log_bytes as log_bytes
from tests.support.sanity import assert_sane_fix

NOW = 1_700_000_000.0
DEVICE, TOKEN, TENANT = "truck-7", "s3cret-token-0001", "acme"
LOGIN = login_sentence(DEVICE, TOKEN)
# gpsd quectelLC79D-1.log: two consecutive epochs; the second closes the first.
EPOCH_1 = (
    b"$GNRMC,080359.00,A,5002.453527,N,01958.831794,E,0.0,16.6,301120,,,A,V*0D\r\n"
    b"$GNGGA,080359.00,5002.453527,N,01958.831794,E,1,14,0.9,202.1,M,,M,,*66\r\n"
)
EPOCH_2 = b"$GNRMC,080400.00,A,5002.453527,N,01958.831794,E,0.0,16.6,301120,,,A,V*06\r\n"
GARBAGE = b"$GPRMC,080400.00,A*00\r\n"  # bad checksum


def kinds(events: list[SessionEvent]) -> list[object]:
    """Each event as its reason (errors, closes), kind (ignored) or class name."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Fix):
            assert_sane_fix(event)
        if isinstance(event, DecodeError | CloseConnection):
            out.append(event.reason)
        elif isinstance(event, Ignored):
            out.append(event.kind)
        else:
            out.append(type(event).__name__)
    return out


def accepted(**bounds: Any) -> TcpNmeaSession:
    session = TcpNmeaSession(**bounds)
    assert session.feed(LOGIN, NOW) == [LoginRequest(DEVICE, TOKEN)]
    assert session.accept(DEVICE, TENANT, NOW) == []
    return session


# -- login -------------------------------------------------------------------------------------


def test_login_line_is_a_login_request() -> None:
    assert TcpNmeaSession().feed(LOGIN, NOW) == [LoginRequest(DEVICE, TOKEN)]


def test_login_sentence_is_a_checksummed_proprietary_sentence() -> None:
    assert login_sentence("dev-1", "tok") == with_checksum(b"PFXGL,dev-1,tok") + b"\r\n"


def test_after_accept_fixes_carry_the_accepted_identity() -> None:
    (f,) = accepted().feed(EPOCH_1 + EPOCH_2, NOW)
    assert (f.device_id, f.tenant_id) == (DEVICE, TENANT)  # type: ignore[union-attr]


def test_lines_after_the_login_wait_for_accept() -> None:
    session = TcpNmeaSession()
    held = session.feed(LOGIN + EPOCH_1 + EPOCH_2, NOW)
    assert (kinds(held), kinds(session.accept(DEVICE, TENANT, NOW + 0.01))) == (
        ["LoginRequest"], ["Fix"]
    )  # fmt: skip


def test_lines_before_the_login_are_not_logged_in() -> None:
    session = TcpNmeaSession()
    assert kinds(session.feed(EPOCH_1 + LOGIN, NOW)) == [
        R.NOT_LOGGED_IN, R.NOT_LOGGED_IN, "LoginRequest"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        LOGIN[:-4] + b"00\r\n",  # bad checksum
        b"$PFXGL,truck-7,s3cret\r\n",  # no checksum
        with_checksum(b"PFXGL,truck-7") + b"\r\n",  # no token
        with_checksum(b"PFXGL,truck-7,tok,extra") + b"\r\n",
        with_checksum(b"PFXGL,,tok") + b"\r\n",
        with_checksum(b"PFXGL,truck 7,tok") + b"\r\n",  # the registry forbids spaces in ids
        with_checksum(b"PFXGL,truck-7,\xff\xfe") + b"\r\n",
    ],
)
def test_a_malformed_login_is_bad_login(line: bytes) -> None:
    assert kinds(TcpNmeaSession().feed(line, NOW)) == [R.BAD_LOGIN]


def test_login_sentence_refuses_what_cannot_be_sent() -> None:
    with pytest.raises(ValueError):
        login_sentence("truck,7", TOKEN)


def test_rejected_session_discards_everything() -> None:
    session = TcpNmeaSession()
    session.feed(LOGIN + EPOCH_1, NOW)
    session.reject()
    assert (session.state, session.feed(EPOCH_2, NOW), session.close(NOW)) == (
        SessionState.CLOSED, [], []
    )  # fmt: skip


@pytest.mark.parametrize("call", ["accept", "reject"])
def test_answering_a_login_that_was_never_requested_is_misuse(call: str) -> None:
    session = TcpNmeaSession()
    with pytest.raises(RuntimeError):
        session.accept(DEVICE, TENANT, NOW) if call == "accept" else session.reject()


def test_accepting_twice_is_misuse() -> None:
    with pytest.raises(RuntimeError):
        accepted().accept(DEVICE, TENANT, NOW)


# -- bounds ------------------------------------------------------------------------------------


def test_too_many_errors_close_the_connection() -> None:
    session = TcpNmeaSession(max_errors=2)
    out = session.feed(GARBAGE * 4, NOW)
    assert (kinds(out), session.state) == (
        [R.NOT_LOGGED_IN] * 3 + [CloseReason.TOO_MANY_ERRORS], SessionState.CLOSED
    )  # fmt: skip


def test_nothing_is_decoded_after_giving_up() -> None:
    session = accepted(max_errors=0)
    assert kinds(session.feed(GARBAGE + EPOCH_1 + EPOCH_2, NOW)) == [
        R.BAD_CHECKSUM, CloseReason.TOO_MANY_ERRORS
    ]  # fmt: skip


def test_a_cold_booting_receiver_stays_within_the_default_budget() -> None:
    # gpsd gp-320fw coldboot.log: NUL bytes, truncated and run-together sentences.
    session = accepted()
    out = session.feed(log_bytes("gpsd-gp-320fw-2019-04-07-coldboot.log"), NOW)
    assert (CloseReason.TOO_MANY_ERRORS in kinds(out), R.BAD_CHECKSUM in kinds(out)) == (
        False, True
    )  # fmt: skip


def test_a_fix_restarts_the_error_count() -> None:
    session = accepted(max_errors=2)
    data = GARBAGE * 2 + EPOCH_1 + EPOCH_2 + GARBAGE * 2
    assert CloseReason.TOO_MANY_ERRORS not in kinds(session.feed(data, NOW))


def test_an_over_long_line_is_an_error_and_the_session_goes_on() -> None:
    session = accepted(max_line_bytes=100)
    assert kinds(session.feed(b"$GPTXT," + b"x" * 200 + b"\r\n" + EPOCH_1 + EPOCH_2, NOW)) == [
        R.LINE_TOO_LONG, "Fix"
    ]  # fmt: skip


def test_lines_past_the_pending_bound_are_dropped_while_the_login_is_verified() -> None:
    session = TcpNmeaSession(max_pending_lines=2)
    held = session.feed(LOGIN + EPOCH_1 + EPOCH_2, NOW)
    assert (kinds(held), kinds(session.accept(DEVICE, TENANT, NOW))) == (
        ["LoginRequest", R.PENDING_OVERFLOW], []
    )  # fmt: skip


# -- EOF and timer -----------------------------------------------------------------------------


def test_eof_flushes_the_pending_epoch() -> None:
    session = accepted()
    assert (session.feed(EPOCH_1, NOW), kinds(session.close(NOW))) == ([], ["Fix"])


def test_eof_decodes_an_unterminated_last_line() -> None:
    session = accepted()
    assert kinds(session.feed(EPOCH_1.rstrip(b"\r\n"), NOW) + session.close(NOW)) == ["Fix"]


def test_eof_while_the_login_is_verified_keeps_the_lines_for_accept() -> None:
    session = TcpNmeaSession()
    session.feed(LOGIN + EPOCH_1, NOW)
    assert (session.close(NOW), kinds(session.accept(DEVICE, TENANT, NOW))) == ([], ["Fix"])
    assert session.state is SessionState.CLOSED


def test_bytes_after_eof_are_discarded() -> None:
    session = accepted()
    session.close(NOW)
    assert session.feed(EPOCH_1, NOW) == []


def test_a_quiet_device_gets_its_fix_out_on_the_timer() -> None:
    session = accepted()
    now = NOW
    session.feed(EPOCH_1, now)
    deadline = session.next_deadline()
    now += 1.0
    early = session.on_timer(now)
    now = deadline  # type: ignore[assignment]
    due = session.on_timer(now)
    assert (deadline, early, kinds(due), session.next_deadline()) == (
        NOW + DEFAULT_TIMEOUT_EPOCH_IDLE_S, [], ["Fix"], None
    )  # fmt: skip


def test_no_timer_before_accept() -> None:
    session = TcpNmeaSession()
    session.feed(LOGIN + EPOCH_1, NOW)
    assert (session.next_deadline(), session.on_timer(NOW + 60)) == (None, [])


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        TcpNmeaSession(max_errors=-1)
