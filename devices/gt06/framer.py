"""GT06 (Concox) framing: split a TCP stream on the length field, check the CRC-ITU.

    7878 | length u8  | protocol u8 | content | serial u16 | CRC u16 | 0D0A
    7979 | length u16 | protocol u8 | content | serial u16 | CRC u16 | 0D0A

`length` counts protocol .. CRC; the CRC-ITU (CRC-16/X.25) covers length .. serial. Frames
are split on the length, never on 0D0A (content holds 0D0A often: coordinates, serials).

Unlike Teltonika, GT06 has start markers to resynchronise on: bytes before a marker, a
length below the minimum, or a frame without its 0D0A where the length says are skipped
(one byte at a time, then up to the next marker) and reported once per run of garbage, so
the same stream gives the same errors however it is split into reads. A frame with a bad
CRC had a right length and stop bytes: it is reported and skipped whole.
"""

from __future__ import annotations

from typing import Final

import msgspec

from devices.binbuf import ByteBuffer
from devices.checksum import crc16_x25
from devices.events import DecodeError, DecodeErrorReason

__all__ = ["MAX_FRAME_BYTES", "Gt06Frame", "Gt06Framer", "build_frame"]

MAX_FRAME_BYTES: Final = 4 + 0xFFFF + 2
"""The largest frame the 0x7979 form can declare (a 2-byte length): the protocol's own
ceiling, 64 KiB, so no separate bound is needed. Real frames are far smaller (the largest
in the test corpus is 228 bytes); this is the most one connection can make the gateway
hold while a frame is incomplete."""

SHORT_START: Final = b"\x78\x78"
LONG_START: Final = b"\x79\x79"
STOP: Final = b"\r\n"
_MIN_LENGTH: Final = 5  # protocol + serial + CRC
_MARKER_BYTES: Final = frozenset((0x78, 0x79))


class Gt06Frame(msgspec.Struct, frozen=True):
    """One frame whose length, stop bytes and CRC hold."""

    extended: bool
    """0x7979 (2-byte length) rather than 0x7878."""
    protocol: int
    content: bytes
    """Between the protocol number and the serial number."""
    serial: int


def build_frame(protocol: int, content: bytes, serial: int, *, extended: bool = False) -> bytes:
    """A frame as a device or the server sends it (server responses, test vectors)."""
    length = 1 + len(content) + 4
    head = LONG_START + length.to_bytes(2, "big") if extended else SHORT_START + bytes([length])
    body = head[2:] + bytes([protocol]) + content + serial.to_bytes(2, "big")
    return head[:2] + body + crc16_x25(body).to_bytes(2, "big") + STOP


class Gt06Framer:
    """Frames and framing errors from a GT06 byte stream, one per `next_frame()` call."""

    def __init__(self) -> None:
        self._buffer = ByteBuffer(MAX_FRAME_BYTES)
        self._resyncing = False  # inside a run of garbage already reported

    @property
    def buffered_bytes(self) -> int:
        return self._buffer.incomplete_bytes

    def over_limit(self) -> bool:
        return self._buffer.over_limit()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer.feed(data)

    def clear(self) -> None:
        self._buffer.clear()

    def eof_error(self) -> DecodeError | None:
        """At EOF: the frame the stream ended inside, if any (garbage was reported already)."""
        held = self._buffer.incomplete_bytes
        if not held or self._resyncing:
            return None
        return DecodeError(DecodeErrorReason.TRUNCATED, f"EOF inside a frame ({held} bytes)")

    def next_frame(self) -> Gt06Frame | DecodeError | None:
        """The next frame, or a framing/CRC error, or None until more bytes arrive."""
        buffer = self._buffer
        while True:
            start = buffer.peek(2)
            if start is None:
                return None
            if start == SHORT_START:
                header_bytes = 3
            elif start == LONG_START:
                header_bytes = 4
            else:
                error = self._skip_garbage()
                if error is not None:
                    return error
                continue
            header = buffer.peek(header_bytes)
            if header is None:
                return None
            length = int.from_bytes(header[2:], "big")
            if length < _MIN_LENGTH:
                error = self._skip(1, DecodeErrorReason.IMPOSSIBLE_LENGTH, f"length {length}")
                if error is not None:
                    return error
                continue
            total = header_bytes + length + 2
            frame = buffer.consume_exactly(total)
            if frame is None:
                return None
            if frame[-2:] != STOP:
                buffer.rollback()
                detail = f"no 0D0A after a declared length of {length}"
                error = self._skip(1, DecodeErrorReason.BAD_FRAME, detail)
                if error is not None:
                    return error
                continue
            buffer.commit()
            self._resyncing = False
            return _checked(frame, header_bytes)

    def _skip_garbage(self) -> DecodeError | None:
        """Drop the bytes before the next start marker (all, if none has arrived yet)."""
        buffer = self._buffer
        ahead = [i for i in (buffer.find(SHORT_START, 1), buffer.find(LONG_START, 1)) if i > 0]
        if ahead:
            count = min(ahead)
        else:
            # Keep a last byte that may be the first half of a marker.
            last = buffer.peek(len(buffer))
            assert last is not None
            count = len(last) - 1 if last[-1] in _MARKER_BYTES else len(last)
        return self._skip(count, DecodeErrorReason.BAD_FRAME, "bytes outside a frame")

    def _skip(self, count: int, reason: DecodeErrorReason, detail: str) -> DecodeError | None:
        self._buffer.consume_exactly(count)
        self._buffer.commit()
        if self._resyncing:
            return None
        self._resyncing = True
        return DecodeError(reason, detail)


def _checked(frame: bytes, header_bytes: int) -> Gt06Frame | DecodeError:
    sent = int.from_bytes(frame[-4:-2], "big")
    computed = crc16_x25(frame[2:-4])
    if sent != computed:
        return DecodeError(
            DecodeErrorReason.BAD_CHECKSUM, f"CRC 0x{sent:04X}, computed 0x{computed:04X}"
        )
    return Gt06Frame(
        extended=header_bytes == 4,
        protocol=frame[header_bytes],
        content=frame[header_bytes + 1 : -6],
        serial=int.from_bytes(frame[-6:-4], "big"),
    )
