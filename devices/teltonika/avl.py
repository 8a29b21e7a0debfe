"""Teltonika AVL data: the records of Codec 8, 8 Extended and 16, and the fixes they make.

Sans-IO and transport-free: TCP frames and UDP datagrams carry the same AVL data (codec id,
record count, records, record count again), which `parse_avl_data` turns into records.
Layout (wiki.teltonika-gps.com, "Teltonika Data Sending Protocols"), big-endian:

    record   = timestamp u64 (ms, UTC) | priority u8 | GPS element (15) | IO element
    GPS      = longitude i32 | latitude i32 (degrees * 1e7) | altitude i16 (m)
               | angle u16 (degrees) | satellites u8 | speed u16 (km/h)
    IO, 8    = event id u8  | total u8  | 4 x (count u8,  count x (id u8,  value 1/2/4/8))
    IO, 8E   = event id u16 | total u16 | 4 x (count u16, count x (id u16, value 1/2/4/8))
               | count u16, count x (id u16, length u16, value)       (the NX block)
    IO, 16   = event id u16 | generation type u8 | total u8
               | 4 x (count u8, count x (id u16, value 1/2/4/8))

The IO element's `total` is not checked against the sum of the counts (Traccar does not
either): the counts are what the layout follows, and the frame's end and repeated record
count already catch a misparse.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from devices.alarms import Alarm
from devices.events import DecodeError, DecodeErrorReason
from devices.fix import MAX_UNIX_SECONDS, Fix, Protocol
from devices.units import kmh_to_mps, millivolts_to_volts

__all__ = [
    "CODEC_8",
    "CODEC_8E",
    "CODEC_16",
    "SUPPORTED_CODECS",
    "AvlData",
    "AvlRecord",
    "parse_avl_data",
    "record_fix",
]

CODEC_8: Final = 0x08
CODEC_8E: Final = 0x8E
CODEC_16: Final = 0x10
SUPPORTED_CODECS: Final = frozenset({CODEC_8, CODEC_8E, CODEC_16})
"""Codecs with GPS records. 12/13/14 (0x0C-0x0E) are command frames and 7 is another device
family's record layout: well-formed, but not AVL data fixgate decodes."""

# IO element ids (Teltonika FMB "AVL ID" table) that fill `Fix` fields.
IO_TOTAL_ODOMETER_M: Final = 16
IO_EXTERNAL_VOLTAGE_MV: Final = 66
IO_BATTERY_LEVEL_PERCENT: Final = 113
IO_IGNITION: Final = 239

EVENT_ALARMS: Final = {
    236: Alarm.GENERAL,  # "Alarm": the alarm scenario fired
    246: Alarm.TOWING,
    247: Alarm.CRASH,
    249: Alarm.JAMMING,
    252: Alarm.POWER_CUT,  # "Unplug": external power disconnected
    255: Alarm.OVERSPEED,
}
"""Event IO ids that mean an alarm when the record was raised by them with a non-zero value
(the value 0 of these ids reports the end of the condition, not an alarm)."""

_MAX_TIMESTAMP_MS: Final = int(MAX_UNIX_SECONDS * 1000)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_COORDINATE_SCALE: Final = 10_000_000.0

_RECORD_HEAD = struct.Struct(">QBiihHBH")  # timestamp .. speed: 24 bytes
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U16_U8 = struct.Struct(">HB")
_U16_U16 = struct.Struct(">HH")
_U8_U8 = struct.Struct(">BB")
_VALUE_SIZES: Final = (1, 2, 4, 8)

IoValue = int | bytes
"""An IO element's value: unsigned integer for the 1/2/4/8-byte groups, raw bytes for 8E's
variable-length (NX) group."""


class AvlRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One AVL record, as the device sent it (no unit conversion)."""

    timestamp_ms: int
    """Unix milliseconds, UTC."""
    priority: int
    """0 low, 1 high, 2 panic."""
    lon: float
    lat: float
    """Degrees (the signed 32-bit values / 1e7)."""
    altitude_m: int
    angle_deg: int
    satellites: int
    speed_kmh: int
    event_io_id: int
    """The IO element whose change raised this record; 0 for a periodic record."""
    io: dict[int, IoValue]
    generation_type: int | None = None
    """Codec 16 only: why the record was made (0 on exit ... 5 periodic, 6 on demand...)."""


class AvlData(msgspec.Struct, frozen=True):
    codec: int
    records: tuple[AvlRecord, ...]


class _Malformed(Exception):
    """Internal: the data does not follow the layout (caught in `parse_avl_data`)."""

    def __init__(self, reason: DecodeErrorReason, detail: str) -> None:
        super().__init__(detail)
        self.error = DecodeError(reason, detail)


def parse_avl_data(data: bytes) -> AvlData | DecodeError:
    """Parse the AVL data field (codec id .. second record count), checked whole.

    Returns `DecodeError` with `UNSUPPORTED_CODEC`, `BAD_RECORD` (the records do not end
    where the data does), `RECORD_COUNT_MISMATCH` or `OUT_OF_RANGE` (an impossible time or
    coordinate); never raises on any input.
    """
    if len(data) < 3:
        return DecodeError(DecodeErrorReason.IMPOSSIBLE_LENGTH, f"AVL data of {len(data)} bytes")
    codec = data[0]
    if codec not in SUPPORTED_CODECS:
        return DecodeError(DecodeErrorReason.UNSUPPORTED_CODEC, f"codec 0x{codec:02X}")
    declared = data[1]
    end = len(data) - 1
    records: list[AvlRecord] = []
    offset = 2
    try:
        for _ in range(declared):
            record, offset = _parse_record(codec, data, offset, end)
            records.append(record)
    except _Malformed as malformed:
        return malformed.error
    if offset != end:
        detail = f"codec 0x{codec:02X}: {declared} records end at byte {offset} of {end}"
        return DecodeError(DecodeErrorReason.BAD_RECORD, detail)
    if data[end] != declared:
        detail = f"record counts {declared} and {data[end]} differ"
        return DecodeError(DecodeErrorReason.RECORD_COUNT_MISMATCH, detail)
    return AvlData(codec, tuple(records))


def _parse_record(codec: int, data: bytes, offset: int, end: int) -> tuple[AvlRecord, int]:
    if offset + _RECORD_HEAD.size > end:
        raise _Malformed(DecodeErrorReason.BAD_RECORD, f"record header past byte {end}")
    timestamp_ms, priority, lon_raw, lat_raw, altitude, angle, satellites, speed = (
        _RECORD_HEAD.unpack_from(data, offset)
    )
    offset += _RECORD_HEAD.size
    lat, lon = lat_raw / _COORDINATE_SCALE, lon_raw / _COORDINATE_SCALE
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise _Malformed(DecodeErrorReason.OUT_OF_RANGE, f"lat {lat} lon {lon}")
    if timestamp_ms > _MAX_TIMESTAMP_MS:
        raise _Malformed(DecodeErrorReason.OUT_OF_RANGE, f"timestamp {timestamp_ms} ms")
    generation_type: int | None = None
    try:
        if codec == CODEC_8:
            event_io_id = data[offset]
            io, offset = _parse_io_8(data, offset + 2, end)
        elif codec == CODEC_8E:
            (event_io_id,) = _U16.unpack_from(data, offset)
            io, offset = _parse_io_8e(data, offset + 4, end)
        else:
            event_io_id, generation_type = _U16_U8.unpack_from(data, offset)
            io, offset = _parse_io_16(data, offset + 4, end)
    except (struct.error, IndexError):
        raise _Malformed(DecodeErrorReason.BAD_RECORD, f"IO element past byte {end}") from None
    record = AvlRecord(
        timestamp_ms=timestamp_ms,
        priority=priority,
        lon=lon,
        lat=lat,
        altitude_m=altitude,
        angle_deg=angle,
        satellites=satellites,
        speed_kmh=speed,
        event_io_id=event_io_id,
        io=io,
        generation_type=generation_type,
    )
    return record, offset


def _check(offset: int, end: int) -> None:
    if offset > end:
        raise _Malformed(DecodeErrorReason.BAD_RECORD, f"IO element past byte {end}")


def _parse_io_8(data: bytes, offset: int, end: int) -> tuple[dict[int, IoValue], int]:
    io: dict[int, IoValue] = {}
    for size in _VALUE_SIZES:
        count = data[offset]
        offset += 1
        for _ in range(count):
            _check(offset + 1 + size, end)
            io[data[offset]] = int.from_bytes(data[offset + 1 : offset + 1 + size], "big")
            offset += 1 + size
    _check(offset, end)
    return io, offset


def _parse_io_8e(data: bytes, offset: int, end: int) -> tuple[dict[int, IoValue], int]:
    io: dict[int, IoValue] = {}
    for size in _VALUE_SIZES:
        (count,) = _U16.unpack_from(data, offset)
        offset += 2
        for _ in range(count):
            _check(offset + 2 + size, end)
            (io_id,) = _U16.unpack_from(data, offset)
            io[io_id] = int.from_bytes(data[offset + 2 : offset + 2 + size], "big")
            offset += 2 + size
    (count,) = _U16.unpack_from(data, offset)
    offset += 2
    for _ in range(count):
        _check(offset + 4, end)
        io_id, length = _U16_U16.unpack_from(data, offset)
        _check(offset + 4 + length, end)
        io[io_id] = bytes(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
    _check(offset, end)
    return io, offset


def _parse_io_16(data: bytes, offset: int, end: int) -> tuple[dict[int, IoValue], int]:
    io: dict[int, IoValue] = {}
    for size in _VALUE_SIZES:
        count = data[offset]
        offset += 1
        for _ in range(count):
            _check(offset + 2 + size, end)
            (io_id,) = _U16.unpack_from(data, offset)
            io[io_id] = int.from_bytes(data[offset + 2 : offset + 2 + size], "big")
            offset += 2 + size
    _check(offset, end)
    return io, offset


def record_fix(record: AvlRecord, device_id: str, tenant_id: str, received_at: datetime) -> Fix:
    """The normalized fix of one record.

    A record without satellites, or at exactly 0 N 0 E, is a device without a GNSS fix
    (Teltonika units then send 0/0 or the last known point): `valid=False`, never a valid
    point in the Gulf of Guinea.
    """
    io = record.io
    ignition = io.get(IO_IGNITION)
    voltage_mv = io.get(IO_EXTERNAL_VOLTAGE_MV)
    odometer_m = io.get(IO_TOTAL_ODOMETER_M)
    battery = io.get(IO_BATTERY_LEVEL_PERCENT)
    return Fix(
        device_id=device_id,
        tenant_id=tenant_id,
        time=_EPOCH + timedelta(milliseconds=record.timestamp_ms),
        lat=record.lat,
        lon=record.lon,
        altitude=float(record.altitude_m),
        speed=kmh_to_mps(record.speed_kmh),
        heading=float(record.angle_deg % 360),
        satellites=record.satellites,
        valid=record.satellites > 0 and (record.lat != 0.0 or record.lon != 0.0),
        protocol=Protocol.TELTONIKA,
        received_at=received_at,
        battery=battery if isinstance(battery, int) and battery <= 100 else None,
        ignition=bool(ignition) if isinstance(ignition, int) else None,
        power_v=millivolts_to_volts(voltage_mv) if isinstance(voltage_mv, int) else None,
        odometer_m=float(odometer_m) if isinstance(odometer_m, int) else None,
        alarm=_alarm(record),
    )


def _alarm(record: AvlRecord) -> str | None:
    alarm = EVENT_ALARMS.get(record.event_io_id)
    if alarm is None:
        return None
    value = record.io.get(record.event_io_id)
    return alarm.value if isinstance(value, int) and value > 0 else None
