"""The OSRM client against the stack's real osrm-routed, on the stack's extract."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from itertools import pairwise

import httpx
import pytest

from gateway.engine.routing import nearest_snap_m, route
from geofence.routes import project, usable
from tests.support.osrm import BERLIN, haversine_m, own_osrm_routed, stack_extract_points

TIMEOUT_S = 2.0


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


async def test_a_route_between_two_points_of_the_extract(
    client: httpx.AsyncClient, routing_url: str
) -> None:
    where = stack_extract_points()
    found = await route(client, routing_url, where.origin, where.destination, TIMEOUT_S)
    assert found is not None
    crow_m = haversine_m(where.origin, where.destination)
    # By road: longer than as the crow flies, but not absurdly so in a city.
    assert crow_m < found.distance_m < 3 * crow_m, (crow_m, found.distance_m)
    speed_kmh = found.distance_m / found.duration_s * 3.6
    assert 10 < speed_kmh < 70, speed_kmh
    # Starts and ends where asked (the points are on the extract's roads).
    assert found.origin_snap_m < 50 and found.destination_snap_m < 50
    assert haversine_m(found.points[0], where.origin) == pytest.approx(found.origin_snap_m, abs=1)
    assert haversine_m(found.points[-1], where.destination) == pytest.approx(
        found.destination_snap_m, abs=1
    )
    assert usable(found, max_snap_m=50)
    # The segments add up to the totals, and each is the length between its two points.
    assert math.fsum(found.segment_distances_m) == pytest.approx(found.distance_m)
    assert math.fsum(found.segment_durations_s) == pytest.approx(found.duration_s)
    for (a, b), d in zip(pairwise(found.points), found.segment_distances_m, strict=True):
        assert haversine_m(a, b) == pytest.approx(d, rel=0.01, abs=0.5)
    # Every point is on a road OSRM knows.
    snaps = [await nearest_snap_m(client, routing_url, p, TIMEOUT_S) for p in found.points]
    assert all(s is not None and s < 1.0 for s in snaps), max(s or 0.0 for s in snaps)
    # The core's projection of the origin leaves the whole route to go.
    at_start = project(found, *found.points[0])
    assert at_start.remaining_distance_m == pytest.approx(found.distance_m)
    assert at_start.remaining_duration_s == pytest.approx(found.duration_s)


async def test_a_destination_outside_the_extract_snaps_far(
    client: httpx.AsyncClient, routing_url: str
) -> None:
    where = stack_extract_points()
    found = await route(client, routing_url, where.origin, BERLIN, TIMEOUT_S)
    assert found is not None
    assert found.origin_snap_m < 50
    # OSRM answers Ok with the nearest road it knows, hundreds of kilometres away.
    assert found.destination_snap_m > 500_000
    assert not usable(found, max_snap_m=250)
    snap = await nearest_snap_m(client, routing_url, BERLIN, TIMEOUT_S)
    assert snap is not None and snap > 500_000


async def test_an_invalid_request_is_none(client: httpx.AsyncClient, routing_url: str) -> None:
    where = stack_extract_points()
    # OSRM answers 400 InvalidValue for a latitude beyond the pole.
    assert await route(client, routing_url, (93.0, 7.42), where.destination, TIMEOUT_S) is None
    assert await nearest_snap_m(client, routing_url, (93.0, 7.42), TIMEOUT_S) is None


async def test_a_stopped_osrm_gives_none_within_the_timeout(client: httpx.AsyncClient) -> None:
    where = stack_extract_points()
    with own_osrm_routed() as osrm:
        url = f"http://127.0.0.1:{osrm.settings.stack_osrm_port}"
        assert await route(client, url, where.origin, where.destination, TIMEOUT_S) is not None
        assert osrm.stop()
    started = time.monotonic()
    assert await route(client, url, where.origin, where.destination, TIMEOUT_S) is None
    assert time.monotonic() - started < TIMEOUT_S


async def test_an_osrm_that_never_answers_gives_none_at_the_timeout(
    client: httpx.AsyncClient,
) -> None:
    """A server that accepts the connection and then says nothing (a hung osrm-routed)."""
    where = stack_extract_points()
    held: list[asyncio.StreamWriter] = []

    async def accept_and_hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        timeout_s = 0.5
        started = time.monotonic()
        found = await route(
            client, f"http://127.0.0.1:{port}", where.origin, where.destination, timeout_s
        )
        took = time.monotonic() - started
        assert found is None
        assert timeout_s <= took < timeout_s + 0.5, took
        assert held, "the request never reached the server"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
