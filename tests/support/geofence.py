"""Builders for engine tests: fixes at metre offsets, fences, and a driver that runs the
core batch by batch, round-tripping each device's state through msgpack as the shell does."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import shapely

from devices.fix import Fix
from geofence.config import EngineConfig
from geofence.engine import DeviceJob, evaluate
from geofence.events import AnyEvent
from geofence.index import FenceIndex, FenceSpec
from geofence.state import DeviceState, decode_state, encode_state
from geofence.trips import RouteRequest, TripSpec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SPHERE_R_M = 6_371_008.8


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point `north_m`/`east_m` away on a sphere: independent of the code under test
    (spherical, so ~0.3 % off the ellipsoid: tests keep margins of a few metres)."""
    dlat = north_m / SPHERE_R_M
    dlon = east_m / (SPHERE_R_M * math.cos(math.radians(lat)))
    return lat + math.degrees(dlat), lon + math.degrees(dlon)


def fix(
    t_s: float,
    lat: float,
    lon: float,
    *,
    device: str = "dev-1",
    tenant: str = "t1",
    speed: float | None = None,
    accuracy: float | None = 5.0,
    hdop: float | None = None,
    valid: bool = True,
) -> Fix:
    return Fix(
        device_id=device, tenant_id=tenant, time=T0 + timedelta(seconds=t_s), lat=lat, lon=lon,
        speed=speed, accuracy=accuracy, hdop=hdop, valid=valid,
    )  # fmt: skip


def square(
    fid: int, lat: float, lon: float, half_m: float, *, tenant: str = "t1", dwell_s: float = 0.0
) -> FenceSpec:
    """A square fence of side 2 * half_m centred on (lat, lon)."""
    s, w = offset(lat, lon, -half_m, -half_m)
    n, e = offset(lat, lon, half_m, half_m)
    poly = shapely.box(w, s, e, n)
    return FenceSpec(
        id=fid, tenant=tenant, name=f"sq{fid}", wkb=shapely.to_wkb(poly), dwell_s=dwell_s
    )


def strip(
    fid: int, lat: float, lon: float, width_m: float, length_m: float, *, tenant: str = "t1"
) -> FenceSpec:
    """A north-south strip `width_m` wide (east-west), centred on (lat, lon)."""
    s, w = offset(lat, lon, -length_m / 2, -width_m / 2)
    n, e = offset(lat, lon, length_m / 2, width_m / 2)
    return FenceSpec(
        id=fid, tenant=tenant, name=f"strip{fid}", wkb=shapely.to_wkb(shapely.box(w, s, e, n))
    )


def circle(
    fid: int, lat: float, lon: float, radius_m: float, *, tenant: str = "t1", dwell_s: float = 0.0
) -> FenceSpec:
    return FenceSpec(
        id=fid, tenant=tenant, name=f"c{fid}", lat=lat, lon=lon, radius_m=radius_m, dwell_s=dwell_s
    )


class Driver:
    """Feeds fixes to the core like the shell: one state per device, stored as msgpack."""

    def __init__(
        self, fences: Iterable[FenceSpec] = (), config: EngineConfig | None = None
    ) -> None:
        fences = list(fences)
        tenants = {f.tenant for f in fences}
        self.indexes = {t: FenceIndex([f for f in fences if f.tenant == t]) for t in tenants}
        self.config = config or EngineConfig(routing_enabled=False)
        self.stored: dict[str, bytes] = {}
        self.events: list[AnyEvent] = []
        self.requests: list[RouteRequest] = []
        self.now = 1_000_000.0

    def state(self, device: str = "dev-1", tenant: str = "t1") -> DeviceState:
        raw = self.stored.get(device)
        return decode_state(raw) if raw is not None else DeviceState(device=device, tenant=tenant)

    def store(self, state: DeviceState) -> None:
        self.stored[state.device] = encode_state(state)

    def feed(
        self, fixes: Iterable[Fix], trips: dict[str, list[TripSpec]] | None = None
    ) -> list[AnyEvent]:
        by_device: dict[str, list[Fix]] = {}
        for f in fixes:
            by_device.setdefault(f.device_id, []).append(f)
        jobs = [
            DeviceJob(state=self.state(d, fs[0].tenant_id), fixes=fs, trips=(trips or {}).get(d))
            for d, fs in by_device.items()
        ]
        out: list[AnyEvent] = []
        for result in evaluate(jobs, self.indexes, self.config, self.now):
            if result.changed:
                self.store(result.state)
            out += result.events
            self.requests += result.route_requests
        self.events += out
        return out

    def feed_each(
        self, fixes: Iterable[Fix], trips: dict[str, list[TripSpec]] | None = None
    ) -> list[AnyEvent]:
        """One batch per fix (the trips given with the first)."""
        out: list[AnyEvent] = []
        for i, f in enumerate(fixes):
            out += self.feed([f], trips if i == 0 else None)
        return out


def types(events: Iterable[AnyEvent]) -> list[str]:
    return [type(e).__struct_config__.tag for e in events]  # type: ignore[misc]
