"""GT06 (Concox) messages: what one checked frame says, without identity or replies.

Layouts (GT06 communication protocol, Concox; the vendor variants as Traccar's
`Gt06ProtocolDecoder` reads them), big-endian:

    login 0x01     terminal id (8 bytes BCD: the IMEI after a leading 0)
                   [type id u16 | time zone u16: bits 15-4 = hours*100 + minutes, bit 3 = west]
    GPS block      YY MM DD hh mm ss | GPS info (high nibble length, low nibble satellites)
                   | latitude u32 | longitude u32 (degrees * 1,800,000) | speed u8 (km/h)
                   | course/status u16: bits 9-0 course, 10 north, 11 west, 12 positioned,
                     14 ACC reported (vendor extension), 15 ACC on
    location       GPS block first: 0x10, 0x11, 0x12, 0x22, 0x1A, 0x1E, 0x2D, 0x31, 0x37,
                   0xA0, 0xA3, 0xA4; most then have a cell tower: MCC u16 | MNC u8 (u16
                   when MCC bit 15) | LAC u16 | cell id u24 (0x11: MNC u16, cell u32; 0xA0,
                   4G: LAC u32, cell u64); 0x22/0x2D/0x37/0xA0 then add an ACC byte
    alarm          0x16, 0x26, 0x27, 0x32: GPS block | LBS length u8 | MCC u16 | MNC u8 (u16
                   when MCC bit 15) | LAC u16 | cell id u24 | terminal info u8
                   | voltage level u8 | GSM signal u8 | alarm u8 | language u8
    heartbeat 0x13 terminal info u8 | voltage level u8 | GSM signal u8 | alarm u8 | language u8
    terminal info  bit 0 armed, 1 ACC on, 2 charging, 3-5 alarm (1 vibration, 2 power cut,
                   3 low battery, 4 SOS), 6 GPS tracking on, 7 fuel/power cut off

Dates are the device's clock: UTC unless the login declared a time zone, which is then
taken off (as Traccar does). Known messages without a position (LBS and Wi-Fi cells,
information, command replies) are `Ignored`; unknown protocol numbers are errors.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec

from devices.alarms import Alarm
from devices.events import DecodeError, DecodeErrorReason, Ignored
from devices.gt06.framer import Gt06Frame

__all__ = [
    "ALARM_PROTOCOLS",
    "HEARTBEAT",
    "LOCATION_PROTOCOLS",
    "LOGIN",
    "CellTower",
    "Gt06Message",
    "Heartbeat",
    "Location",
    "Login",
    "TerminalStatus",
    "decode_frame",
]

LOGIN: Final = 0x01
HEARTBEAT: Final = 0x13
ALARM_PROTOCOLS: Final = frozenset({0x16, 0x26, 0x27, 0x32})
"""GPS, LBS with its length byte, then terminal status and the alarm byte."""
_LBS_ACC_PROTOCOLS: Final = frozenset({0x22, 0x2D, 0x37, 0xA0})
"""GPS, a cell tower without a length byte, then ACC, upload mode and re-upload flag."""
_LBS_PROTOCOLS: Final = frozenset({0x11, 0x12, 0x31}) | _LBS_ACC_PROTOCOLS | ALARM_PROTOCOLS
"""Messages with a cell tower after the GPS block."""
LOCATION_PROTOCOLS: Final = frozenset({0x10, 0x11, 0x12, 0x1A, 0x1E, 0x31, 0xA3, 0xA4}) | (
    _LBS_ACC_PROTOCOLS
)
"""Messages that start with the GPS block and carry no alarm."""
_LONG_CELL: Final = 0x11
_CELL_4G: Final = 0xA0

_IGNORED: Final = {
    **dict.fromkeys((0x15, 0x21), Ignored(kind="string_info")),
    **dict.fromkeys((0x94,), Ignored(kind="information")),
    **dict.fromkeys(
        (0x17, 0x18, 0x19, 0x24, 0x28, 0x2C, 0x2E, 0x69, 0xA1, 0xA2, 0xA5, 0xA7, 0xF3),
        Ignored(kind="lbs_wifi"),
    ),
}
"""Messages fixgate knows and that hold no GPS position (cell towers, Wi-Fi, texts)."""

_ALARMS: Final = {
    0x01: Alarm.SOS,
    0x02: Alarm.POWER_CUT,
    0x03: Alarm.VIBRATION,
    0x04: Alarm.GEOFENCE_ENTER,
    0x05: Alarm.GEOFENCE_EXIT,
    0x06: Alarm.OVERSPEED,
    0x09: Alarm.VIBRATION,
    0x0E: Alarm.LOW_BATTERY,
    0x0F: Alarm.LOW_BATTERY,
}
"""The alarm byte: the document's 0x01-0x05 and the common Concox extensions."""
_TERMINAL_ALARMS: Final = {
    1: Alarm.VIBRATION,
    2: Alarm.POWER_CUT,
    3: Alarm.LOW_BATTERY,
    4: Alarm.SOS,
}
"""Bits 5-3 of the terminal information byte."""

