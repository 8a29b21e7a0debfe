"""History playback in a real browser (issue 22 item 4): a tow truck drives a known route
through the gateway (TCP NMEA, fixes with their own times), stopping for over a minute
half way; the playback page draws its track with the stop marked, its slider walks the
stored fixes one by one (by keyboard), Play runs to the end, and the CSV, GPX (valid
against the GPX 1.1 schema) and GeoJSON exports of the range hold exactly the stored
fixes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from playwright.async_api import BrowserContext, Page, expect

from tests.e2e.browser.conftest import ORIGIN
from tests.support.api import Tenant
from tests.support.browser import log_in, screenshot, watch_errors
from tests.support.exports import from_csv, from_geojson, from_gpx
from tests.support.fleet import NmeaTracker, register
from tests.support.gateway import GatewayProcess

UI_TIMEOUT_MS = 10_000
MOVING, STANDING = 20, 65
"""Fixes a second: 20 driving, 65 standing (a stop: over a minute), 20 driving."""
STEP = 0.0001  # degrees a second: about 11 m/s north-east


def route(start: datetime) -> list[tuple[datetime, float, float, float]]:
    """(time, lat, lon, speed m/s) of the known drive."""
    fixes = []
    lat, lon = ORIGIN
    for i in range(MOVING + STANDING + MOVING):
        moving = i < MOVING or i >= MOVING + STANDING
        if moving and i:
            lat, lon = lat + STEP, lon + STEP
        fixes.append((start + timedelta(seconds=i), lat, lon, 11.0 if moving else 0.0))
    return fixes


async def _drive(
    gateway: GatewayProcess, pg: asyncpg.Connection, token: str
) -> list[tuple[datetime, float, float]]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    tracker = await NmeaTracker.connect(gateway.tcp_port, "tow-9", token)
    for at, lat, lon, speed in route(start):
        await tracker.fix(at, lat, lon, speed, 45.0)
    total = MOVING * 2 + STANDING
    for _ in range(100):
        if await pg.fetchval("SELECT count(*) FROM positions WHERE device_id = 'tow-9'") == total:
            break
        await asyncio.sleep(0.1)
    await tracker.close()
    rows = await pg.fetch(
        "SELECT time, lat, lon FROM positions WHERE device_id = 'tow-9' AND valid ORDER BY time"
    )
    assert len(rows) == total
    return [(r["time"], r["lat"], r["lon"]) for r in rows]


async def _readout(page: Page) -> tuple[datetime, float, float]:
    data = await page.locator("#cursor-readout").evaluate(
        "o => [o.dataset.time, o.dataset.lat, o.dataset.lon]"
    )
    return datetime.fromisoformat(data[0]), float(data[1]), float(data[2])


async def _download(page: Page, name: str) -> bytes:
    async with page.expect_download() as info:
        await page.get_by_role("button", name=name).click()
    download = await info.value
    path = await download.path()
    return await asyncio.to_thread(Path(path).read_bytes)


async def test_playback_walks_the_stored_fixes_and_exports_them(
    api_base: str,
    acme: Tenant,
    gateway: GatewayProcess,
    dispatcher: tuple[str, str],
    pg: asyncpg.Connection,
    browser: BrowserContext,
) -> None:
    token = await register(acme.client, acme.admin, "tow-9", "tow_truck")
    stored = await _drive(gateway, pg, token)
    page = await browser.new_page()
    errors = watch_errors(page)
    await log_in(page, api_base, *dispatcher, path="/console/playback")
    await page.get_by_label("Vehicle").select_option("tow-9")
    await page.get_by_role("button", name="Show track").click()
    await expect(page.locator("#track-summary")).to_have_text(f"{len(stored)} fixes, as stored",
                                                              timeout=UI_TIMEOUT_MS)  # fmt: skip
    await expect(page.locator("#stops li")).to_have_count(1)  # the minute standing
    await expect(page.locator("#map path.stop")).to_have_count(1)
    await expect(page.locator("#stops li")).to_contain_text("1 min 04 s")

    # The slider, by keyboard: each step is the next stored fix, exactly.
    slider = page.get_by_label("Time")
    await slider.focus()
    await page.keyboard.press("Home")
    for i, fix in enumerate(stored):
        if i:
            await page.keyboard.press("ArrowRight")
        assert await _readout(page) == fix, i
    await screenshot(page, "playback")

    # Play at 300x: the cursor runs to the last fix and the button says Play again.
    await page.keyboard.press("Home")
    await page.get_by_label("Speed").select_option("300")
    await page.get_by_role("button", name="Play").click()
    await expect(page.get_by_role("button", name="Pause")).to_be_visible()
    await expect(page.get_by_role("button", name="Play")).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert await _readout(page) == stored[-1]

    gpx = await _download(page, "Export GPX")
    assert from_gpx(gpx) == stored
    assert from_csv((await _download(page, "Export CSV")).decode()) == stored
    assert from_geojson((await _download(page, "Export GeoJSON")).decode()) == stored
    assert errors == []
