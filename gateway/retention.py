"""The gateway's retention job: on the Apache edition, drop old chunks on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import asyncpg

from gateway.writers import DATABASE_ERRORS, RETRY_BACKOFF_S, backoff
from ingest.retention import RetentionMode, drop_old_chunks, ensure_retention

log = logging.getLogger(__name__)


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