_GPS = struct.Struct(">6BBIIBH")  # date/time, GPS info, latitude, longitude, speed, course
_COORDINATE_SCALE: Final = 1_800_000.0
_MAX_OFFSET_HOURS: Final = 14  # UTC+14 (Kiribati) is the largest offset in use


class TerminalStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The terminal information byte and what follows it (heartbeat and alarm messages)."""

    ignition: bool
    charging: bool
    armed: bool
    voltage_level: int
    """0 (no power) .. 6 (very high)."""
    gsm_signal: int
    """0 (no signal) .. 4 (strong)."""
    alarm: str | None


class CellTower(msgspec.Struct, frozen=True):
    """The serving cell the device reported beside its GPS fix."""

    mcc: int
    mnc: int
    lac: int
    cell_id: int


class Login(msgspec.Struct, frozen=True):
    imei: str
    utc_offset_s: int | None
    """The time zone the login declared (seconds east of UTC), if it has the field."""


class Location(msgspec.Struct, frozen=True, kw_only=True):
    time: datetime
    lat: float
    lon: float
    speed_kmh: int
    course_deg: int | None
    """None for the impossible values 360-1023 of the 10-bit field."""
    satellites: int
    positioned: bool
    ignition: bool | None
    alarm: str | None
    cell: CellTower | None
    status: TerminalStatus | None


class Heartbeat(msgspec.Struct, frozen=True):
    status: TerminalStatus | None
    """None when the message is too short to hold it (some firmwares send it empty)."""


Gt06Message = Login | Location | Heartbeat | Ignored | DecodeError


def decode_frame(frame: Gt06Frame, utc_offset_s: int = 0) -> Gt06Message:
    """What `frame` says. `utc_offset_s` is the device's time zone (from its login)."""
    protocol, content = frame.protocol, frame.content
    if frame.extended:
        ignored = _IGNORED.get(protocol)
        if ignored is not None:
            return ignored
        return _unsupported(frame)
    if protocol == LOGIN:
        return _login(content)
    if protocol == HEARTBEAT:
        return Heartbeat(_status(content, 0))
    if protocol in LOCATION_PROTOCOLS or protocol in ALARM_PROTOCOLS:
        return _location(protocol, content, utc_offset_s)
    ignored = _IGNORED.get(protocol)
    if ignored is not None:
        return ignored
    return _unsupported(frame)


def _unsupported(frame: Gt06Frame) -> DecodeError:
    start = "7979" if frame.extended else "7878"
    detail = f"{start} protocol 0x{frame.protocol:02X}"
    return DecodeError(DecodeErrorReason.UNSUPPORTED_MESSAGE, detail)


def _login(content: bytes) -> Login | DecodeError:
    if len(content) < 8:
        return DecodeError(DecodeErrorReason.BAD_LOGIN, f"terminal id of {len(content)} bytes")
    digits = content[:8].hex()
    if not digits.isdigit():
        return DecodeError(DecodeErrorReason.BAD_LOGIN, f"terminal id {digits} is not BCD")
    imei = digits[1:] if digits[0] == "0" else digits
    offset: int | None = None
    if len(content) >= 12:
        word = int.from_bytes(content[10:12], "big")
        hours, minutes = divmod(word >> 4, 100)
        if hours <= _MAX_OFFSET_HOURS and minutes < 60:
            offset = (hours * 60 + minutes) * 60 * (-1 if word & 0x08 else 1)
    return Login(imei, offset)


