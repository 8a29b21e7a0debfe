"""NMEA 0183 checksums, written once: the XOR of every byte between `$`/`!` and `*`.

`split_sentence` is what decoders call: it checks the framing of one line and returns the
sentence body, or the reason the line is not a checksummed NMEA sentence. Sentences
without a checksum are refused: fixgate reads NMEA from TCP devices, where every sender
we support appends one, and a missing checksum is far more often a truncated line.
"""

from __future__ import annotations

from devices.events import DecodeErrorReason

__all__ = ["nmea_checksum", "split_sentence", "with_checksum"]

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
