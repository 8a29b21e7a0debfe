"""The demo's geofences and the engine events it prints as they happen.

Through the dispatch API (`/geofences`, an admin token): a service area over half of the
demo's area (also dispatch's service area, `/service-areas`, with a response-time SLA) and
a depot circle at its centre, created once (reused by name afterwards).
Then a reader of the engine's events streams prints each geofence event and
arrival as it comes, with the fence's name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx

from contracts import events
from contracts.geodesy import metres_per_degree
from contracts.keys import Keys
from devtools.roads import Area
from gateway.redis_link import REDIS_ERRORS, Poll, connect_when_up, read_streams

SERVICE_AREA = "Demo service area (east half)"
SERVICE_AREA_SLA_MIN = 15
DEPOT = "Demo depot"
DEPOT_RADIUS_M = 150.0
DEPOT_DWELL_S = 20.0
"""A vehicle waiting at the depot this long gets a geofence_dwell."""
PRINTED = ("geofence_enter", "geofence_exit", "geofence_dwell", "geofence_crossed", "trip_arrived")


def _service_area(area: Area) -> dict[str, Any]:
    """The east half of the area's square: vehicles cross its west edge often."""
    m_lat, m_lon = metres_per_degree(area.lat)
    dlat, dlon = area.radius_m / m_lat, area.radius_m / m_lon
    w, e, s, n = area.lon, area.lon + dlon, area.lat - dlat, area.lat + dlat
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


async def ensure_geofences(
    api: httpx.AsyncClient, admin: dict[str, str], area: Area, say: Callable[[str], None]
) -> dict[int, str]:
    """The demo's fences by id, created when missing."""
    listed = await api.get("/geofences", params={"rowsPerPage": 100}, headers=admin)
    listed.raise_for_status()
    found = {g["name"]: g["geofenceId"] for g in listed.json()["data"]}
    wanted: list[dict[str, Any]] = [
        {"name": SERVICE_AREA, "kind": "service_area", "geometry": _service_area(area)},
        {
            "name": DEPOT, "kind": "depot", "radiusM": DEPOT_RADIUS_M, "dwellS": DEPOT_DWELL_S,
            "geometry": {"type": "Point", "coordinates": [area.lon, area.lat]},
        },
    ]  # fmt: skip
    for body in wanted:
        if body["name"] not in found:
            made = await api.post("/geofences", json=body, headers=admin)
            made.raise_for_status()
            found[body["name"]] = made.json()["data"]["id"]
            say(f"demo: geofence {body['name']!r} created (id {found[body['name']]})")
    await _ensure_service_area(api, admin, int(found[SERVICE_AREA]), say)
    return {int(fid): name for name, fid in found.items()}


async def _ensure_service_area(
    api: httpx.AsyncClient, admin: dict[str, str], geofence_id: int, say: Callable[[str], None]
) -> None:
    """The service area fence as dispatch's service area: requests made in it are due a
    technician within SERVICE_AREA_SLA_MIN (seed 000's response-time SLA)."""
    listed = await api.get("/service-areas", params={"rowsPerPage": 100}, headers=admin)
    listed.raise_for_status()
    if any(a["geofenceId"] == geofence_id for a in listed.json()["data"]):
        return
    body = {"geofenceId": geofence_id, "responseTimeSlaMinutes": SERVICE_AREA_SLA_MIN,
            "description": "The demo's SLA: a technician there within 15 minutes"}  # fmt: skip
    made = await api.post("/service-areas", json=body, headers=admin)
    made.raise_for_status()
    say(f"demo: {SERVICE_AREA!r} is a service area (SLA {SERVICE_AREA_SLA_MIN} min)")


async def print_engine_events(
    redis_url: str, prefix: str, fences: dict[int, str], stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """Follow the engine's events (every shard's stream) from now on and print what a
    dispatcher would watch."""
    client = await connect_when_up(redis_url)
    ids: dict[str, str] = dict.fromkeys(Keys(prefix).all_events(), "$")
    poll = Poll()
    try:
        while not stop.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                got = await read_streams(client, ids, count=100, block_ms=1000, poll=poll)
                for stream, entries in got:
                    for entry_id, fields in entries:
                        ids[stream] = entry_id.decode()
                        event = events.read(fields)
                        if event is not None and event.get("type") in PRINTED:
                            say(_line(event, fences))
    finally:
        await client.aclose()


def _line(event: dict[str, Any], fences: dict[int, str]) -> str:
    kind = event["type"]
    if kind == "trip_arrived":
        return (
            f"engine: {event['device']} arrived (trip {event['trip'][:8]}, at {event['fix_time']})"
        )
    fence = fences.get(event["geofence"], f"geofence {event['geofence']}")
    extra = f" after {event['dwell_s']:.0f} s" if kind == "geofence_dwell" else ""
    verb = kind.removeprefix("geofence_")
    return f"engine: {event['device']} {verb} {fence!r}{extra} (at {event['fix_time']})"
