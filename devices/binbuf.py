"""A receive buffer for binary frames: consume exactly, then commit or roll back.

The shape of wsproto's `Buffer` (`frame_protocol.py`): a parser takes the bytes a frame
needs with `consume_exactly()`, which gives None while they have not all arrived; once the
frame is complete it calls `commit()`, and if it is not, `rollback()` so that the next
`feed()` parses the frame again from its first byte. A partial frame therefore simply
waits for more bytes, and a parser never keeps state of its own between reads.

Bound: like h11's `max_incomplete_event_size`, the buffer holds at most
`max_incomplete_bytes` that no complete frame has used. The sessions check
`over_limit()` after parsing what a read completed, so a peer that sends a length and
never the frame, or bytes while its login is verified, costs a bounded amount of memory.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_INCOMPLETE_BYTES", "ByteBuffer"]

DEFAULT_MAX_INCOMPLETE_BYTES = 256 * 1024
"""Bytes held that no complete frame has used yet. Each protocol passes its own bound (its
largest frame plus its header); this default is above the largest of them, a Teltonika AVL
frame of 200 KiB (`devices.teltonika.framer.MAX_AVL_DATA_BYTES`), so a `ByteBuffer()` with
no argument suits any of them."""

_COMPACT_MIN_BYTES = 4096
"""Committed bytes are dropped from the front lazily: at the next `feed()`, or once this
many have accumulated. Several frames in one read then cost one `del`, not one each
(wsproto copies the remainder at every commit, which is quadratic in frames per read)."""


class ByteBuffer:
    """Bytes received and not yet used by a complete frame."""

    def __init__(self, max_incomplete_bytes: int = DEFAULT_MAX_INCOMPLETE_BYTES) -> None:
        if max_incomplete_bytes < 1:
            raise ValueError(f"max_incomplete_bytes must be positive, not {max_incomplete_bytes}")
        self.max_incomplete_bytes = max_incomplete_bytes
        self._data = bytearray()
        self._committed = 0  # bytes at the front that complete frames have used
        self._used = 0  # read position of the frame being parsed (>= _committed)

    def __len__(self) -> int:
        """Bytes not yet consumed by the frame being parsed."""
        return len(self._data) - self._used

    @property
    def incomplete_bytes(self) -> int:
        """Bytes held that no committed frame has used (what the bound limits)."""
        return len(self._data) - self._committed

    def over_limit(self) -> bool:
        """More bytes held than `max_incomplete_bytes`: the peer is not sending frames."""
        return self.incomplete_bytes > self.max_incomplete_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._compact()
        self._data += data

    def peek(self, size: int) -> bytes | None:
        """The next `size` bytes without consuming them, or None until they have arrived."""
        if size < 0:
            raise ValueError(f"size must not be negative, not {size}")
        end = self._used + size
        if end > len(self._data):
            return None
        return bytes(self._data[self._used : end])

    def consume_exactly(self, size: int) -> bytes | None:
        """The next `size` bytes, or None (consuming nothing) until they have arrived."""
        chunk = self.peek(size)
        if chunk is not None:
            self._used += size
        return chunk

    def find(self, sub: bytes, start: int = 0) -> int:
        """Offset of `sub` from the read position (searching from `start`), or -1."""
        index = self._data.find(sub, self._used + start)
        return -1 if index < 0 else index - self._used

    def commit(self) -> None:
        """The bytes consumed so far belong to complete frames: never parse them again."""
        self._committed = self._used
        if self._committed >= _COMPACT_MIN_BYTES:
            self._compact()

    def rollback(self) -> None:
        """The frame being parsed is incomplete: return to the last commit."""
        self._used = self._committed

    def clear(self) -> None:
        """Drop everything, committed or not (the session is closing)."""
        self._data.clear()
        self._committed = self._used = 0

    def _compact(self) -> None:
        if self._committed:
            del self._data[: self._committed]
            self._used -= self._committed
            self._committed = 0
