"""The dispatcher console in a real browser (Debian's Chromium) against a running
`fixgate api` with live data: the fleet on the map with the tenant's geofences, a new
request (its priority and its service area's due time) and its ring, a manual assignment
by clicks, and a technician moving."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from playwright.async_api import BrowserContext, Page, expect

from api.principal import Role
from tests.e2e.browser.conftest import ORIGIN, RING_PHASE_S
from tests.support import realtime
from tests.support.api import Tenant, add_device, raw_token
from tests.support.browser import drive, require_websocket, screenshot, watch_errors

UI_TIMEOUT_MS = 10_000
STEP_DEG = 0.0005
"""A technician's move per step: about 55 m north, visible on the map at street zoom."""
MOVE_STEPS = 12
"""Seconds of driving: the API maps devices to technicians anew every 10 s, so a technician
created just before may show only after that; the steps outlast it."""


async def _technician(
    acme: Tenant, pg: asyncpg.Connection, redis_client: aioredis.Redis, prefix: str,
    device: str, name: str, lat: float, lon: float,
) -> str:  # fmt: skip
    await add_device(pg, device, "acme")
    technician_id, _ = await acme.technician(device_id=device)
    renamed = await acme.client.patch(
        f"/technicians/{technician_id}", json={"firstName": name}, headers=acme.admin
    )
    assert renamed.status_code == 200, renamed.text
    await drive(redis_client, prefix, device, "acme", lat, lon)
    return technician_id


async def _fences(acme: Tenant) -> None:
    """A service area around ORIGIN (with its SLA) and a depot circle beside it."""
    d = 0.01
    ring = [
        [ORIGIN[1] + x, ORIGIN[0] + y] for x, y in ((-d, -d), (d, -d), (d, d), (-d, d), (-d, -d))
    ]
    area = await acme.post(
        "/geofences",
        {"name": "Console area", "kind": "service_area",
         "geometry": {"type": "Polygon", "coordinates": [ring]}},
    )  # fmt: skip
    await acme.post("/service-areas", {"geofenceId": int(area), "responseTimeSlaMinutes": 20})
    await acme.post(
        "/geofences",
        {"name": "Console depot", "kind": "depot", "radiusM": 120,
         "geometry": {"type": "Point", "coordinates": [ORIGIN[1] - 0.005, ORIGIN[0]]}},
    )  # fmt: skip


async def _open_console(browser: BrowserContext, base: str) -> tuple[Page, list[str]]:
    page = await browser.new_page()
    errors = watch_errors(page)
    token = raw_token(Role.DISPATCHER, "dispatcher-1", "acme")
    await page.goto(f"{base}/console#token={token}")
    return page, errors


async def _create_request(acme: Tenant) -> dict[str, Any]:
    _, vehicle_id, customer = await acme.customer()
    service = await acme.service()
    body = {
        "vehicleId": vehicle_id,
        "latitude": ORIGIN[0],
        "longitude": ORIGIN[1],
        "location": "Place du Casino",
        "services": [service],
    }
    response = await acme.client.post("/service-request", json=body, headers=customer)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_the_console_shows_the_fleet_a_new_requests_ring_and_assigns_by_clicks(
    api_base: str,
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
) -> None:
    near = await _technician(
        acme,
        pg,
        redis_client,
        redis_prefix,
        "van-near",
        "Ana",
        ORIGIN[0] + 0.004,
        ORIGIN[1] + 0.003,
    )
    far = await _technician(
        acme,
        pg,
        redis_client,
        redis_prefix,
        "van-far",
        "Bruno",
        ORIGIN[0] - 0.006,
        ORIGIN[1] - 0.004,
    )
    # The technicians' apps are connected: only connected technicians are rung.
    ws_url = api_base.replace("http://", "ws://") + "/ws"
    async with contextlib.AsyncExitStack() as apps:
        for technician in (near, far):
            await apps.enter_async_context(
                realtime.connected(ws_url, raw_token(Role.TECHNICIAN, technician, "acme"))
            )
        await _ring_and_assign(api_base, acme, browser, near, far)


