"""The simulated fleet on real roads: where each vehicle drives next, routed by OSRM.

Every vehicle has a driver task. At the end of a leg it picks the next: an errand the demo
gave it (drive to a customer and wait there), else a trip (`fixgate simulate --trips N`:
start the engine's trip, drive there, stop for the service time), else a random
destination. Destinations are random points of the area that OSRM snaps onto a road
within `MAX_SNAP_M`; the vehicle drives to the snapped point (the route's last point), so
a trip's destination is on the road and the vehicle stops within a few metres of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Final, Protocol

import asyncpg
import httpx

from devtools.roads import Area, RoadState, random_point
from gateway.engine import trips as engine_trips
from gateway.engine.routing import nearest_snap_m, route
from geofence.routes import Route, usable

log = logging.getLogger("simulate")

MAX_SNAP_M: Final = 40.0
"""A random point further than this from a road is in the sea, a park or a building
block: drawn again."""
LEG_M: Final = (400.0, 3000.0)
"""Road distance of a random leg: long enough to be a drive, short enough that a trip
ends within a few minutes in a town."""
MAX_DRAWS: Final = 30
"""Random points tried for one destination before waiting and trying again."""
ROUTE_TIMEOUT_S: Final = 5.0
RETRY_S: Final = 2.0
"""Wait after OSRM failed to give a leg (down, or no destination found)."""
POLL_S: Final = 0.25
"""How often a driver looks whether its leg is over or an errand came in."""
SERVICE_S: Final = (20.0, 60.0)
"""Stop at a trip's destination, seconds (a short job; the queue ETA counts it)."""


class Vehicle(Protocol):
    """What a driver needs of a simulated device."""

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def road(self) -> RoadState | None: ...
    @property
    def errand(self) -> Errand | None: ...
    @errand.setter
    def errand(self, value: Errand | None) -> None: ...


@dataclass
class Errand:
    """Drive to (lat, lon) along the road and wait there until released (the demo's
    technician going to a customer)."""

    lat: float
    lon: float
    route: Route | None = None
    """Set once the driver has set off."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


class RoadPlanner:
    """Routes and destinations from OSRM, within an area."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, area: Area) -> None:
        self.client = client
        self.base_url = base_url
        self.area = area

    async def route(self, origin: tuple[float, float], dest: tuple[float, float]) -> Route | None:
        """The road route, when both ends are on (or next to) a road of the extract."""
        r = await route(self.client, self.base_url, origin, dest, ROUTE_TIMEOUT_S)
        return r if r is not None and usable(r, MAX_SNAP_M) else None

    async def road_point(
        self, rng: random.Random, within: Area | None = None
    ) -> tuple[float, float] | None:
        """A random point of the area (or of `within`) within MAX_SNAP_M of a road (not
        snapped yet)."""
        for _ in range(MAX_DRAWS):
            p = random_point(within or self.area, rng)
            snap = await nearest_snap_m(self.client, self.base_url, p, ROUTE_TIMEOUT_S)
            if snap is not None and snap <= MAX_SNAP_M:
                return p
        return None

    async def random_route(
        self,
        origin: tuple[float, float],
        rng: random.Random,
        leg_m: tuple[float, float] = LEG_M,
        nearby: bool = False,
        max_s: float | None = None,
    ) -> Route | None:
        """A route from `origin` to a random road point `leg_m` away by road (`nearby`:
        drawn within `leg_m[1]` as the crow flies, for short legs in a large area), and
        at most `max_s` at OSRM's speeds when given."""
        within = Area(origin[0], origin[1], leg_m[1]) if nearby else None
        for _ in range(MAX_DRAWS):
            dest = await self.road_point(rng, within)
            if dest is None:
                return None
            r = await self.route(origin, dest)
            if (
                r is not None
                and leg_m[0] <= r.distance_m <= leg_m[1]
                and (max_s is None or r.duration_s <= max_s)
            ):
                return r
        return None

    async def start_on_road(self, rng: random.Random) -> Route | None:
        """A first leg for a vehicle placed at a random road point."""
        here = await self.road_point(rng)
        return None if here is None else await self.random_route(here, rng)


