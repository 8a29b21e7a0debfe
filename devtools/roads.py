"""Driving on real roads: a vehicle following an OSRM route, and GPS noise (pure: no clock,
no I/O, no global randomness; `devtools.driving` fetches the routes).

A `Leg` is an OSRM route turned into what one drive along it looks like: a speed per
segment (OSRM's speed times a factor drawn per stretch of road, so the vehicle is slower
than OSRM thinks in places and faster in others) and a stop at some junctions (a traffic
light, a give-way). `RoadMotion` is where a vehicle is on its leg; `step` moves it on.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from contracts.geodesy import MEAN_EARTH_RADIUS_M, haversine_m, metres_per_degree
from geofence.routes import Route

MIN_SPEED_MPS: Final = 1.5
"""Slowest a moving vehicle goes between stops (a crawl behind a bus)."""
MAX_SPEED_MPS: Final = 33.0
"""120 km/h: past the motorway limit in France, Monaco has nothing faster."""
DEFAULT_SPEED_MPS: Final = 10.0
"""A segment OSRM gives no duration for (0 s): town speed."""
SPEED_FACTORS: Final = (0.55, 1.25)
"""Drawn per stretch: traffic makes a driver slower than OSRM's free-flow speeds in
places; an empty road, faster."""
STRETCH_M: Final = (150.0, 500.0)
"""How long one speed factor holds, metres (a block or two)."""
TURN_DEG: Final = 35.0
"""A change of direction this sharp at a vertex is taken for a junction."""
STOP_CHANCE: Final = 0.3
"""Share of junctions the vehicle stops at."""
STOP_S: Final = (3.0, 20.0)
"""How long a stop at a junction lasts, seconds (give way .. a red light)."""
MAX_SEGMENTS_PER_STEP: Final = 100_000
"""Bound on the loop of one step (a long gap after a stall crosses many segments)."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One drive along a route, its speeds and stops drawn."""

    points: tuple[tuple[float, float], ...]
    """(lat, lon), at least one; a leg of one point is a parked vehicle."""
    lengths_m: tuple[float, ...]
    """Per segment: len(points) - 1 entries."""
    speeds_mps: tuple[float, ...]
    """Per segment, > 0."""
    stops_s: tuple[float, ...]
    """Per point: how long the vehicle waits on reaching it (0 mostly)."""

    @property
    def distance_m(self) -> float:
        return math.fsum(self.lengths_m)

    @property
    def duration_s(self) -> float:
        """Driving and stopping time of the whole leg."""
        return math.fsum(d / v for d, v in zip(self.lengths_m, self.speeds_mps, strict=True)) + (
            math.fsum(self.stops_s[1:])
        )


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from point 1 to point 2, degrees true in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


class Area(NamedTuple):
    lat: float
    lon: float
    radius_m: float


def destination(lat: float, lon: float, bearing: float, distance: float) -> tuple[float, float]:
    """The point `distance` metres from (lat, lon) along the great circle at `bearing`."""
    d = distance / MEAN_EARTH_RADIUS_M
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def random_point(area: Area, rng: random.Random) -> tuple[float, float]:
    """Uniform over the disc (sqrt: equal area per ring, not a pile-up at the centre)."""
    return destination(
        area.lat, area.lon, rng.uniform(0, 360), area.radius_m * math.sqrt(rng.random())
    )


def parked(at: tuple[float, float]) -> Leg:
    return Leg(points=(at,), lengths_m=(), speeds_mps=(), stops_s=(0.0,))


