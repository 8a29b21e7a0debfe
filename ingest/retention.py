"""Retention of the position history, on both TimescaleDB editions.

Community edition (`timescaledb.license` = `timescale`): a retention policy job inside
the database. Apache edition (Debian's build): policy jobs are not licensed there, so the
gateway drops chunks itself on a schedule (`gateway.retention`). Both drop whole chunks
older than the configured age, never single rows.
"""

from __future__ import annotations

import enum
from datetime import timedelta

import asyncpg


class RetentionMode(enum.StrEnum):
    POLICY = "policy"  # TimescaleDB's own job runs it
    SCHEDULED = "scheduled"  # the gateway runs drop_chunks


async def timescaledb_license(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SHOW timescaledb.license"))


async def ensure_retention(conn: asyncpg.Connection, keep: timedelta) -> RetentionMode:
    """Install the policy where licensed (replacing one with another age); else say the
    gateway must schedule `drop_old_chunks` itself."""
    if await timescaledb_license(conn) != "timescale":
        return RetentionMode.SCHEDULED
    async with conn.transaction():
        await conn.execute("SELECT remove_retention_policy('positions', if_exists => true)")
        await conn.execute("SELECT add_retention_policy('positions', drop_after => $1::interval)", keep)
    return RetentionMode.POLICY


async def drop_old_chunks(conn: asyncpg.Connection, keep: timedelta) -> list[str]:
    """Drop every `positions` chunk whose data is all older than `keep`; return their names."""
    rows = await conn.fetch("SELECT drop_chunks('positions', older_than => $1::interval)", keep)
    return [r[0] for r in rows]
