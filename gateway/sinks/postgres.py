"""Writes batches of fixes into the `positions` hypertable.

COPY is the fastest way in, but it cannot skip duplicates; so each batch is COPYed into a
per-connection temporary staging table and moved with one INSERT ... ON CONFLICT DO
NOTHING, in one transaction. Duplicates (within a batch, across batches, across restarts
and spool replays) are stored once, and the INSERT's row count says how many were new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from devices.fix import Fix
from gateway.db import DbConnection

COLUMNS = (
    "time", "device_id", "tenant_id", "lat", "lon", "altitude", "speed", "heading",
    "accuracy", "hdop", "satellites", "valid", "protocol", "received_at", "battery",
    "ignition", "power_v", "odometer_m", "alarm",
)  # fmt: skip
_COLUMN_LIST = ", ".join(COLUMNS)
_MOVE = (
    f"INSERT INTO positions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM positions_staging"
    " ON CONFLICT DO NOTHING"
)


async def prepare_connection(conn: DbConnection) -> None:
    """Pool `init`: the staging table lives as long as the connection, emptied at commit."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS positions_staging"
        " (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )


def _record(f: Fix, received_fallback: datetime) -> tuple[object, ...]:
    return (
        f.time, f.device_id, f.tenant_id, f.lat, f.lon, f.altitude, f.speed, f.heading,
        f.accuracy, f.hdop, f.satellites, f.valid, f.protocol.value,
        f.received_at or received_fallback, f.battery,
        f.ignition, f.power_v, f.odometer_m, f.alarm,
    )  # fmt: skip


async def write_fixes(conn: DbConnection, fixes: Sequence[Fix], now: datetime) -> int:
    """Store the fixes; return how many were new (the rest were duplicates)."""
    if not fixes:
        return 0
    records = [_record(f, now) for f in fixes]
    async with conn.transaction():
        await conn.copy_records_to_table("positions_staging", records=records, columns=COLUMNS)
        status = await conn.execute(_MOVE)
    return int(status.rsplit(" ", 1)[1])
