"""devices.binbuf.ByteBuffer: consume exactly, commit, roll back, the bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.binbuf import ByteBuffer


def test_consume_exactly_waits_for_all_the_bytes() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"abc")
    assert (buffer.consume_exactly(4), len(buffer)) == (None, 3)


def test_consume_exactly_takes_exactly() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"abcdef")
    assert (buffer.consume_exactly(2), buffer.consume_exactly(3), len(buffer)) == (b"ab", b"cde", 1)


def test_rollback_returns_to_the_last_commit() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"abcdef")
    buffer.consume_exactly(2)
    buffer.commit()
    buffer.consume_exactly(3)
    buffer.rollback()
    assert buffer.consume_exactly(4) == b"cdef"


def test_a_partial_frame_is_parsed_again_after_more_bytes() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"\x00\x05ab")
    assert buffer.consume_exactly(2) == b"\x00\x05"
    assert buffer.consume_exactly(5) is None
    buffer.rollback()
    buffer.feed(b"cde")
    assert (buffer.consume_exactly(2), buffer.consume_exactly(5)) == (b"\x00\x05", b"abcde")


def test_peek_consumes_nothing() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"xyz")
    assert (buffer.peek(2), buffer.peek(2), buffer.peek(4), len(buffer)) == (b"xy", b"xy", None, 3)


def test_find_is_relative_to_the_read_position() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"--xx--xx")
    buffer.consume_exactly(3)
    assert (buffer.find(b"xx"), buffer.find(b"xx", 4), buffer.find(b"zz")) == (3, -1, -1)


def test_the_bound_counts_uncommitted_bytes_only() -> None:
    buffer = ByteBuffer(max_incomplete_bytes=4)
    buffer.feed(b"abcde")
    over_before = buffer.over_limit()
    buffer.consume_exactly(3)
    buffer.commit()
    assert (over_before, buffer.over_limit(), buffer.incomplete_bytes) == (True, False, 2)


def test_clear_drops_everything() -> None:
    buffer = ByteBuffer()
    buffer.feed(b"abc")
    buffer.consume_exactly(1)
    buffer.clear()
    assert (len(buffer), buffer.incomplete_bytes, buffer.consume_exactly(1)) == (0, 0, None)


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_incomplete_bytes"):
        ByteBuffer(max_incomplete_bytes=0)


@given(st.lists(st.binary(max_size=64), max_size=40), st.lists(st.integers(1, 50), max_size=80))
def test_committed_frames_come_out_in_order_whatever_the_chunking(
    chunks: list[bytes], sizes: list[int]
) -> None:
    """Consuming committed frames of given sizes yields the stream's prefix, in order."""
    buffer = ByteBuffer()
    taken = bytearray()
    stream = b"".join(chunks)
    pending = list(sizes)
    for chunk in chunks:
        buffer.feed(chunk)
        while pending:
            frame = buffer.consume_exactly(pending[0])
            if frame is None:
                buffer.rollback()
                break
            buffer.commit()
            taken += frame
            pending.pop(0)
    assert bytes(taken) == stream[: len(taken)]
    assert len(buffer) == len(stream) - len(taken)
