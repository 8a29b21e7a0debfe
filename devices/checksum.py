"""Checksums, written once: NMEA 0183's XOR and the two CRC-16s of the binary trackers.

NMEA: the XOR of every byte between `$`/`!` and `*`.

`split_sentence` is what decoders call: it checks the framing of one line and returns the
sentence body, or the reason the line is not a checksummed NMEA sentence. Sentences
without a checksum are refused: fixgate reads NMEA from TCP devices, where every sender
we support appends one, and a missing checksum is far more often a truncated line.
"""

from __future__ import annotations

from devices.events import DecodeErrorReason

__all__ = ["crc16_ibm", "crc16_x25", "nmea_checksum", "split_sentence", "with_checksum"]

_START_DELIMITERS = frozenset(b"$!")
"""`$` starts a sentence; `!` starts an encapsulated one (AIS), checksummed the same way."""
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_STAR = 0x2A

# Masks of the low `n` bytes, for `nmea_checksum`'s fold. Sized for any line the framer
# lets through (`devices.framing` caps lines far below this); longer bodies are folded
# with a computed mask instead.
_MAX_TABLE_BYTES = 4096
_LOW_BYTES_MASK = [(1 << (8 * n)) - 1 for n in range(_MAX_TABLE_BYTES + 1)]


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes of `body`: the sentence between `$`/`!` and `*`, both excluded."""
    # Fold the body as one big integer, halving its length each step, so the work stays
    # in C: 4 steps for an 82-byte sentence instead of 80 Python-level XORs (about 2x
    # faster, and the checksum is on the hot path of every sentence).
    value = int.from_bytes(body, "little")
    size = len(body)
    while size > 8:
        half = (size + 1) >> 1
        mask = _LOW_BYTES_MASK[half] if half <= _MAX_TABLE_BYTES else (1 << (8 * half)) - 1
        value = (value >> (8 * half)) ^ (value & mask)
        size = half
    value ^= value >> 32
    value ^= value >> 16
    value ^= value >> 8
    return value & 0xFF


def split_sentence(line: bytes) -> bytes | DecodeErrorReason:
    """Return the body of `line` (between the start delimiter and `*`) if its checksum holds.

    `line` is one line without its line terminator. Otherwise return why not:
    `NOT_NMEA` (no `$`/`!` at the start), `MISSING_CHECKSUM` (no `*`),
    `MALFORMED_CHECKSUM` (a `*` not followed by exactly two hex digits that end the line)
    or `BAD_CHECKSUM`.
    """
    if not line or line[0] not in _START_DELIMITERS:
        return DecodeErrorReason.NOT_NMEA
    size = len(line)
    if size < 4 or line[-3] != _STAR:
        return (
            DecodeErrorReason.MALFORMED_CHECKSUM
            if _STAR in line
            else DecodeErrorReason.MISSING_CHECKSUM
        )
    high, low = line[-2], line[-1]
    if high not in _HEX_DIGITS or low not in _HEX_DIGITS:
        return DecodeErrorReason.MALFORMED_CHECKSUM
    body = line[1:-3]
    if nmea_checksum(body) != int(line[-2:], 16):
        return DecodeErrorReason.BAD_CHECKSUM
    return body


def with_checksum(body: bytes, start: bytes = b"$") -> bytes:
    """Build a sentence line (without terminator) from its body: `$<body>*HH`."""
    if start not in (b"$", b"!"):
        raise ValueError(f"start delimiter must be $ or !, not {start!r}")
    if b"*" in body or b"\n" in body or b"\r" in body:
        raise ValueError("a sentence body cannot contain '*', CR or LF")
    return b"%s%s*%02X" % (start, body, nmea_checksum(body))


# --- CRC-16 for the binary tracker protocols ---------------------------------------------
# Both are reflected CRCs over polynomials of the CRC catalogue (reveng.sourceforge.io/crc-
# catalogue): CRC-16/ARC (poly 0x8005, init 0, no final XOR), which Teltonika calls
# CRC-16/IBM, and CRC-16/X-25 (poly 0x1021, init 0xFFFF, final XOR 0xFFFF), which the GT06
# document calls CRC-ITU. The standard library has neither (`binascii.crc_hqx` is the
# unreflected XMODEM variant), and a dependency is not worth two 256-entry tables.


def _reflected_table(poly_reflected: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly_reflected if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_ARC_TABLE = _reflected_table(0xA001)  # 0x8005 reflected
_X25_TABLE = _reflected_table(0x8408)  # 0x1021 reflected


def crc16_ibm(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/ARC (Teltonika's "CRC-16/IBM"): `crc16_ibm(b"123456789") == 0xBB3D`."""
    crc = 0
    table = _ARC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 (GT06's "CRC-ITU"): `crc16_x25(b"123456789") == 0x906E`."""
    crc = 0xFFFF
    table = _X25_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF
