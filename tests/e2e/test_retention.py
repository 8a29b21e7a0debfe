"""Retention drops whole chunks older than the configured age and keeps the rest."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg

from gateway.sinks.retention import (
    RetentionMode,
    drop_old_chunks,
    ensure_retention,
    run_retention,
    timescaledb_license,
)


async def _insert_days_ago(pg: asyncpg.Connection, *days: float) -> None:
    now = datetime.now(UTC)
    await pg.executemany(
        "INSERT INTO positions (time, device_id, tenant_id, lat, lon, protocol, received_at)"
        " VALUES ($1, 'd1', 't1', 52.5, 13.4, 'json', $2)",
        [(now - timedelta(days=d), now) for d in days],
    )


async def _chunk_count(pg: asyncpg.Connection) -> int:
    return await pg.fetchval("SELECT count(*) FROM show_chunks('positions')")


async def test_old_chunks_go_recent_ones_stay(pg: asyncpg.Connection) -> None:
    await _insert_days_ago(pg, 200, 120, 95, 30, 1, 0)
    assert await _chunk_count(pg) == 6
    dropped = await drop_old_chunks(pg, timedelta(days=90))
    assert len(dropped) == 3
    ages = [r[0] for r in await pg.fetch("SELECT now() - time FROM positions ORDER BY time")]
    assert len(ages) == 3 and all(age < timedelta(days=31) for age in ages)
    assert await _chunk_count(pg) == 3


async def test_the_gateway_job_runs_drop_chunks_on_the_apache_edition(
    db_url: str, pg: asyncpg.Connection
) -> None:
    if await timescaledb_license(pg) == "timescale":
        assert await ensure_retention(pg, timedelta(days=10)) is RetentionMode.POLICY
        return
    await _insert_days_ago(pg, 12, 2)
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    stop = asyncio.Event()
    try:
        job = asyncio.create_task(run_retention(pool, keep_days=10, interval_s=0.05, stop=stop))
        for _ in range(100):
            if await pg.fetchval("SELECT count(*) FROM positions") == 1:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(job, 5)
    finally:
        await pool.close()
    assert await pg.fetchval("SELECT count(*) FROM positions") == 1
    assert await pg.fetchval("SELECT now() - time < interval '3 days' FROM positions")
