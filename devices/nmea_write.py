"""Writing NMEA 0183: the sentences a GPS receiver would send (simulator, tests, benches).

The inverse of `devices.nmea` for the two sentences a tracker sends every epoch: RMC
(position, speed, course, date) and GGA (position, quality, satellites, HDOP, altitude).
Both carry the same UTC time, so the decoder merges them into one fix.
"""

from __future__ import annotations

from datetime import datetime

from devices.checksum import with_checksum

__all__ = ["ddmm", "rmc_gga", "sentence"]


def sentence(body: str) -> bytes:
    """`$<body>*hh` plus CR LF."""
    return with_checksum(body.encode()) + b"\r\n"


def ddmm(value: float, lat: bool) -> str:
    """Degrees as NMEA's `ddmm.mmmm,H` (latitude) or `dddmm.mmmm,H` (longitude)."""
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    # Round the total once, so 52.99999999 becomes 5300.0000 and never 5260.0000.
    ten_thousandths = round(abs(value) * 60 * 10_000)
    deg, minutes = divmod(ten_thousandths, 60 * 10_000)
    width = 2 if lat else 3
    return f"{deg:0{width}d}{minutes // 10_000:02d}.{minutes % 10_000:04d},{hemi}"


def rmc_gga(
    t: datetime,
    lat: float,
    lon: float,
    knots: float = 10.0,
    course: float = 90.0,
    *,
    altitude_m: float = 42.0,
    satellites: int = 9,
    hdop: float = 0.9,
) -> bytes:
    """One epoch: an RMC and a GGA sentence for UTC time `t` (centisecond resolution)."""
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    dmy = t.strftime("%d%m%y")
    course = round(course, 1) % 360.0  # 359.96 would print as 360.0
    pos = f"{ddmm(lat, True)},{ddmm(lon, False)}"
    rmc = f"GPRMC,{hms},A,{pos},{knots:.1f},{course:.1f},{dmy},,,A"
    gga = f"GPGGA,{hms},{pos},1,{satellites:02d},{hdop:.1f},{altitude_m:.1f},M,0.0,M,,"
    return sentence(rmc) + sentence(gga)