@dataclass
class TripBook:
    """`--trips N`: trips handed to the fleet's vehicles one at a time until N are driven."""

    total: int
    pool: asyncpg.Pool
    handed: int = 0
    started: int = 0
    arrived: int = 0
    """Trips whose destination the vehicle reached (the engine decides `trip_arrived`)."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self) -> int | None:
        """The number of the next trip (1, 2, ...), or None when all are handed out."""
        if self.handed >= self.total:
            return None
        self.handed += 1
        return self.handed

    def give_back(self) -> None:
        self.handed -= 1

    def finish(self) -> None:
        self.arrived += 1
        if self.arrived >= self.total:
            self.done.set()

    async def start(
        self, v: Vehicle, number: int, dest: tuple[float, float], service_s: float
    ) -> str:
        async with self.pool.acquire() as conn:
            trip_id = await engine_trips.start_trip(
                conn, tenant=v.tenant, device=v.id, lat=dest[0], lon=dest[1],
                service_s=service_s, ref=f"sim:{v.id}:{number}",
            )  # fmt: skip
        self.started += 1
        return trip_id


def _here(road: RoadState) -> tuple[float, float]:
    return road.motion.lat, road.motion.lon


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """True when stopped meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _until_leg_done(v: Vehicle, road: RoadState, stop: asyncio.Event) -> bool:
    """Wait for the end of the leg; False when stopped or an errand came in first."""
    while not road.motion.done:
        if await _sleep(stop, POLL_S) or v.errand is not None:
            return False
    return True


async def _run_errand(
    v: Vehicle, road: RoadState, errand: Errand, planner: RoadPlanner, stop: asyncio.Event
) -> None:
    while errand.route is None:
        errand.route = await planner.route(_here(road), (errand.lat, errand.lon))
        if errand.route is None and await _sleep(stop, RETRY_S):
            return
    assert errand.route is not None
    road.drive(errand.route)
    while not road.motion.done:
        if await _sleep(stop, POLL_S):
            return
    errand.arrived.set()
    await _first(errand.released, stop)
    if v.errand is errand:
        v.errand = None


async def _first(a: asyncio.Event, b: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _drive_trip(
    v: Vehicle, road: RoadState, planner: RoadPlanner, trips: TripBook, number: int,
    stop: asyncio.Event,
) -> None:  # fmt: skip
    r = await planner.random_route(_here(road), road.rng)
    if r is None:
        trips.give_back()
        await _sleep(stop, RETRY_S)
        return
    service_s = road.rng.uniform(*SERVICE_S)
    try:
        await trips.start(v, number, r.points[-1], service_s)
    except (OSError, asyncpg.PostgresError) as e:
        log.warning("simulate: cannot start a trip for %s: %s", v.id, e)
        trips.give_back()
        await _sleep(stop, RETRY_S)
        return
    road.drive(r)
    if await _until_leg_done(v, road, stop):
        trips.finish()
        await _sleep(stop, service_s)  # the job at the destination


async def drive_on_roads(
    v: Vehicle, planner: RoadPlanner, stop: asyncio.Event, trips: TripBook | None = None
) -> None:
    """The vehicle's driver, until stop."""
    road = v.road
    assert road is not None
    if road.walking is not None:
        trips = None  # a walker would take half an hour per trip: the drivers take them
    while not stop.is_set():
        errand = v.errand
        number = trips.take() if trips is not None and errand is None else None
        if errand is not None:
            await _run_errand(v, road, errand, planner, stop)
        elif number is not None:
            assert trips is not None
            await _drive_trip(v, road, planner, trips, number, stop)
        else:
            r = await planner.random_route(_here(road), road.rng)
            if r is None:
                await _sleep(stop, RETRY_S)
                continue
            road.drive(r)
            await _until_leg_done(v, road, stop)