async def _ring_and_assign(
    api_base: str, acme: Tenant, browser: BrowserContext, near: str, far: str
) -> None:
    await _fences(acme)
    page, errors = await _open_console(browser, api_base)

    # Logged in by the link; the token left the address bar for session storage.
    assert "token=" not in page.url
    assert await page.evaluate("sessionStorage.getItem('fixgate.token')")
    fleet = page.locator("#fleet li")
    await expect(fleet).to_have_count(2, timeout=UI_TIMEOUT_MS)
    await expect(page.locator(f'#fleet li[data-technician-id="{near}"] .position')).to_contain_text(
        f"{ORIGIN[0] + 0.004:.5f}"
    )
    await expect(page.locator(".tech-icon")).to_have_count(2)  # both on the map
    await expect(page.locator("#map path.leaflet-interactive, #map svg path")).not_to_have_count(0)
    # The geofences under the fleet: the service area (dashed) and the depot circle.
    await expect(page.locator("#map path.fence-service_area")).to_have_count(1)
    await expect(page.locator("#map path.fence-depot")).to_have_count(1)
    await screenshot(page, "console-fleet")

    # A customer's request appears, ringing, with who was rung and a countdown.
    created = await _create_request(acme)
    request_id, number = created["requestId"], created["requestNumber"]
    item = page.locator(f'#requests li[data-request-id="{request_id}"]')
    await expect(item).to_contain_text(number, timeout=UI_TIMEOUT_MS)
    await expect(item.locator(".badge")).to_have_text("Ringing")
    await expect(item.locator(".priority")).to_have_text("Medium")
    # Made inside the service area: due a technician within its 20 minutes.
    await expect(item.locator(".sla")).to_contain_text("Console area: due by")
    ring = page.locator(f'#rings .ring[data-request-id="{request_id}"]')
    await expect(ring).to_contain_text("ring 1 of 4", timeout=UI_TIMEOUT_MS)
    rung = ring.locator(".rung")
    await expect(rung).to_contain_text("Ana Smith (phase 1, notified)")
    await expect(rung).to_contain_text("Bruno Smith (phase 1, notified)")
    first = float((await ring.locator(".countdown").inner_text()).split()[0])
    assert 0 < first <= RING_PHASE_S
    await asyncio.sleep(1.5)
    assert float((await ring.locator(".countdown").inner_text()).split()[0]) < first
    await screenshot(page, "console-ring")

    # Manual assignment from the console: the request, the far technician, Assign.
    await item.click()
    await page.locator(f'#fleet li[data-technician-id="{far}"]').click()
    await expect(page.locator("#assign-request")).to_contain_text(number)
    await page.locator("#assign").click()
    await expect(page.locator("#status")).to_contain_text(f"{number} → Bruno Smith")
    await expect(item.locator(".badge")).to_have_text("Assigned", timeout=UI_TIMEOUT_MS)
    await expect(ring).to_have_count(0, timeout=UI_TIMEOUT_MS)  # no longer ringing
    got = await acme.client.get(f"/service-request/{request_id}", headers=acme.admin)
    assert got.json()["data"]["technician"]["technicianId"] == far
    await screenshot(page, "console-assigned")
    assert errors == []


async def test_the_console_shows_a_technician_moving_live(
    api_base: str,
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
) -> None:
    require_websocket()
    technician = await _technician(acme, pg, redis_client, redis_prefix, "van-1", "Carla", *ORIGIN)
    page, errors = await _open_console(browser, api_base)
    await expect(page.locator("#live")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    position = page.locator(f'#fleet li[data-technician-id="{technician}"] .position')
    await expect(position).to_contain_text(f"{ORIGIN[0]:.5f}", timeout=UI_TIMEOUT_MS)
    marker = page.locator(".tech-icon")
    before = await marker.bounding_box()

    # The gateway's live writer (hash, GEO set, positions stream), one fix a second north;
    # the console redraws from the fleet events, without a reload.
    shown = set()
    for step in range(1, MOVE_STEPS + 1):
        await drive(
            redis_client, redis_prefix, "van-1", "acme", ORIGIN[0] + step * STEP_DEG, ORIGIN[1]
        )
        await asyncio.sleep(1.1)  # the fleet event is at most 1/s per technician
        shown.add(await position.inner_text())
    last = f"{ORIGIN[0] + MOVE_STEPS * STEP_DEG:.5f}"
    await expect(position).to_contain_text(last, timeout=UI_TIMEOUT_MS)
    assert len(shown) >= 3  # seen moving step by step, not one jump
    after = await marker.bounding_box()
    assert before is not None and after is not None
    assert after["y"] < before["y"]  # north is up: the marker moved up the screen
    await screenshot(page, "console-moving")
    assert errors == []
