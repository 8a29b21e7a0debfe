"""A device's stored fixes (the `positions` hypertable), read by the track and its exports.
Only valid fixes: invalid ones are kept for the record but never drawn or exported."""

from __future__ import annotations

from datetime import datetime

import asyncpg

_RANGE = "device_id = $1 AND tenant_id = $2 AND time >= $3 AND time < $4 AND valid"
EXPORT_COLUMNS = "time, lat, lon, altitude, speed, heading, accuracy, hdop, satellites, protocol"


async def fixes(
    conn: asyncpg.Connection, device: str, tenant: str, start: datetime, end: datetime,
    limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    """The range's fixes as stored, oldest first, at most `limit`."""
    return await conn.fetch(
        "SELECT time, lat, lon, speed::float8 AS speed, heading::float8 AS heading"
        f" FROM positions WHERE {_RANGE} ORDER BY time LIMIT $5",
        device, tenant, start, end, limit,
    )  # fmt: skip


async def buckets(
    conn: asyncpg.Connection, device: str, tenant: str, start: datetime, end: datetime,
    bucket_s: float, limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    """The range averaged into `bucket_s` time buckets, at most `limit` (+1 for the edges)."""
    return await conn.fetch(
        "SELECT time_bucket(make_interval(secs => $5), time) AS time,"
        " avg(lat) AS lat, avg(lon) AS lon, avg(speed)::float8 AS speed,"
        " last(heading, time)::float8 AS heading"
        f" FROM positions WHERE {_RANGE} GROUP BY 1 ORDER BY 1 LIMIT $6",
        device, tenant, start, end, bucket_s, limit + 1,
    )  # fmt: skip


async def page(
    conn: asyncpg.Connection, device: str, tenant: str, start: datetime, end: datetime,
    after: datetime | None, limit: int,
) -> list[asyncpg.Record]:  # fmt: skip
    """The next `limit` fixes of an export after `after` (keyset: one fix per device and
    time, so no fix is skipped or repeated between pages)."""
    return await conn.fetch(
        f"SELECT {EXPORT_COLUMNS} FROM positions WHERE {_RANGE}"
        " AND ($5::timestamptz IS NULL OR time > $5) ORDER BY time LIMIT $6",
        device, tenant, start, end, after, limit,
    )  # fmt: skip
