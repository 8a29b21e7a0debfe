"""Teltonika over TCP, framing only: the IMEI login, AVL frames and the keep-alive byte.

    login  = length u16 | IMEI (ASCII digits)
    frame  = preamble 00000000 | data length u32 | AVL data (codec .. count 2) | CRC u32
    ping   = FF (between frames; some firmwares send it to keep NAT mappings open)

The CRC-16/IBM of the AVL data sits in the low half of the CRC field. The framer checks the
framing and the CRC and hands the AVL data on unparsed (`devices.teltonika.avl` reads it).

The protocol has no resynchronisation marker: once a preamble or a length is wrong, where
the next frame starts is unknowable, so such errors are `Desync` (the session closes and the
device reconnects). A bad CRC is not: the length held, so the next frame is found.
"""

from __future__ import annotations

from typing import Final

import msgspec

from devices.binbuf import ByteBuffer
from devices.checksum import crc16_ibm
from devices.events import DecodeError, DecodeErrorReason

__all__ = [
    "MAX_AVL_DATA_BYTES",
    "MAX_IMEI_BYTES",
    "AvlFrame",
    "Desync",
    "ImeiFrame",
    "Keepalive",
    "TeltonikaFramer",
]

MAX_AVL_DATA_BYTES: Final = 200 * 1024
"""Largest AVL data field accepted (the u32 length would allow 4 GiB). A packet holds at most
255 records (the count is one byte) and Teltonika gives 783 bytes as the largest one-record
AVL packet, so 255 x 783 + 3 = 199,668 bytes is the most the published layout can fill;
real units send far less (the largest frame in the test corpus is 2,079 bytes, a camera
chunk). This is also what one connection can make the gateway hold."""

MAX_IMEI_BYTES: Final = 20
"""Longest login id accepted. An IMEI is 15 digits (an IMEISV 16) and Teltonika units send
15; 20 leaves room for vendor ids while refusing a length that is really a frame header."""

_HEADER_BYTES: Final = 8  # preamble + data length
_CRC_BYTES: Final = 4
_MIN_AVL_DATA_BYTES: Final = 3  # codec id, record count, record count
_PREAMBLE: Final = b"\x00\x00\x00\x00"
_PING: Final = 0xFF


class ImeiFrame(msgspec.Struct, frozen=True):
    imei: str


class AvlFrame(msgspec.Struct, frozen=True):
    """A frame whose CRC holds: `data` is the AVL data field, codec id .. second count."""

    data: bytes


class Keepalive(msgspec.Struct, frozen=True):
    """The lone 0xFF byte."""


class Desync(msgspec.Struct, frozen=True):
    """The stream cannot be followed past `error`: the connection must close."""

    error: DecodeError


LoginItem = ImeiFrame | Keepalive | Desync
FrameItem = AvlFrame | Keepalive | DecodeError | Desync

_KEEPALIVE: Final = Keepalive()


class TeltonikaFramer:
    """Split a Teltonika TCP stream into its login, frames and pings, one item per call."""

    def __init__(self, *, max_avl_data_bytes: int = MAX_AVL_DATA_BYTES) -> None:
        if max_avl_data_bytes < _MIN_AVL_DATA_BYTES:
            raise ValueError(f"max_avl_data_bytes must be >= 3, not {max_avl_data_bytes}")
        self.max_avl_data_bytes = max_avl_data_bytes
        self._buffer = ByteBuffer(_HEADER_BYTES + max_avl_data_bytes + _CRC_BYTES)

    @property
    def buffered_bytes(self) -> int:
        return self._buffer.incomplete_bytes

    def over_limit(self) -> bool:
        return self._buffer.over_limit()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer.feed(data)

    def clear(self) -> None:
        self._buffer.clear()

    def next_login(self) -> LoginItem | None:
        """The login (or a ping before it), or None until its bytes have arrived."""
        buffer = self._buffer
        head = buffer.peek(1)
        if head is None:
            return None
        if head[0] == _PING:
            buffer.consume_exactly(1)
            buffer.commit()
            return _KEEPALIVE
        raw_length = buffer.peek(2)
        if raw_length is None:
            return None
        length = int.from_bytes(raw_length, "big")
        if length == 0:  # two zero bytes: an AVL preamble where the login belongs
            return Desync(DecodeError(DecodeErrorReason.NOT_LOGGED_IN, "AVL data before login"))
        if length > MAX_IMEI_BYTES:
            detail = f"login length {length} > {MAX_IMEI_BYTES}"
            return Desync(DecodeError(DecodeErrorReason.BAD_LOGIN, detail))
        buffer.consume_exactly(2)
        raw = buffer.consume_exactly(length)
        if raw is None:
            buffer.rollback()
            return None
        buffer.commit()
        if not raw.isdigit():  # bytes.isdigit: ASCII 0-9 only
            detail = f"IMEI {raw[:MAX_IMEI_BYTES]!r} is not ASCII digits"
            return Desync(DecodeError(DecodeErrorReason.BAD_LOGIN, detail))
        return ImeiFrame(raw.decode("ascii"))

    def next_frame(self) -> FrameItem | None:
        """The next frame, ping or error, or None until a whole frame has arrived."""
        buffer = self._buffer
        head = buffer.peek(1)
        if head is None:
            return None
        if head[0] == _PING:
            buffer.consume_exactly(1)
            buffer.commit()
            return _KEEPALIVE
        header = buffer.peek(_HEADER_BYTES)
        if header is None:
            # Fail fast on a wrong preamble rather than wait for 8 bytes that may not come.
            start = buffer.peek(len(buffer))
            if start is not None and not _PREAMBLE.startswith(start[:4]):
                return Desync(DecodeError(DecodeErrorReason.BAD_FRAME, "no AVL preamble"))
            return None
        if header[:4] != _PREAMBLE:
            return Desync(DecodeError(DecodeErrorReason.BAD_FRAME, "no AVL preamble"))
        length = int.from_bytes(header[4:], "big")
        if length < _MIN_AVL_DATA_BYTES:
            detail = f"AVL data length {length}"
            return Desync(DecodeError(DecodeErrorReason.IMPOSSIBLE_LENGTH, detail))
        if length > self.max_avl_data_bytes:
            detail = f"AVL data length {length} > max_avl_data_bytes={self.max_avl_data_bytes}"
            return Desync(DecodeError(DecodeErrorReason.FRAME_TOO_LARGE, detail))
        frame = buffer.consume_exactly(_HEADER_BYTES + length + _CRC_BYTES)
        if frame is None:
            return None
        buffer.commit()
        data = frame[_HEADER_BYTES : _HEADER_BYTES + length]
        sent = int.from_bytes(frame[_HEADER_BYTES + length :], "big")
        computed = crc16_ibm(data)
        if sent != computed:
            detail = f"CRC 0x{sent:08X}, computed 0x{computed:04X}"
            return DecodeError(DecodeErrorReason.BAD_CHECKSUM, detail)
        return AvlFrame(data)
