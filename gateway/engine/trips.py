"""Trips in PostgreSQL: the API the dispatch API and `fixgate trip` call.

A device's open trips are served in `seq` order: the first is `active`, later ones wait.
`start_trip` makes a trip active when the device has none; an arrival (marked by the
engine) or a cancel activates the next waiting one in the same transaction. Every change
fires NOTIFY `fixgate_trips` (payload: the device id, by trigger), so engines learn of it
at once; they also reload periodically.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from gateway.db import DbConnection
from geofence.trips import TripRowState, TripSpec

OPEN_STATES = ("waiting", "active")


class TripRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    device_id: str
    dest_lat: float
    dest_lon: float
    radius_m: float
    service_s: float
    ref: str | None
    state: TripRowState
    """The table's CHECK admits exactly these values."""
    seq: int
    created_at: datetime
    activated_at: datetime | None
    arrived_at: datetime | None
    canceled_at: datetime | None

    def spec(self) -> TripSpec:
        return TripSpec(
            id=self.id, seq=self.seq, lat=self.dest_lat, lon=self.dest_lon, radius_m=self.radius_m,
            service_s=self.service_s, ref=self.ref, state=self.state,
        )  # fmt: skip


class UnknownDevice(Exception):
    def __init__(self, device: str, tenant: str) -> None:
        super().__init__(f"no device {device!r} in tenant {tenant!r}")


_COLUMNS = (
    "id, tenant_id, device_id, dest_lat, dest_lon, radius_m, service_s, ref, state, seq,"
    " created_at, activated_at, arrived_at, canceled_at"
)


def _row(record: asyncpg.Record) -> TripRow:
    return TripRow(**dict(record))


async def _activate_next(conn: DbConnection, device: str) -> None:
    await conn.execute(
        """
        UPDATE trips SET state = 'active', activated_at = now()
        WHERE id = (SELECT id FROM trips WHERE device_id = $1 AND state = 'waiting' ORDER BY seq LIMIT 1)
          AND NOT EXISTS (SELECT 1 FROM trips WHERE device_id = $1 AND state = 'active')
        """,
        device,
    )


async def start_trip(
    conn: DbConnection,
    *,
    tenant: str,
    device: str,
    lat: float,
    lon: float,
    radius_m: float = 30.0,
    service_s: float = 0.0,
    ref: str | None = None,
) -> str:
    """Queue a trip for the device (active at once when it has none); return its id."""
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError(f"destination {lat},{lon} is not a WGS84 position")
    if radius_m <= 0 or service_s < 0:
        raise ValueError("radius_m must be > 0 and service_s >= 0")
    trip_id = str(uuid.uuid4())
    async with conn.transaction():
        # One device's trips are queued one at a time (seq order = activation order).
        owner = await conn.fetchval(
            "SELECT tenant_id FROM devices WHERE id = $1 FOR UPDATE", device
        )
        if owner != tenant:
            raise UnknownDevice(device, tenant)
        await conn.execute(
            "INSERT INTO trips (id, tenant_id, device_id, dest_lat, dest_lon, radius_m, service_s, ref)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            trip_id, tenant, device, lat, lon, radius_m, service_s, ref,
        )  # fmt: skip
        await _activate_next(conn, device)
    return trip_id


async def cancel_trip(conn: DbConnection, trip_id: str, *, tenant: str) -> bool:
    """Cancel an open trip of the tenant; False when there is none by that id."""
    async with conn.transaction():
        device = await conn.fetchval(
            "UPDATE trips SET state = 'canceled', canceled_at = now()"
            " WHERE id = $1 AND tenant_id = $2 AND state IN ('waiting', 'active') RETURNING device_id",
            trip_id, tenant,
        )  # fmt: skip
        if device is None:
            return False
        await _activate_next(conn, device)
    return True


async def mark_arrived(conn: DbConnection, trip_id: str, at: datetime) -> bool:
    """The engine saw the device arrive (idempotent: a second call changes nothing)."""
    async with conn.transaction():
        device = await conn.fetchval(
            "UPDATE trips SET state = 'arrived', arrived_at = $2"
            " WHERE id = $1 AND state IN ('waiting', 'active') RETURNING device_id",
            trip_id, at,
        )  # fmt: skip
        if device is None:
            return False
        await _activate_next(conn, device)
    return True


async def list_trips(
    conn: DbConnection,
    *,
    tenant: str | None = None,
    device: str | None = None,
    include_done: bool = False,
) -> list[TripRow]:
    """Trips by device and seq; open ones only unless `include_done`."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trips"
        " WHERE ($1::text IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR device_id = $2)"
        "   AND ($3 OR state IN ('waiting', 'active'))"
        " ORDER BY device_id, seq",
        tenant, device, include_done,
    )  # fmt: skip
    return [_row(r) for r in rows]


async def engine_view(
    conn: DbConnection, *, device: str | None = None, canceled_within_s: float = 86_400.0
) -> dict[str, list[TripSpec]]:
    """What the engine needs: per device its open trips and those canceled recently (so it
    can emit trip_canceled for a trip it holds), in seq order."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM trips"
        " WHERE ($1::text IS NULL OR device_id = $1)"
        "   AND (state IN ('waiting', 'active')"
        "        OR (state = 'canceled' AND canceled_at > now() - make_interval(secs => $2)))"
        " ORDER BY device_id, seq",
        device, canceled_within_s,
    )  # fmt: skip
    out: dict[str, list[TripSpec]] = {}
    for r in rows:
        out.setdefault(r["device_id"], []).append(_row(r).spec())
    if device is not None:
        out.setdefault(device, [])
    return out
