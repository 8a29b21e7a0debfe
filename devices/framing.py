"""Line framing for text protocols over TCP: bytes in, complete lines out, memory bounded.

The framer only splits; it knows nothing about NMEA. A line longer than the bound is
reported once and its bytes are dropped up to the next newline, so a peer that never sends
a newline costs at most `max_line_bytes` of memory, however much it sends.
"""

from __future__ import annotations

from devices.events import DecodeError, DecodeErrorReason

__all__ = ["DEFAULT_MAX_LINE_BYTES", "LineFramer"]

DEFAULT_MAX_LINE_BYTES = 1024
"""Longest line accepted, without its CR LF. NMEA 0183 caps a sentence at 82 characters,
but vendors exceed that in practice (u-blox PUBX and the PGLOR sentences of Android phones
run to 150); 1 KiB is twelve times the standard, fits any sentence seen in the wild, and
keeps the worst case per connection at 1 KiB of buffered partial line."""

_LF = b"\n"
_CR = b"\r"


class LineFramer:
    """Split a byte stream on LF into lines (CR stripped, empty lines skipped).

    `feed()` returns the complete lines it found, in order, plus one
    `DecodeError(LINE_TOO_LONG)` per over-long line; `close()` returns what an
    unterminated last line held at EOF.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be positive, not {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        # The partial line so far. Bytes land here only once we know they hold no LF, so
        # a line dripping in byte by byte is scanned once in total, never rescanned.
        self._partial = bytearray()
        # True while dropping the rest of an over-long line (up to its LF).
        self._discarding = False
        self._closed = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete line held for the next `feed()`."""
        return len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | DecodeError]:
        """Take the next bytes from the stream; return the lines they complete."""
        if self._closed:
            raise RuntimeError("LineFramer.feed() after close()")
        if type(data) is not bytes:
            data = bytes(data)  # bytearray/memoryview from the shell: lines must be bytes
        out: list[bytes | DecodeError] = []
        last_lf = data.rfind(_LF)
        if last_lf < 0:
            self._keep_partial(data, out)
            return out
        chunk = data[: last_lf + 1]
        if self._discarding:
            # The first line of the chunk is the tail of the line already reported.
            chunk = chunk[chunk.find(_LF) + 1 :]
            self._discarding = False
        elif self._partial:
            self._partial += chunk
            chunk = bytes(self._partial)
            self._partial.clear()
        self._split_complete(chunk, out)
        self._keep_partial(data[last_lf + 1 :], out)
        return out

    def close(self) -> list[bytes | DecodeError]:
        """EOF: return the unterminated last line, if any. The framer is then finished."""
        if self._closed:
            return []
        self._closed = True
        out: list[bytes | DecodeError] = []
        if not self._discarding and self._partial:
            self._split_complete(bytes(self._partial) + _LF, out)
        self._partial.clear()
        return out

    def _split_complete(self, chunk: bytes, out: list[bytes | DecodeError]) -> None:
        """Append the lines of `chunk`, which ends with LF (or is empty)."""
        limit = self.max_line_bytes
        lines = chunk.split(_LF)
        lines.pop()  # the empty string after the final LF
        for line in lines:
            if line.endswith(_CR):
                line = line[:-1]
            if not line:
                continue
            if len(line) > limit:
                out.append(self._too_long())
                continue
            out.append(line)

    def _keep_partial(self, tail: bytes, out: list[bytes | DecodeError]) -> None:
        """Buffer `tail` (it holds no LF) unless that would exceed the bound."""
        if not tail or self._discarding:
            return
        # +1: a line of exactly `max_line_bytes` may still be waiting for its LF after CR.
        if len(self._partial) + len(tail) > self.max_line_bytes + 1:
            out.append(self._too_long())
            self._partial.clear()
            self._discarding = True
            return
        self._partial += tail

    def _too_long(self) -> DecodeError:
        # The same detail however the line arrived, so chunking never changes the events.
        detail = f"line longer than {self.max_line_bytes} bytes"
        return DecodeError(DecodeErrorReason.LINE_TOO_LONG, detail)
