"""Small encoders for the binary trackers (what a device sends), for end-to-end tests and
the simulator: Teltonika Codec 8 Extended over TCP and UDP, GT06 login and location.

The decoders are tested against real captures (tests/unit/devices); these build packets
with chosen times and IO values, so a test can check exactly what lands in `positions`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from datetime import datetime

from devices.checksum import crc16_ibm
from devices.gt06.framer import build_frame

CODEC_8E = 0x8E
_RECORD_HEAD = struct.Struct(">QBiihHBH")  # ms, priority, lon, lat, altitude, angle, sats, speed


@dataclass(frozen=True)
class Record:
    time: datetime
    lat: float
    lon: float
    altitude_m: int = 100
    angle_deg: int = 90
    satellites: int = 9
    speed_kmh: int = 50
    event_io: int = 0
    io: dict[int, int] = field(default_factory=dict)
    """IO id -> value; the value's byte size is chosen by the id (`IO_SIZES`, else 1)."""


IO_SIZES = {16: 4, 66: 2, 239: 1, 113: 1, 236: 1, 247: 1}
"""Bytes per value of the IO ids tests use: odometer u32, external voltage u16, the rest u8."""


def codec8e_data(records: list[Record]) -> bytes:
    """AVL data: codec, count, records, count (what the CRC covers)."""
    out = bytearray([CODEC_8E, len(records)])
    for r in records:
        out += _RECORD_HEAD.pack(
            round(r.time.timestamp() * 1000), 0, round(r.lon * 1e7), round(r.lat * 1e7),
            r.altitude_m, r.angle_deg, r.satellites, r.speed_kmh,
        )  # fmt: skip
        by_size: dict[int, list[tuple[int, int]]] = {1: [], 2: [], 4: [], 8: []}
        for io_id, value in r.io.items():
            by_size[IO_SIZES.get(io_id, 1)].append((io_id, value))
        out += struct.pack(">HH", r.event_io, len(r.io))
        for size, items in by_size.items():
            out += struct.pack(">H", len(items))
            for io_id, value in items:
                out += io_id.to_bytes(2, "big") + value.to_bytes(size, "big")
        out += struct.pack(">H", 0)  # no variable-length IO
    out.append(len(records))
    return bytes(out)


def teltonika_login(imei: str) -> bytes:
    return len(imei).to_bytes(2, "big") + imei.encode()


def teltonika_packet(records: list[Record], *, corrupt_crc: bool = False) -> bytes:
    """One TCP AVL frame: preamble, length, data, CRC-16/IBM in four bytes."""
    data = codec8e_data(records)
    crc = crc16_ibm(data) ^ (0xFFFF if corrupt_crc else 0)
    return b"\x00\x00\x00\x00" + len(data).to_bytes(4, "big") + data + crc.to_bytes(4, "big")


def teltonika_datagram(imei: str, records: list[Record], packet_id: int = 1) -> bytes:
    """One UDP datagram: length, packet id, type 0x01, AVL packet id, IMEI, data."""
    body = struct.pack(">HBBH", packet_id, 0x01, packet_id & 0xFF, len(imei)) + imei.encode()
    body += codec8e_data(records)
    return len(body).to_bytes(2, "big") + body


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """`n` bytes, or fewer if the peer closed first."""
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def gt06_login(imei: str, serial: int = 1) -> bytes:
    """Login (0x01): the IMEI as 8 BCD bytes (a leading 0)."""
    return build_frame(0x01, bytes.fromhex("0" + imei), serial)


def gt06_location(
    t: datetime, lat: float, lon: float, serial: int, *, speed_kmh: int = 40, course: int = 90
) -> bytes:
    """Location (0x12, GPS + LBS): north/east, positioned, with a cell tower."""
    status = 0x1000 | 0x0400 | (course & 0x03FF)  # positioned, north; east (bit 11 clear)
    content = bytes([t.year - 2000, t.month, t.day, t.hour, t.minute, t.second, 0xC9])
    content += struct.pack(
        ">IIBH", round(lat * 1_800_000), round(lon * 1_800_000), speed_kmh, status
    )
    content += struct.pack(">HBH", 262, 1, 0x1234) + (0x5678).to_bytes(3, "big")  # MCC MNC LAC cell
    return build_frame(0x12, content, serial)


def gt06_heartbeat(serial: int) -> bytes:
    """Status (0x13): terminal info (ACC on), voltage level, GSM signal, language."""
    return build_frame(0x13, bytes([0x02, 0x04, 0x03, 0x00, 0x02]), serial)
