"""Helpers for end-to-end tests: register devices, build NMEA, read what was stored."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
import psycopg
import redis

from devices.checksum import nmea_checksum
from devices.registry import add_device


def register(db_url: str, device_id: str, tenant: str, kind: str = "tracker", owntracks: str | None = None) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return await add_device(conn, device_id, tenant_id=tenant, kind=kind, owntracks=owntracks)
        finally:
            await conn.close()

    return asyncio.run(go())


def sentence(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body.encode()):02X}\r\n".encode()


def ddmm(value: float, lat: bool) -> str:
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    value = abs(value)
    deg = int(value)
    minutes = (value - deg) * 60
    return f"{deg:02d}{minutes:07.4f},{hemi}" if lat else f"{deg:03d}{minutes:07.4f},{hemi}"


def rmc_gga(t: datetime, lat: float, lon: float, knots: float = 10.0, course: float = 90.0) -> bytes:
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    dmy = t.strftime("%d%m%y")
    return sentence(f"GPRMC,{hms},A,{ddmm(lat, True)},{ddmm(lon, False)},{knots:.1f},{course:.1f},{dmy},,,A") + sentence(
        f"GPGGA,{hms},{ddmm(lat, True)},{ddmm(lon, False)},1,09,0.9,42.0,M,0.0,M,,"
    )


def rows(db_url: str, device_id: str) -> list[dict[str, object]]:
    with psycopg.connect(db_url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM positions WHERE device_id = %s ORDER BY time", (device_id,))
        return cur.fetchall()


def count(db_url: str, device_id: str | None = None) -> int:
    with psycopg.connect(db_url) as conn:
        if device_id is None:
            return conn.execute("SELECT count(*) FROM positions").fetchone()[0]  # type: ignore[index]
        return conn.execute("SELECT count(*) FROM positions WHERE device_id = %s", (device_id,)).fetchone()[0]  # type: ignore[index]


def live(redis_url: str, prefix: str, device_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hgetall(f"{prefix}device:{device_id}")  # type: ignore[return-value]
    finally:
        client.close()
