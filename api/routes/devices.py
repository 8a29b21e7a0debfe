"""Devices over the API: the registry (admins register, disable and enable a device; staff
list them with their live state), a device's live position (Redis), its track over a time
range and the same range exported as CSV, GPX 1.1 or GeoJSON (TimescaleDB).

Registration goes through the registry's own functions (gateway/registry/store.py), whose
trigger tells every gateway within a second; `fixgate device ...` stays for the shell."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
from fastapi import Query
from fastapi.responses import StreamingResponse

from api import queue
from api.deps import AdminDep, DbDep, StaffDep, StateDep
from api.errors import ApiError, conflict, invalid, not_found
from api.exports import MEDIA_TYPES, ExportFormat, Writer
from api.guard import guarded_router
from api.models.common import Envelope, ErrorEnvelope, ServerPaginatedData, paginated
from api.models.devices import DeviceCreate, DeviceCreated, DeviceFilter, DeviceInfo, LiveState
from api.models.tracking import ExportQuery, LivePosition, Track, TrackPoint, TrackQuery
from api.routes.catalog import done
from api.state import ApiState
from api.store import devices as device_store
from api.store import positions
from gateway.registry import broker
from gateway.registry import store as registry
from gateway.registry.broker import BrokerSync

router = guarded_router(prefix="/devices", tags=["devices"])

MAX_TRACK_RANGE = timedelta(days=31)
"""Longest track one call covers: a month of buckets is still one bounded response."""
EXPORT_PAGE_ROWS = 5000
"""Fixes read per statement of an export: the response streams, memory stays bounded."""


async def _own_device(db: DbDep, tenant: str, device_id: str) -> None:
    if not await db.fetchval(
        "SELECT true FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant
    ):
        raise not_found("Device")


@router.post("", responses={503: {"model": ErrorEnvelope, "description": "The broker is away"}})
async def register_device(
    body: DeviceCreate, state: StateDep, db: DbDep, principal: AdminDep
) -> Envelope[DeviceCreated]:
    """Register a device of the tenant, and its broker account when the API has the broker's
    admin account (`FIXGATE_MQTT_ADMIN_URL`); its token is in this answer only (a salted
    hash is kept). 409 when the id, IMEI, Traccar Client id or OwnTracks identity is taken;
    503 when the broker did not take the account (nothing is registered then)."""
    try:
        token = await broker.register_device(
            db, BrokerSync.from_settings(state.settings), body.device_id,
            tenant_id=principal.tenant, kind=body.kind.value, owntracks=body.owntracks,
            imei=body.imei, traccar_id=body.traccar_id,
            protocols=tuple(p.value for p in body.protocols),
        )  # fmt: skip
    except registry.DeviceExists:
        raise conflict(f"The device id {body.device_id!r} is taken") from None
    except (registry.IdentifierTaken, registry.OwnTracksIdentityTaken,
            registry.OwnTracksUserTaken, registry.LoginTaken) as e:  # fmt: skip
        raise conflict(str(e)[:1].upper() + str(e)[1:]) from None
    except broker.BrokerError as e:
        raise ApiError(503, f"The MQTT broker did not take the device's account: {e}") from None
    except ValueError as e:
        raise invalid("deviceId", str(e)) from None
    data = DeviceCreated(device_id=body.device_id, token=token)
    return Envelope[DeviceCreated](status=200, message="Device registered", data=data)


def _state(seen: datetime | None, max_age_s: float) -> LiveState:
    if seen is None:
        return LiveState.NEVER
    fresh = (datetime.now(UTC) - seen).total_seconds() <= max_age_s
    return LiveState.LIVE if fresh else LiveState.STALE


async def _infos(state: StateDep, devices: list[asyncpg.Record]) -> list[DeviceInfo]:
    """The devices with their live state (one Redis round trip for all of them)."""
    lives = await queue.live_fields(state.redis, state.keys, [d["id"] for d in devices])
    out = []
    for device, live in zip(devices, lives, strict=True):
        seen = datetime.fromisoformat(live["time"]) if live and live.get("time") else None
        owntracks = (f"{device['owntracks_user']}/{device['owntracks_device']}"
                     if device["owntracks_user"] else None)  # fmt: skip
        out.append(DeviceInfo(
            device_id=device["id"], kind=device["kind"], enabled=device["enabled"],
            created_at=device["created_at"], imei=device["imei"],
            traccar_id=device["traccar_id"],
            owntracks=owntracks, last_seen_at=seen,
            last_protocol=live.get("protocol") if live else None,
            state=_state(seen, state.settings.online_max_age_s),
        ))  # fmt: skip
    return out


@router.get("")
async def list_devices(
    state: StateDep, db: DbDep, principal: StaffDep, filters: Annotated[DeviceFilter, Query()]
) -> ServerPaginatedData[DeviceInfo]:
    """The tenant's devices with when each was last seen, by which protocol, live or stale."""
    total, devices = await device_store.page(
        db, principal.tenant, filters.search, filters.rows_per_page, filters.offset
    )
    return paginated(await _infos(state, devices), total, filters)


@router.get("/{deviceId}")
async def get_device(
    deviceId: str, state: StateDep, db: DbDep, principal: StaffDep
) -> Envelope[DeviceInfo]:
    device = await device_store.one(db, principal.tenant, deviceId)
    if device is None:
        raise not_found("Device")
    data = (await _infos(state, [device]))[0]
    return Envelope[DeviceInfo](status=200, message="OK", data=data)


