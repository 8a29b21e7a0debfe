"""ETA accuracy as a measured number: every emitted ETA is stored, and on arrival each
earlier prediction's error (predicted arrival - actual arrival, seconds) is computed,
exported as a Prometheus histogram by remaining-distance band, and reported by
`fixgate eta report`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import msgspec
from prometheus_client import Histogram

from gateway.db import DbConnection
from geofence.events import TripUpdate

BANDS: Final = (
    (0.0, 250.0, "0-250m"),
    (250.0, 1000.0, "250m-1km"),
    (1000.0, 3000.0, "1-3km"),
    (3000.0, None, "3km+"),
)
"""Remaining-distance bands: at the door, in the neighbourhood, across town, far."""
WITHIN_S: Final = 120.0
"""The report's "on time" share: |error| within 2 minutes."""
MAX_BUFFERED: Final = 200_000
"""Predictions held in memory while the database is away (about 20 s of a fleet with
10,000 trip updates a second; some 40 MB); beyond it the oldest are dropped: the
measurement is statistics, not a ledger."""
_COLUMNS: Final = (
    "time", "trip_id", "device_id", "tenant_id", "distance_m", "eta_s", "calculation", "event_id",
)  # fmt: skip
_STAGING: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS eta_predictions_staging"
    " (LIKE eta_predictions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MOVE: Final = (
    f"INSERT INTO eta_predictions ({', '.join(_COLUMNS)})"
    f" SELECT {', '.join(_COLUMNS)} FROM eta_predictions_staging ON CONFLICT DO NOTHING"
)

ETA_ERROR = Histogram(
    "fixgate_engine_eta_abs_error_seconds",
    "Absolute ETA error (|predicted - actual arrival|) of each prediction, by remaining distance",
    ["band"],
    buckets=(15, 30, 60, 120, 180, 300, 600, 900, 1800, 3600),
)


def band(distance_m: float) -> str:
    for low, high, name in BANDS:
        if distance_m >= low and (high is None or distance_m < high):
            return name
    return BANDS[-1][2]


class Prediction(msgspec.Struct, frozen=True, array_like=True):
    time: datetime
    trip_id: str
    device_id: str
    tenant_id: str
    distance_m: float
    eta_s: float
    calculation: str
    event_id: str


class EtaRecorder:
    """Buffers predictions and writes them in batches (never one insert per fix)."""

    def __init__(self) -> None:
        self.pending: list[Prediction] = []

    def add(self, event: TripUpdate) -> None:
        if event.fix_time is None:
            return
        self.pending.append(
            Prediction(
                event.fix_time, event.trip, event.device, event.tenant, event.distance_m, event.eta_s,
                event.calculation, event.id,
            )
        )  # fmt: skip
        if len(self.pending) > MAX_BUFFERED:
            del self.pending[:-MAX_BUFFERED]

    async def flush(self, conn: DbConnection) -> int:
        rows, self.pending = self.pending, []
        if not rows:
            return 0
        try:
            # COPY into a staging table, then one INSERT ... ON CONFLICT DO NOTHING (a
            # redelivered trip_update is stored once): ~10x cheaper for the database and
            # this process than a row-by-row executemany at 10,000 predictions a second.
            async with conn.transaction():
                await conn.execute(_STAGING)
                await conn.copy_records_to_table(
                    "eta_predictions_staging",
                    records=[msgspec.structs.astuple(r) for r in rows],
                    columns=_COLUMNS,
                )
                await conn.execute(_MOVE)
        except BaseException:
            self.pending = rows + self.pending
            raise
        return len(rows)

    async def arrived(self, conn: DbConnection, trip_id: str, at: datetime) -> int:
        """Score the trip's predictions against its arrival; observe the histogram once
        per prediction (only rows not scored yet, so a redelivered arrival counts once)."""
        await self.flush(conn)
        rows = await conn.fetch(
            "UPDATE eta_predictions SET arrived_at = $2,"
            "   error_s = extract(epoch FROM time - $2) + eta_s"
            " WHERE trip_id = $1 AND error_s IS NULL RETURNING distance_m, error_s",
            trip_id, at,
        )  # fmt: skip
        for r in rows:
            ETA_ERROR.labels(band(r["distance_m"])).observe(abs(r["error_s"]))
        return len(rows)


class BandReport(msgspec.Struct, frozen=True, kw_only=True):
    band: str
    count: int
    median_abs_s: float | None
    mean_abs_s: float | None
    within_2min: float | None


async def report(conn: DbConnection, since: datetime | None = None) -> list[BandReport]:
    rows = await conn.fetch(
        """
        SELECT CASE WHEN distance_m < 250 THEN '0-250m' WHEN distance_m < 1000 THEN '250m-1km'
                    WHEN distance_m < 3000 THEN '1-3km' ELSE '3km+' END AS band,
               count(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(error_s)) AS median,
               avg(abs(error_s)) AS mean,
               avg((abs(error_s) <= $2)::int) AS within
        FROM eta_predictions
        WHERE error_s IS NOT NULL AND ($1::timestamptz IS NULL OR time >= $1)
        GROUP BY 1
        """,
        since, WITHIN_S,
    )  # fmt: skip
    found = {r["band"]: r for r in rows}
    out = []
    for _, _, name in BANDS:
        r = found.get(name)
        out.append(
            BandReport(band=name, count=0, median_abs_s=None, mean_abs_s=None, within_2min=None)
            if r is None
            else BandReport(
                band=name,
                count=r["n"],
                median_abs_s=float(r["median"]),
                mean_abs_s=float(r["mean"]),
                within_2min=float(r["within"]),
            )
        )
    return out
