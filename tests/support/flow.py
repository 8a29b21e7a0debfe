"""Helpers for the whole-flow tests: a device that drives real roads and sends its fixes
to the gateway's TCP NMEA listener, as a receiver in a van would."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise
from types import TracebackType

from contracts.geodesy import haversine_m
from devices.nmea_write import rmc_gga
from devices.tcp_nmea import login_sentence

KNOTS_PER_MPS = 1 / 0.514444
Point = tuple[float, float]


def bearing_deg(a: Point, b: Point) -> float:
    """Initial great-circle bearing from a to b, degrees clockwise from north."""
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    y = math.sin(dlon) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


def along(points: Sequence[Point], step_m: float) -> list[Point]:
    """Points every `step_m` metres along a polyline (its first and last included): where a
    vehicle driving it at step_m per second is, second by second."""
    out = [points[0]]
    carried = 0.0  # metres driven since the last emitted point
    for a, b in pairwise(points):
        length = haversine_m(*a, *b)
        at = step_m - carried
        while at <= length:
            f = at / length
            out.append((a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f))
            at += step_m
        carried = length - (at - step_m)
    if out[-1] != points[-1]:
        out.append(points[-1])
    return out


def remaining_m(points: Sequence[Point], index: int) -> float:
    """Metres along `points` from points[index] to the end."""
    return math.fsum(haversine_m(*a, *b) for a, b in pairwise(points[index:]))


class NmeaDevice:
    """One TCP connection to the gateway: login, then an RMC+GGA epoch per fix."""

    def __init__(self, port: int, device_id: str, token: str, start: datetime) -> None:
        self.port, self.device_id, self.token = port, device_id, token
        self.time = start  # the fix time of the next epoch
        self.at: Point | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> NmeaDevice:
        _, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writer.write(login_sentence(self.device_id, self.token))
        await self._writer.drain()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def fix(self, point: Point, speed_mps: float, course: float | None = None) -> None:
        """One epoch at `point`, then the clock moves on a second."""
        assert self._writer is not None
        if course is None:
            course = bearing_deg(self.at, point) if self.at and self.at != point else 0.0
        self._writer.write(
            rmc_gga(self.time, point[0], point[1], speed_mps * KNOTS_PER_MPS, course, hdop=0.9)
        )
        await self._writer.drain()
        self.at = point
        self.time += timedelta(seconds=1)

    async def drive(self, points: Sequence[Point], speed_mps: float, pause_s: float) -> None:
        """A fix at each point (one a second of fix time), `pause_s` of wall time apart."""
        for point in points:
            await self.fix(point, speed_mps)
            await asyncio.sleep(pause_s)

    async def stop(self, seconds: int, pause_s: float, at: Point | None = None) -> None:
        """Standing still for `seconds` of fix time, where it is or at `at`."""
        where = at or self.at
        assert where is not None, "a device that never sent a fix is nowhere"
        for _ in range(seconds):
            await self.fix(where, 0.0, course=0.0)
            await asyncio.sleep(pause_s)
