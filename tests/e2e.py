"""Helpers for end-to-end tests: register devices, build NMEA, read what was stored."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import redis

from devices.nmea_write import ddmm, rmc_gga, sentence
from devices.registry import add_device

__all__ = ["count", "ddmm", "live", "register", "rmc_gga", "rows", "sentence"]


def register(db_url: str, device_id: str, tenant: str, kind: str = "tracker", owntracks: str | None = None) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return await add_device(conn, device_id, tenant_id=tenant, kind=kind, owntracks=owntracks)
        finally:
            await conn.close()

    return asyncio.run(go())


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
