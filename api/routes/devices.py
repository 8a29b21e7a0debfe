"""A device's live position (Redis) and its track over a time range (TimescaleDB)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Query

from api import queue
from api.deps import DbDep, StaffDep, StateDep
from api.errors import ApiError, not_found
from api.guard import guarded_router
from api.models.common import Envelope
from api.models.tracking import LivePosition, Track, TrackPoint, TrackQuery

router = guarded_router(prefix="/devices", tags=["devices"])

MAX_TRACK_RANGE = timedelta(days=31)
"""Longest track one call covers: a month of buckets is still one bounded response."""


async def _own_device(db: DbDep, tenant: str, device_id: str) -> None:
    if not await db.fetchval(
        "SELECT true FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant
    ):
        raise not_found("Device")


@router.get("/{deviceId}/live")
async def live(
    deviceId: str, state: StateDep, db: DbDep, principal: StaffDep
) -> Envelope[LivePosition]:
    await _own_device(db, principal.tenant, deviceId)
    where = await queue.live_position(state.redis, state.keys, deviceId)
    if where is None or where["tenant"] != principal.tenant:
        raise not_found("Live position")
    data = LivePosition(
        device_id=deviceId,
        latitude=where["latitude"],
        longitude=where["longitude"],
        heading=where["heading"],
        speed=where["speed"],
        accuracy=where["accuracy"],
        updated_at=where["updatedAt"],
    )
    return Envelope[LivePosition](status=200, message="OK", data=data)


@router.get("/{deviceId}/track")
async def track(
    deviceId: str,
    state: StateDep,
    db: DbDep,
    principal: StaffDep,
    span: Annotated[TrackQuery, Query()],
) -> Envelope[Track]:
    """Positions between fromTime and toTime, averaged into time buckets so that the
    response holds at most FIXGATE_TRACK_MAX_POINTS points."""
    if span.to_time <= span.from_time:
        raise ApiError(422, "toTime: must be after fromTime")
    if span.to_time - span.from_time > MAX_TRACK_RANGE:
        raise ApiError(422, f"toTime: at most {MAX_TRACK_RANGE.days} days after fromTime")
    await _own_device(db, principal.tenant, deviceId)
    limit = state.settings.track_max_points
    bucket_s = max(1.0, (span.to_time - span.from_time).total_seconds() / limit)
    rows = await db.fetch(
        """
        SELECT time_bucket(make_interval(secs => $5), time) AS bucket,
               avg(lat) AS lat, avg(lon) AS lon, avg(speed)::float8 AS speed,
               last(heading, time)::float8 AS heading
        FROM positions
        WHERE device_id = $1 AND tenant_id = $2 AND time >= $3 AND time < $4 AND valid
        GROUP BY bucket ORDER BY bucket LIMIT $6
        """,
        deviceId,
        principal.tenant,
        span.from_time,
        span.to_time,
        bucket_s,
        limit + 1,  # bucket edges can add one
    )
    points = [
        TrackPoint(
            time=r["bucket"],
            latitude=r["lat"],
            longitude=r["lon"],
            speed=r["speed"],
            heading=r["heading"],
        )
        for r in rows
    ]
    data = Track(device_id=deviceId, bucket_seconds=bucket_s, points=points)
    return Envelope[Track](status=200, message="OK", data=data)
