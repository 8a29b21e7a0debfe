"""devices.framing.LineFramer: lines out of a byte stream, memory bounded."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.events import DecodeError
from devices.events import DecodeErrorReason as R
from devices.framing import DEFAULT_MAX_LINE_BYTES, LineFramer

TOO_LONG = R.LINE_TOO_LONG


def frame(chunks: Iterable[bytes], max_line_bytes: int = 16) -> list[bytes | R]:
    """Feed `chunks`, then EOF; lines as bytes, errors as their reason."""
    framer = LineFramer(max_line_bytes)
    items = [item for chunk in chunks for item in framer.feed(chunk)] + framer.close()
    return [item.reason if isinstance(item, DecodeError) else item for item in items]


def drip(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def test_lines_split_on_lf_with_cr_stripped() -> None:
    assert frame([b"$A*00\r\n$B*00\n"]) == [b"$A*00", b"$B*00"]


def test_empty_lines_are_skipped() -> None:
    assert frame([b"\r\n\n$A\r\n\r\n\r\n$B\n"]) == [b"$A", b"$B"]


def test_a_line_split_across_reads_is_joined() -> None:
    assert frame([b"$GP", b"RMC,1", b"\r", b"\n$B"]) == [b"$GPRMC,1", b"$B"]


def test_byte_by_byte_gives_the_same_lines() -> None:
    data = b"$A,1\r\n\r\n$B,22\n$C,333\r\n"
    assert frame(drip(data)) == frame([data])


def test_unterminated_last_line_comes_out_at_eof() -> None:
    assert frame([b"$A\n$B,no newline"]) == [b"$A", b"$B,no newline"]


def test_a_line_of_exactly_the_bound_is_accepted_even_dripped() -> None:
    line = b"$" + b"x" * 15
    assert frame(drip(line + b"\r\n")) == [line]


def test_an_over_long_line_is_one_error_and_the_next_line_survives() -> None:
    assert frame([b"$" + b"x" * 16 + b"\r\n$OK\n"]) == [TOO_LONG, b"$OK"]


def test_an_over_long_line_dripped_is_still_one_error() -> None:
    assert frame(drip(b"$" + b"x" * 100 + b"\n$OK\n")) == [TOO_LONG, b"$OK"]


def test_an_over_long_line_at_eof_yields_nothing_more() -> None:
    assert frame([b"$OK\n", b"y" * 40]) == [b"$OK", TOO_LONG]


def test_an_over_long_unterminated_line_is_reported_once() -> None:
    assert frame([b"y" * 10, b"y" * 10, b"y" * 10, b"y" * 10]) == [TOO_LONG]


def test_an_endless_line_never_buffers_past_the_bound() -> None:
    framer = LineFramer(16)
    peak = 0
    for chunk in [b"z" * 7] * 1000:
        framer.feed(chunk)
        peak = max(peak, framer.buffered_bytes)
    assert peak <= 16 + 1  # the line plus a CR waiting for its LF


def test_bytearray_input_gives_bytes_lines() -> None:
    framer = LineFramer()
    assert framer.feed(bytearray(b"$A\n")) == [b"$A"] and type(framer.feed(b"$B\n")[0]) is bytes


def test_default_bound_is_generous_for_nmea() -> None:
    assert DEFAULT_MAX_LINE_BYTES >= 12 * 82


def test_feed_after_close_is_misuse() -> None:
    framer = LineFramer()
    framer.close()
    with pytest.raises(RuntimeError):
        framer.feed(b"$A\n")


def test_close_twice_returns_nothing() -> None:
    framer = LineFramer()
    framer.feed(b"$A")
    assert framer.close() == [b"$A"] and framer.close() == []


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)


@given(st.binary(max_size=300), st.lists(st.integers(1, 40), max_size=30))
def test_chunking_never_changes_the_result(data: bytes, cuts: list[int]) -> None:
    chunks, at = [], 0
    for size in cuts:
        chunks.append(data[at : at + size])
        at += size
    chunks.append(data[at:])
    assert frame(chunks) == frame([data])


def test_a_slow_drip_is_not_rescanned() -> None:
    # A long partial line dripped byte by byte must cost about what short lines cost: a
    # framer that rescanned its buffer on every read would be quadratic in the line.
    size = 60_000
    short_lines = drip((b"x" * 99 + b"\n") * (size // 100))
    long_line = drip(b"x" * size)

    def seconds(chunks: list[bytes]) -> float:
        framer = LineFramer(max_line_bytes=2 * size)
        started = time.perf_counter()
        for chunk in chunks:
            framer.feed(chunk)
        return time.perf_counter() - started

    assert min(seconds(long_line) for _ in range(3)) < 3 * min(
        seconds(short_lines) for _ in range(3)
    )
