"""The spool's record format, sans-IO: one batch of fixes per record, checksummed.

    magic "FGS1" | payload length u32 | fix count u32 | CRC-32 of payload u32 | payload

All little-endian; the payload is the batch as msgpack (msgspec), so a record decodes
back to the very `Fix` values that were acknowledged. The header carries the fix count
so a spool can be sized up at start without decoding payloads. A record is only ever
acknowledged after it is complete on disk, so an incomplete record at a segment's end is
a write cut short by a crash (never acknowledged, safe to cut off), while damage followed by intact
records is counted and skipped over, never cut off with them.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import msgspec

from devices.fix import Fix

MAGIC: Final = b"FGS1"
HEADER: Final = struct.Struct("<4sIII")
MAX_PAYLOAD_BYTES: Final = 256 * 1024 * 1024
"""A sanity bound: a length beyond it means the header itself is damaged."""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Fix]).decode


class Header(msgspec.Struct, frozen=True):
    payload_bytes: int
    fixes: int
    crc: int

    @property
    def record_bytes(self) -> int:
        return HEADER.size + self.payload_bytes


class Damaged(Exception):
    """A record (or what should be its header) does not check out."""


def encode_record(rows: list[Fix]) -> bytes:
    payload = _encode(rows)
    return HEADER.pack(MAGIC, len(payload), len(rows), zlib.crc32(payload)) + payload


def parse_header(raw: bytes) -> Header:
    """The header in `raw` (exactly HEADER.size bytes); `Damaged` if it is not one."""
    magic, length, fixes, crc = HEADER.unpack(raw)
    if magic != MAGIC or length > MAX_PAYLOAD_BYTES:
        raise Damaged(f"no record header (magic {magic!r}, length {length})")
    return Header(length, fixes, crc)


def check_payload(header: Header, payload: bytes) -> None:
    if len(payload) != header.payload_bytes or zlib.crc32(payload) != header.crc:
        raise Damaged("checksum mismatch")


def decode_payload(header: Header, payload: bytes) -> list[Fix]:
    check_payload(header, payload)
    try:
        rows = _decode(payload)
    except msgspec.DecodeError as e:
        raise Damaged(f"payload does not decode: {e}") from e
    if len(rows) != header.fixes:
        raise Damaged(f"header says {header.fixes} fixes, payload has {len(rows)}")
    return rows


def intact_at(data: bytes, offset: int) -> Header | None:
    """The header of the intact record starting at `offset`, or None."""
    if offset + HEADER.size > len(data):
        return None
    try:
        header = parse_header(data[offset : offset + HEADER.size])
        end = offset + header.record_bytes
        if end > len(data):
            return None
        check_payload(header, data[offset + HEADER.size : end])
    except Damaged:
        return None
    return header


def next_intact(data: bytes, start: int) -> int | None:
    """Where the next intact record after damage begins (None: there is none)."""
    at = data.find(MAGIC, start)
    while at != -1:
        if intact_at(data, at) is not None:
            return at
        at = data.find(MAGIC, at + 1)
    return None


class Survey(msgspec.Struct, frozen=True):
    intact_end: int
    """End of the last intact record: past it there can only be a write a crash cut short."""
    fixes: int
    """Fixes in intact records."""
    damaged: int
    """Stretches of damage between intact records."""


def survey(data: bytes) -> Survey:
    """Walk a segment's records, stepping over damage to the next intact record."""
    offset = fixes = damaged = intact_end = 0
    while offset < len(data):
        header = intact_at(data, offset)
        if header is None:
            found = next_intact(data, offset + 1)
            if found is None:
                break
            damaged += 1
            offset = found
            continue
        offset = intact_end = offset + header.record_bytes
        fixes += header.fixes
    return Survey(intact_end, fixes, damaged)