def turn_deg(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
    """How sharply a path a -> b -> c turns at b, degrees in [0, 180]."""
    if a == b or b == c:
        return 0.0
    d = bearing_deg(*b, *c) - bearing_deg(*a, *b)
    return abs((d + 180.0) % 360.0 - 180.0)


def plan_leg(
    route: Route, rng: random.Random, fixed_speeds: tuple[float, float] | None = None
) -> Leg:
    """The drive along `route`: OSRM's speed per segment times a factor per stretch
    (`fixed_speeds`: a walker's range instead, OSRM's speeds do not apply), and stops at
    some of the junctions (not at the start or the end: the caller stops there)."""
    points = tuple(route.points)
    lengths = tuple(haversine_m(a[0], a[1], b[0], b[1]) for a, b in itertools.pairwise(points))
    speeds: list[float] = []
    stretch_left = 0.0
    factor = 1.0
    walk = 1.0
    for i, length in enumerate(lengths):
        if stretch_left <= 0.0:
            stretch_left = rng.uniform(*STRETCH_M)
            factor = rng.uniform(*SPEED_FACTORS)
            walk = rng.uniform(*fixed_speeds) if fixed_speeds else 1.0
        stretch_left -= length
        if fixed_speeds is not None:
            speeds.append(walk)
            continue
        duration = route.segment_durations_s[i] if i < len(route.segment_durations_s) else 0.0
        nominal = length / duration if duration > 0.0 else DEFAULT_SPEED_MPS
        speeds.append(min(MAX_SPEED_MPS, max(MIN_SPEED_MPS, nominal * factor)))
    stops = [0.0] * len(points)
    for i in range(1, len(points) - 1):
        if (
            turn_deg(points[i - 1], points[i], points[i + 1]) >= TURN_DEG
            and rng.random() < STOP_CHANCE
        ):
            stops[i] = rng.uniform(*STOP_S)
    return Leg(points=points, lengths_m=lengths, speeds_mps=tuple(speeds), stops_s=tuple(stops))


@dataclass(frozen=True, slots=True)
class RoadMotion:
    """Where a vehicle is on its leg: on segment `segment`, `along_m` into it."""

    leg: Leg
    segment: int = 0
    along_m: float = 0.0
    wait_s: float = 0.0
    """Left of the stop at the current point (the start of `segment`)."""
    lat: float = 0.0
    lon: float = 0.0
    speed: float = 0.0
    """m/s right now: 0 while stopped or parked."""
    heading: float = 0.0
    """Degrees true of the current segment; kept through stops."""

    @property
    def done(self) -> bool:
        """At the end of the leg (parked)."""
        return self.segment >= len(self.leg.lengths_m)


def start_leg(leg: Leg, heading: float = 0.0) -> RoadMotion:
    lat, lon = leg.points[0]
    return _place(RoadMotion(leg=leg, wait_s=leg.stops_s[0], lat=lat, lon=lon, heading=heading))


def _place(m: RoadMotion) -> RoadMotion:
    """Fill in position, speed and heading from (segment, along_m)."""
    if m.done:
        lat, lon = m.leg.points[-1]
        return replace(m, lat=lat, lon=lon, speed=0.0)
    a, b = m.leg.points[m.segment], m.leg.points[m.segment + 1]
    length = m.leg.lengths_m[m.segment]
    t = m.along_m / length if length > 0.0 else 0.0
    heading = bearing_deg(*a, *b) if a != b else m.heading
    moving = m.wait_s <= 0.0
    return replace(
        m,
        lat=a[0] + (b[0] - a[0]) * t,
        lon=a[1] + (b[1] - a[1]) * t,
        speed=m.leg.speeds_mps[m.segment] if moving else 0.0,
        heading=heading,
    )


def point_ahead(m: RoadMotion, min_m: float, max_m: float) -> tuple[float, float] | None:
    """The first point of the leg at least `min_m` ahead along it, when it is no more
    than `max_m` ahead (a place the vehicle is driving towards); None when the leg ends
    sooner or bends no point into the window."""
    if m.done:
        return None
    ahead = m.leg.lengths_m[m.segment] - m.along_m
    for i in range(m.segment + 1, len(m.leg.points)):
        if ahead > max_m:
            return None
        if ahead >= min_m:
            return m.leg.points[i]
        if i < len(m.leg.lengths_m):
            ahead += m.leg.lengths_m[i]
    return None


def step_road(m: RoadMotion, dt: float) -> RoadMotion:
    """Where the vehicle is `dt` seconds later: waiting out stops, along segments, parked
    at the end of the leg."""
    left = max(0.0, dt)
    segment, along, wait = m.segment, m.along_m, m.wait_s
    leg = m.leg
    for _ in range(MAX_SEGMENTS_PER_STEP):
        if segment >= len(leg.lengths_m):
            break
        if wait > 0.0:
            used = min(wait, left)
            wait -= used
            left -= used
            if wait > 0.0:
                break
        speed = leg.speeds_mps[segment]
        to_end = leg.lengths_m[segment] - along
        if speed * left < to_end:
            along += speed * left
            break
        left -= to_end / speed
        segment += 1
        along = 0.0
        wait = leg.stops_s[segment]
    return _place(replace(m, segment=segment, along_m=along, wait_s=wait))


# ---- GPS noise ---------------------------------------------------------------------------

NOISE_CORRELATION: Final = 0.8
"""Per-second correlation of the position error: a receiver's error drifts over seconds
rather than jumping independently at every fix."""
ACCURACY_M: Final = (3.0, 8.0)
"""The accuracy a receiver reports (its 1-sigma-ish horizontal error estimate), drawn per
fix: a few metres under an open sky, more in Monaco's street canyons."""


@dataclass(frozen=True, slots=True)
class Noise:
    """The current position error, metres north and east."""

    north_m: float = 0.0
    east_m: float = 0.0


def next_noise(noise: Noise, dt: float, rng: random.Random) -> tuple[Noise, float]:
    """The error `dt` seconds on (AR(1) with a 3 m standard deviation), and the accuracy
    the receiver reports with it."""
    accuracy = rng.uniform(*ACCURACY_M)
    rho = NOISE_CORRELATION ** max(0.0, dt)
    sigma = accuracy / 2.0
    innovation = sigma * math.sqrt(max(0.0, 1.0 - rho * rho))
    return (
        Noise(
            north_m=rho * noise.north_m + rng.gauss(0.0, innovation),
            east_m=rho * noise.east_m + rng.gauss(0.0, innovation),
        ),
        accuracy,
    )


def offset(lat: float, lon: float, noise: Noise) -> tuple[float, float]:
    """(lat, lon) moved by the error (flat-earth: metres at a few metres' scale)."""
    m_lat, m_lon = metres_per_degree(lat)
    return lat + noise.north_m / m_lat, lon + noise.east_m / m_lon


@dataclass
class RoadState:
    """One vehicle on the roads: its motion, its receiver's error, its own randomness."""

    motion: RoadMotion
    rng: random.Random
    noise: Noise = Noise()
    walking: tuple[float, float] | None = None
    """A walker's speed range (m/s); None: a vehicle at OSRM's speeds, varied."""

    def drive(self, route: Route) -> None:
        """Set off along `route` from wherever the vehicle is (it starts on the road)."""
        self.motion = start_leg(plan_leg(route, self.rng, self.walking), self.motion.heading)

    def advance(self, dt: float) -> tuple[RoadMotion, float, float, float]:
        """The motion `dt` seconds on, and the position the receiver reports with its accuracy."""
        self.motion = step_road(self.motion, dt)
        self.noise, accuracy = next_noise(self.noise, dt, self.rng)
        lat, lon = offset(self.motion.lat, self.motion.lon, self.noise)
        return self.motion, lat, lon, accuracy
