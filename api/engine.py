"""The one place the dispatch API calls the position engine (trips, issue 9).

`gateway.engine.trips` provides `start_trip` and `cancel_trip` (see CONTEXT: the trips
contract). Until that module exists the calls log and return None/False, and a journey
runs without a trip: arrival then has to come from a `trip_arrived` event another engine
emits with `ref` = the request id. Calls run on the caller's connection, inside its
transaction, so a trip and the request's state change commit together.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

import asyncpg

log = logging.getLogger("fixgate.api.engine")

ARRIVAL_RADIUS_M = 30.0
"""The specification's arrival distance ("within 30 m")."""


def _trips() -> ModuleType | None:
    try:
        return importlib.import_module("gateway.engine.trips")
    except ImportError:
        return None


async def start_trip(
    conn: asyncpg.Connection,
    *,
    tenant: str,
    device: str,
    lat: float,
    lon: float,
    service_s: float,
    ref: str,
) -> str | None:
    """The engine's trip id, or None when the engine is not installed."""
    trips = _trips()
    if trips is None:
        log.warning("gateway.engine.trips is not available: journey %s runs without a trip", ref)
        return None
    trip_id: str = await trips.start_trip(
        conn,
        tenant=tenant,
        device=device,
        lat=lat,
        lon=lon,
        radius_m=ARRIVAL_RADIUS_M,
        service_s=service_s,
        ref=ref,
    )
    return trip_id


async def cancel_trip(conn: asyncpg.Connection, trip_id: str, *, tenant: str) -> bool:
    trips = _trips()
    if trips is None:
        return False
    canceled: bool = await trips.cancel_trip(conn, trip_id, tenant=tenant)
    return canceled
