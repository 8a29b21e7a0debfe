"""Geofences drawn in the browser (issue 22 item 5): an admin draws a polygon service area
on the map (leaflet-geoman) with its SLA, saves it through the API, and the running
engine emits `enter` for a device driven into it through the gateway; the same fence is
then edited (its shape typed as a circle, a new SLA) and keeps its id."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from playwright.async_api import BrowserContext, expect

from tests.e2e.browser.conftest import ORIGIN
from tests.support.api import Tenant
from tests.support.browser import log_in, screenshot, watch_errors
from tests.support.engine import EngineProcess, events
from tests.support.fleet import NmeaTracker, register
from tests.support.gateway import GatewayProcess

UI_TIMEOUT_MS = 10_000
CORNERS = ((-90, -70), (90, -70), (90, 70), (-90, 70))
"""The polygon's corners, pixels from the map's centre (the roads' centre: ORIGIN)."""


@pytest.fixture
def engine(fixgate_env: dict[str, str], tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(fixgate_env, tmp_path / "engine.log")
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


async def _draw_polygon(page: Any) -> None:
    box = await page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.get_by_role("button", name="Draw polygon").click()
    for dx, dy in (*CORNERS, CORNERS[0]):  # the first corner again closes it
        await page.mouse.click(cx + dx, cy + dy)
        await asyncio.sleep(0.15)


async def _enters(redis_client: aioredis.Redis, prefix: str, fence: int) -> list[dict[str, Any]]:
    return [e for e in await events(redis_client, prefix)
            if e["type"] == "geofence_enter" and e.get("geofence") == fence]  # fmt: skip


async def test_a_polygon_drawn_in_the_browser_makes_the_engine_see_a_device_enter(
    api_base: str,
    acme: Tenant,
    gateway: GatewayProcess,
    engine: EngineProcess,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
    admin: tuple[str, str],
) -> None:
    page = await browser.new_page()
    errors = watch_errors(page)
    await log_in(page, api_base, *admin, "/console/geofences")
    await page.get_by_label("Name").fill("Casino square")
    await page.get_by_label("Kind").select_option("service_area")
    await page.get_by_label("Response-time SLA (minutes)").fill("15")
    await _draw_polygon(page)
    shape = page.get_by_label("Shape as coordinates")
    await expect(shape).not_to_have_value("", timeout=UI_TIMEOUT_MS)
    assert len((await shape.input_value()).splitlines()) == 4
    await screenshot(page, "geofences-drawn")
    await page.get_by_role("button", name="Save geofence").click()
    item = page.locator("#fences li", has_text="Casino square")
    await expect(item).to_contain_text("SLA 15 min", timeout=UI_TIMEOUT_MS)

    fence = (await acme.client.get("/geofences", headers=acme.admin)).json()["data"][0]
    assert (fence["name"], fence["kind"], fence["geometryType"]) == (
        "Casino square", "service_area", "POLYGON",
    )  # fmt: skip
    ring = fence["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    areas = (await acme.client.get("/service-areas", headers=acme.admin)).json()["data"]
    assert [(a["geofenceId"], a["responseTimeSlaMinutes"]) for a in areas] == [
        (fence["geofenceId"], 15)
    ]

    # A van drives in from the south through the gateway; the engine sees it enter.
    lat_in = sum(p[1] for p in ring[:4]) / 4
    lon_in = sum(p[0] for p in ring[:4]) / 4
    south = min(p[1] for p in ring)
    token = await register(acme.client, acme.admin, "van-geo")
    await asyncio.sleep(1.5)  # the engines reload the tenant's fences within a second
    tracker = await NmeaTracker.connect(gateway.tcp_port, "van-geo", token)
    start = datetime.now(UTC) - timedelta(seconds=30)
    steps = 20
    for i in range(steps + 1):
        lat = (south - 0.002) + (lat_in - south + 0.002) * i / steps
        await tracker.fix(start + timedelta(seconds=i), lat, lon_in, 5.0, 0.0)
    for i in range(1, 6):  # standing inside
        await tracker.fix(start + timedelta(seconds=steps + i), lat_in, lon_in, 0.0, 0.0)
    await tracker.close()
    for _ in range(150):
        if await _enters(redis_client, redis_prefix, fence["geofenceId"]):
            break
        await asyncio.sleep(0.1)
    entered = await _enters(redis_client, redis_prefix, fence["geofenceId"])
    assert [e["device"] for e in entered] == ["van-geo"], engine.log.read_text()[-2000:]

    # Edited: the shape typed as a circle, a new SLA; the id stays.
    await page.get_by_role("button", name="Edit Casino square").click()
    await page.get_by_label("Response-time SLA (minutes)").fill("25")
    await shape.fill(f"{ORIGIN[0]}, {ORIGIN[1]}, 300")
    await shape.blur()
    await page.get_by_role("button", name="Save geofence").click()
    await expect(item).to_contain_text("circle 300 m", timeout=UI_TIMEOUT_MS)
    await expect(item).to_contain_text("SLA 25 min")
    edited = (await acme.client.get(f"/geofences/{fence['geofenceId']}",
                                    headers=acme.admin)).json()["data"]  # fmt: skip
    assert (edited["geometryType"], edited["radiusM"]) == ("POINT", 300)
    await screenshot(page, "geofences")
    assert errors == []