def _location(protocol: int, content: bytes, utc_offset_s: int) -> Location | DecodeError:
    if len(content) < _GPS.size:
        detail = f"protocol 0x{protocol:02X}: {len(content)} bytes, no GPS block"
        return DecodeError(DecodeErrorReason.BAD_RECORD, detail)
    year, month, day, hour, minute, second, info, lat_raw, lon_raw, speed, course_status = (
        _GPS.unpack_from(content)
    )
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        detail = f"date {year:02d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"
        return DecodeError(DecodeErrorReason.OUT_OF_RANGE, detail)
    lat, lon = lat_raw / _COORDINATE_SCALE, lon_raw / _COORDINATE_SCALE
    if lat > 90.0 or lon > 180.0:
        return DecodeError(DecodeErrorReason.OUT_OF_RANGE, f"lat {lat} lon {lon}")
    if not course_status & 0x0400:  # bit 10 clear: south
        lat = -lat
    if course_status & 0x0800:  # bit 11 set: west
        lon = -lon
    course = course_status & 0x03FF
    ignition = bool(course_status & 0x8000) if course_status & 0x4000 else None
    status: TerminalStatus | None = None
    alarm: str | None = None
    cell: CellTower | None = None
    if protocol in _LBS_PROTOCOLS:
        cell, after = _cell(protocol, content, _GPS.size)
        if protocol in ALARM_PROTOCOLS:
            status = _status(content, after)
            if status is not None:
                ignition, alarm = status.ignition, status.alarm
        elif protocol in _LBS_ACC_PROTOCOLS and after + 3 <= len(content):
            ignition = content[after] > 0  # ACC, upload mode, re-upload: older units omit them
    return Location(
        time=local - timedelta(seconds=utc_offset_s),
        lat=lat,
        lon=lon,
        speed_kmh=speed,
        course_deg=course if course < 360 else None,
        satellites=info & 0x0F,
        positioned=bool(course_status & 0x1000),
        ignition=ignition,
        alarm=alarm,
        cell=cell,
        status=status,
    )


def _cell(protocol: int, content: bytes, offset: int) -> tuple[CellTower | None, int]:
    """The cell tower at `offset` and the offset past it (None if it is not all there).

    Alarm messages put a length byte first. It counts itself in the document (9) but not in
    some firmwares (8), so the tower is read at its fixed size and only a length above 9
    (vendor additions) moves the offset further; 0 means no tower follows.
    """
    length = 9
    if protocol in ALARM_PROTOCOLS:
        if offset >= len(content) or content[offset] == 0:
            return None, offset + 1
        length = content[offset]
        offset += 1
    if offset + 2 > len(content):
        return None, offset
    mcc = int.from_bytes(content[offset : offset + 2], "big")
    long_mnc = bool(mcc & 0x8000) or protocol == _LONG_CELL
    sizes = (2 if long_mnc else 1, 4 if protocol == _CELL_4G else 2)
    cell_size = 8 if protocol == _CELL_4G else 4 if protocol == _LONG_CELL else 3
    end = offset + 2 + sizes[0] + sizes[1] + cell_size
    if end > len(content):
        return None, end
    at = offset + 2
    mnc = int.from_bytes(content[at : at + sizes[0]], "big")
    at += sizes[0]
    lac = int.from_bytes(content[at : at + sizes[1]], "big")
    at += sizes[1]
    cell_id = int.from_bytes(content[at:end], "big")
    return CellTower(mcc & 0x7FFF, mnc, lac, cell_id), end + max(0, length - 9)


def _status(content: bytes, offset: int) -> TerminalStatus | None:
    """Terminal info, voltage level, GSM signal [, alarm]; None if the bytes are not there."""
    if offset + 3 > len(content):
        return None
    info, voltage, gsm = content[offset], content[offset + 1], content[offset + 2]
    code = content[offset + 3] if offset + 4 <= len(content) else 0
    alarm = _ALARMS.get(code, Alarm.GENERAL) if code else _TERMINAL_ALARMS.get((info >> 3) & 7)
    return TerminalStatus(
        ignition=bool(info & 0x02),
        charging=bool(info & 0x04),
        armed=bool(info & 0x01),
        voltage_level=voltage,
        gsm_signal=gsm,
        alarm=None if alarm is None else alarm.value,
    )