async def _set_enabled(
    state: StateDep, db: DbDep, tenant: str, device_id: str, enabled: bool
) -> Envelope[None]:
    await _own_device(db, tenant, device_id)
    try:
        await broker.set_device_enabled(db, BrokerSync.from_settings(state.settings), device_id,
                                        enabled)  # fmt: skip
    except broker.BrokerError as e:
        raise ApiError(503, f"The MQTT broker did not take the change: {e}") from None
    return done("Device enabled" if enabled else "Device disabled")


@router.post("/{deviceId}/disable", responses={503: {"model": ErrorEnvelope}})
async def disable_device(
    deviceId: str, state: StateDep, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    """Refuse the device's logins and fixes (every gateway hears of it within a second; the
    broker disconnects it at once when the API has its admin account)."""
    return await _set_enabled(state, db, principal.tenant, deviceId, False)


@router.post("/{deviceId}/enable", responses={503: {"model": ErrorEnvelope}})
async def enable_device(
    deviceId: str, state: StateDep, db: DbDep, principal: AdminDep
) -> Envelope[None]:
    return await _set_enabled(state, db, principal.tenant, deviceId, True)


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


def _span(span: TrackQuery) -> None:
    if span.to_time <= span.from_time:
        raise ApiError(422, "toTime: must be after fromTime")
    if span.to_time - span.from_time > MAX_TRACK_RANGE:
        raise ApiError(422, f"toTime: at most {MAX_TRACK_RANGE.days} days after fromTime")


@router.get("/{deviceId}/track")
async def track(
    deviceId: str,
    state: StateDep,
    db: DbDep,
    principal: StaffDep,
    span: Annotated[TrackQuery, Query()],
) -> Envelope[Track]:
    """The valid fixes between fromTime and toTime: each stored fix when there are at most
    FIXGATE_TRACK_MAX_POINTS of them (bucketSeconds 0), else averaged into time buckets so
    that the response holds at most that many points."""
    _span(span)
    await _own_device(db, principal.tenant, deviceId)
    limit = state.settings.track_max_points
    rows = await positions.fixes(db, deviceId, principal.tenant, span.from_time, span.to_time,
                                 limit + 1)  # fmt: skip
    bucket_s = 0.0
    if len(rows) > limit:
        bucket_s = max(1.0, (span.to_time - span.from_time).total_seconds() / limit)
        rows = await positions.buckets(db, deviceId, principal.tenant, span.from_time,
                                       span.to_time, bucket_s, limit)  # fmt: skip
    points = [
        TrackPoint(
            time=r["time"],
            latitude=r["lat"],
            longitude=r["lon"],
            speed=r["speed"],
            heading=r["heading"],
        )
        for r in rows
    ]
    data = Track(device_id=deviceId, bucket_seconds=bucket_s, points=points)
    return Envelope[Track](status=200, message="OK", data=data)


def _filename(device_id: str, span: TrackQuery, fmt: ExportFormat) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_id)
    stamp = "%Y%m%dT%H%M%SZ"
    start, end = (t.astimezone(UTC).strftime(stamp) for t in (span.from_time, span.to_time))
    return f"{safe}_{start}_{end}.{fmt.value}"


async def _stream(
    state: ApiState, writer: Writer, device_id: str, tenant: str, span: TrackQuery
) -> AsyncIterator[str]:
    yield writer.head()
    after = None
    while True:
        async with state.conn() as conn:  # a connection per page, not for the whole download
            rows = await positions.page(conn, device_id, tenant, span.from_time, span.to_time,
                                        after, EXPORT_PAGE_ROWS)  # fmt: skip
        if rows:
            yield writer.rows(rows)
            after = rows[-1]["time"]
        if len(rows) < EXPORT_PAGE_ROWS:
            break
    yield writer.tail()


EXPORT_CONTENT = {
    MEDIA_TYPES[ExportFormat.CSV]: {"schema": {"type": "string"}},
    MEDIA_TYPES[ExportFormat.GPX]: {"schema": {"type": "string"}},
    MEDIA_TYPES[ExportFormat.GEOJSON]: {"schema": {"type": "object"}},
}


@router.get(
    "/{deviceId}/track/export",
    response_class=StreamingResponse,
    responses={
        200: {"description": "Every valid stored fix of the range", "content": EXPORT_CONTENT}
    },
)
async def export_track(
    deviceId: str,
    state: StateDep,
    db: DbDep,
    principal: StaffDep,
    query: Annotated[ExportQuery, Query()],
) -> StreamingResponse:
    """Every valid stored fix between fromTime and toTime, in time order, as CSV, GPX 1.1
    (a track of one segment) or GeoJSON (a FeatureCollection of Points): streamed."""
    span = TrackQuery(from_time=query.from_time, to_time=query.to_time)
    _span(span)
    await _own_device(db, principal.tenant, deviceId)
    writer = Writer(query.format, deviceId, span.from_time, span.to_time)
    name = _filename(deviceId, span, query.format)
    return StreamingResponse(
        _stream(state, writer, deviceId, principal.tenant, span),
        media_type=MEDIA_TYPES[query.format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
