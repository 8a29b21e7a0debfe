"""The one place the dispatch API calls the position engine (trips, issue 9).

Calls run on the caller's connection, inside its transaction, so a trip and the request's
state change commit together; the engine learns of the trip by NOTIFY on commit. Arrival
comes back as the engine's `trip_arrived` event with `ref` = the request id
(`api/consumer.py`).
"""

from __future__ import annotations

from gateway.db import DbConnection
from gateway.engine import trips

ARRIVAL_RADIUS_M = 30.0
"""The specification's arrival distance ("within 30 m")."""


async def start_trip(
    conn: DbConnection,
    *,
    tenant: str,
    device: str,
    lat: float,
    lon: float,
    service_s: float,
    ref: str,
) -> str:
    """Start the engine's trip of a journey; its id."""
    return await trips.start_trip(
        conn, tenant=tenant, device=device, lat=lat, lon=lon,
        radius_m=ARRIVAL_RADIUS_M, service_s=service_s, ref=ref,
    )  # fmt: skip


async def cancel_trip(conn: DbConnection, trip_id: str, *, tenant: str) -> bool:
    return await trips.cancel_trip(conn, trip_id, tenant=tenant)
