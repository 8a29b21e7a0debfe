"""Devices from the browser (issue 22 item 6): an admin registers a device on the device
page, the token is shown once; a tracker connects to the gateway with that token and its
fix is stored; the page shows it live with its protocol; disable and enable work."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from playwright.async_api import BrowserContext, expect

from tests.e2e.browser.conftest import ORIGIN
from tests.support.browser import log_in, screenshot, watch_errors
from tests.support.fleet import NmeaTracker
from tests.support.gateway import GatewayProcess

UI_TIMEOUT_MS = 10_000


async def test_a_device_registered_in_the_browser_connects_with_the_shown_token(
    api_base: str,
    gateway: GatewayProcess,
    pg: asyncpg.Connection,
    browser: BrowserContext,
    admin: tuple[str, str],
) -> None:
    page = await browser.new_page()
    errors = watch_errors(page)
    await log_in(page, api_base, *admin, "/console/devices")
    await page.get_by_label("Device id").fill("truck-12")
    await page.get_by_label("Kind").select_option("tow_truck")
    await page.get_by_role("button", name="Register device").click()
    token_field = page.get_by_label("Token of truck-12")
    await expect(token_field).not_to_have_value("", timeout=UI_TIMEOUT_MS)
    token = await token_field.input_value()
    row = page.locator('#devices tr[data-device-id="truck-12"]')
    await expect(row.locator(".state")).to_have_text("never")
    await screenshot(page, "devices-registered")

    # The tracker logs in with the token shown and sends a fix: it is stored.
    at = datetime.now(UTC).replace(microsecond=0)
    tracker = await NmeaTracker.connect(gateway.tcp_port, "truck-12", token)
    await tracker.fix(at, *ORIGIN)
    await tracker.close()  # the end of the connection ends the epoch: the fix goes in
    for _ in range(100):
        if await pg.fetchval("SELECT count(*) FROM positions WHERE device_id = 'truck-12'"):
            break
        await asyncio.sleep(0.1)
    stored = await pg.fetchrow("SELECT time, tenant_id FROM positions WHERE device_id = 'truck-12'")
    assert stored is not None, gateway.log()[-3000:]
    assert (stored["time"], stored["tenant_id"]) == (at, "acme")

    await page.get_by_role("button", name="Refresh").click()
    await expect(row.locator(".state")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await expect(row.locator(".protocol")).to_have_text("nmea")
    await page.get_by_role("button", name="Disable truck-12").click()
    await expect(row.locator(".enabled")).to_have_text("no", timeout=UI_TIMEOUT_MS)
    assert await pg.fetchval("SELECT enabled FROM devices WHERE id = 'truck-12'") is False
    await page.get_by_role("button", name="Enable truck-12").click()
    await expect(row.locator(".enabled")).to_have_text("yes", timeout=UI_TIMEOUT_MS)
    await screenshot(page, "devices")
    assert errors == []
