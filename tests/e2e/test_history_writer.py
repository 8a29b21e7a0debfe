"""The history writer against a real TimescaleDB: a batch the database refuses for what
one row holds is halved until each refused row stands alone; the rest are stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from devices.fix import Fix, Protocol
from gateway import metrics
from gateway.flow import Flow
from gateway.redis_link import connect
from gateway.sinks.history import UNSTORABLE, HistoryWriter
from gateway.sinks.live import LiveUpdater, LiveWriter
from gateway.sinks.postgres import prepare_connection
from ingest.filters import FilterLimits
from ingest.pipeline import BatchLimits, Ingest
from tests.support.services import Services

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def fix(i: int) -> Fix:
    return Fix(
        device_id=f"d{i % 4}", tenant_id="acme", time=T0 + timedelta(seconds=i), lat=52.5, lon=13.4,
        protocol=Protocol.NMEA, received_at=T0 + timedelta(seconds=i),
    )  # fmt: skip


def unstorable() -> float:
    return metrics.FIXES_REJECTED.labels(UNSTORABLE)._value.get()


async def test_refused_rows_are_found_by_halving_and_the_rest_are_stored(
    db_url: str, services: Services, redis_prefix: str
) -> None:
    rows = [fix(i) for i in range(64)]
    rows[5] = msgspec.structs.replace(rows[5], satellites=99_999)  # smallint overflow
    rows[40] = msgspec.structs.replace(rows[40], altitude=1e39)  # float4 overflow
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=prepare_connection)
    redis = await connect(services.redis_url)
    try:
        ingest = Ingest(FilterLimits(), BatchLimits())
        writer = HistoryWriter(
            ingest, pool, Flow(1000), LiveUpdater(LiveWriter(redis, redis_prefix)), 1
        )
        before = unstorable()
        assert await writer._store(rows, timeout_s=10)
        assert unstorable() - before == 2
        stored = await pool.fetch("SELECT time FROM positions ORDER BY time")
        assert [r["time"] for r in stored] == [
            f.time for i, f in enumerate(rows) if i not in (5, 40)
        ]
    finally:
        await redis.aclose()
        await pool.close()
