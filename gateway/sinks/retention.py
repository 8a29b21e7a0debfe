"""Retention of the position history, on both TimescaleDB editions.

Community edition (`timescaledb.license` = `timescale`): a retention policy job inside
the database. Apache edition (Debian's build): policy jobs are not licensed there, so the
gateway drops chunks itself on a schedule (`run_retention`). Both drop whole chunks
older than the configured age, never single rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from datetime import timedelta

import asyncpg

from gateway.db import DbConnection
from gateway.retry import DATABASE_ERRORS, RETRY_BACKOFF_S, backoff

log = logging.getLogger(__name__)


class RetentionMode(enum.StrEnum):
    POLICY = "policy"  # TimescaleDB's own job runs it
    SCHEDULED = "scheduled"  # the gateway runs drop_chunks


async def timescaledb_license(conn: DbConnection) -> str:
    return str(await conn.fetchval("SHOW timescaledb.license"))


async def ensure_retention(conn: DbConnection, keep: timedelta) -> RetentionMode:
    """Install the policy where licensed (replacing one with another age); else say the
    gateway must schedule `drop_old_chunks` itself."""
    if await timescaledb_license(conn) != "timescale":
        return RetentionMode.SCHEDULED
    async with conn.transaction():
        await conn.execute("SELECT remove_retention_policy('positions', if_exists => true)")
        await conn.execute(
            "SELECT add_retention_policy('positions', drop_after => $1::interval)", keep
        )
    return RetentionMode.POLICY


async def drop_old_chunks(conn: DbConnection, keep: timedelta) -> list[str]:
    """Drop every `positions` chunk whose data is all older than `keep`; return their names."""
    rows = await conn.fetch("SELECT drop_chunks('positions', older_than => $1::interval)", keep)
    return [r[0] for r in rows]


async def run_retention(
    pool: asyncpg.Pool, keep_days: float, interval_s: float, stop: asyncio.Event
) -> None:
    keep = timedelta(days=keep_days)
    attempt = 0
    while True:
        try:
            async with pool.acquire() as conn:
                mode = await ensure_retention(conn, keep)
            break
        except DATABASE_ERRORS as e:
            # A gateway started while the database is away: set it up once it is back.
            if attempt == 0:
                log.warning("retention: cannot set up yet (%s: %s); retrying", type(e).__name__, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(RETRY_BACKOFF_S, attempt))
            if stop.is_set():
                return
            attempt += 1
    log.info("retention: keep %s days of history (%s)", keep_days, mode)
    if mode is RetentionMode.POLICY:
        return
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                dropped = await drop_old_chunks(conn, keep)
            if dropped:
                log.info("retention: dropped %d chunks older than %s days", len(dropped), keep_days)
        except DATABASE_ERRORS as e:
            # The database may be down; the next round tries again.
            log.warning("retention: could not drop old chunks: %s", e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
