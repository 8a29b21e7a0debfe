"""Teltonika over UDP, sans-IO: one datagram in, its records, IMEI and acknowledgement out.

    datagram = length u16 (bytes after it) | packet id u16 | packet type u8
               | AVL packet id u8 | IMEI length u16 | IMEI | AVL data (codec .. count 2)
    answer   = 0005 | packet id u16 | 01 | AVL packet id u8 | records accepted u8

There is no CRC: UDP's own checksum covers the datagram, and a datagram arrives whole or
not at all, so a length field that disagrees with the datagram's size means the sender's
framing is wrong, and the datagram is refused. How the shell uses it:

    packet = decode_udp(datagram)            # UdpAvlPacket or DecodeError
    device = registry lookup of packet.imei  # unknown: drop it, send nothing
    fixes = packet.fixes(device_id, tenant_id, now)
    ... make the fixes durable, then sendto(packet.reply, peer)

The device resends a datagram that was not acknowledged, so the shell must not send
`reply` before the fixes are durable, and must tolerate the same datagram twice (the
fixes' unique key does: same device, same time).
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Final

import msgspec

from devices.events import DecodeError, DecodeErrorReason
from devices.fix import Fix
from devices.teltonika.avl import AvlRecord, parse_avl_data, record_fix
from devices.teltonika.framer import MAX_IMEI_BYTES

__all__ = ["UdpAvlPacket", "decode_udp", "udp_ack"]

_HEADER = struct.Struct(">HHBBH")  # length, packet id, packet type, AVL packet id, IMEI length
_ACK = struct.Struct(">HHBBB")  # length, packet id, packet type, AVL packet id, accepted
_ACK_LENGTH: Final = _ACK.size - 2
_ACK_PACKET_TYPE: Final = 0x01


class UdpAvlPacket(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded datagram. `reply` is the acknowledgement to send once durable."""

    imei: str
    packet_id: int
    avl_packet_id: int
    codec: int
    records: tuple[AvlRecord, ...]
    reply: bytes

    def fixes(self, device_id: str, tenant_id: str, now: float) -> tuple[Fix, ...]:
        """The records as fixes of the registered device, received at `now` (Unix s)."""
        received_at = datetime.fromtimestamp(now, UTC)
        return tuple(record_fix(r, device_id, tenant_id, received_at) for r in self.records)


def udp_ack(packet_id: int, avl_packet_id: int, accepted: int) -> bytes:
    """The server's answer to a datagram: which packet, and how many records it took."""
    return _ACK.pack(_ACK_LENGTH, packet_id, _ACK_PACKET_TYPE, avl_packet_id, accepted)


def decode_udp(datagram: bytes | bytearray | memoryview) -> UdpAvlPacket | DecodeError:
    """Decode one datagram; never raises on any input."""
    data = bytes(datagram)
    if len(data) < _HEADER.size:
        return DecodeError(DecodeErrorReason.IMPOSSIBLE_LENGTH, f"datagram of {len(data)} bytes")
    length, packet_id, _packet_type, avl_packet_id, imei_length = _HEADER.unpack_from(data)
    if length != len(data) - 2:
        detail = f"length field {length}, datagram of {len(data)} bytes"
        return DecodeError(DecodeErrorReason.IMPOSSIBLE_LENGTH, detail)
    if not 0 < imei_length <= MAX_IMEI_BYTES or _HEADER.size + imei_length > len(data):
        return DecodeError(DecodeErrorReason.BAD_LOGIN, f"IMEI length {imei_length}")
    raw_imei = data[_HEADER.size : _HEADER.size + imei_length]
    if not raw_imei.isdigit():
        return DecodeError(DecodeErrorReason.BAD_LOGIN, f"IMEI {raw_imei!r} is not ASCII digits")
    parsed = parse_avl_data(data[_HEADER.size + imei_length :])
    if isinstance(parsed, DecodeError):
        return parsed
    return UdpAvlPacket(
        imei=raw_imei.decode("ascii"),
        packet_id=packet_id,
        avl_packet_id=avl_packet_id,
        codec=parsed.codec,
        records=parsed.records,
        reply=udp_ack(packet_id, avl_packet_id, len(parsed.records)),
    )
