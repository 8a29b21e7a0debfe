"""The customer's tracking page in a real browser against a running `fixgate api`: the
status, the technician, the route, distance and ETA (an engine-shaped `trip_update` on
`{prefix}events`, consumed by the API), updating live; and the login box."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from playwright.async_api import BrowserContext, expect

from api.principal import Role
from tests.e2e.browser.conftest import ORIGIN
from tests.support.api import Tenant, add_device, eventually, raw_token, token
from tests.support.browser import drive, require_websocket, screenshot, watch_errors
from tests.support.engine import xadd_event
from tests.support.polyline import encode

UI_TIMEOUT_MS = 10_000
START = (ORIGIN[0] + 0.012, ORIGIN[1] + 0.004)
"""Where the technician sets off: about 1.4 km north of the customer."""


def _route(start: tuple[float, float]) -> list[tuple[float, float]]:
    """A route along the test's street grid: south, then west to the customer."""
    return [start, (ORIGIN[0], start[1]), ORIGIN]


async def _en_route_request(
    acme: Tenant, pg: asyncpg.Connection, redis_client: aioredis.Redis, prefix: str
) -> tuple[str, str, str, str]:
    """(requestId, customer token, device, requestNumber): assigned, journey started."""
    await add_device(pg, "van-7", "acme")
    technician_id, tech = await acme.technician(device_id="van-7")
    await drive(redis_client, prefix, "van-7", "acme", *START)
    customer_id, vehicle_id, customer = await acme.customer()
    body = {
        "vehicleId": vehicle_id,
        "latitude": ORIGIN[0],
        "longitude": ORIGIN[1],
        "location": "Place du Casino",
        "services": [await acme.service()],
    }
    created = await acme.client.post("/service-request", json=body, headers=customer)
    assert created.status_code == 200, created.text
    request_id: str = created.json()["data"]["requestId"]
    assigned = await acme.client.post(
        "/service-request/assign",
        json={"requestId": request_id, "technicianId": technician_id},
        headers=acme.admin,
    )
    assert assigned.status_code == 200, assigned.text
    journey = await acme.client.post(f"/service-request/{request_id}/start-journey", headers=tech)
    assert journey.status_code == 200, journey.text
    raw = raw_token(Role.CUSTOMER, customer_id, "acme")
    return request_id, raw, "van-7", created.json()["data"]["requestNumber"]


async def _trip_update(
    redis_client: aioredis.Redis, prefix: str, request_id: str, device: str, *,
    distance_m: float, eta_s: float, route: list[tuple[float, float]], version: int,
) -> None:  # fmt: skip
    """An engine-shaped `trip_update` (the events contract) on the stream the API reads."""
    event = {
        "type": "trip_update",
        "id": f"e-{uuid.uuid4().hex}",
        "tenant": "acme",
        "device": device,
        "trip": "trip-1",
        "ref": request_id,
        "fix_time": "2026-01-01T00:00:00+00:00",
        "detected_at": "2026-01-01T00:00:00+00:00",
        "distance_m": distance_m,
        "eta_s": eta_s,
        "calculation": "local",
        "polyline": encode(route),
        "polyline_version": version,
        "queue": [],
    }
    await xadd_event(redis_client, prefix, event)


async def test_the_tracking_page_shows_status_technician_route_distance_and_eta(
    api_base: str,
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
) -> None:
    request_id, customer, device, number = await _en_route_request(
        acme, pg, redis_client, redis_prefix
    )
    route = _route(START)
    await _trip_update(
        redis_client, redis_prefix, request_id, device,
        distance_m=2400, eta_s=600, route=route, version=1,
    )  # fmt: skip

    async def consumed() -> Any:
        got = await acme.client.get(f"/service-request/{request_id}/route-info", headers=acme.admin)
        return got.json()["data"]["etaInSec"] == 600

    await eventually(consumed)
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(f"{api_base}/track/{request_id}#token={customer}")
    assert "token=" not in page.url and page.url.endswith(f"/track/{request_id}")
    await expect(page.locator("#request-status")).to_have_text("EnRoute", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#number")).to_have_text(number)
    await expect(page.locator("#technician")).to_have_text("Mike Smith")
    await expect(page.locator("#eta")).to_have_text("10 min 00 s")
    await expect(page.locator("#distance")).to_have_text("2.4 km")
    await expect(page.locator(".tech-icon")).to_have_count(1)  # the technician on the map
    decoded = await page.evaluate(f"fixgate.decodePolyline({json.dumps(encode(route))})")
    assert decoded == [[round(lat, 5), round(lon, 5)] for lat, lon in route]
    await screenshot(page, "track-initial")
    assert errors == []


async def test_the_tracking_pages_eta_updates_live(
    api_base: str,
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
) -> None:
    require_websocket()
    request_id, customer, device, _ = await _en_route_request(acme, pg, redis_client, redis_prefix)
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(f"{api_base}/track/{request_id}#token={customer}")
    await expect(page.locator("#live")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#eta")).to_have_text(
        "\u2013"
    )  # en dash: no route from the engine yet

    # The technician drives on: each update is one engine trip_update, no page reload.
    for version, (eta_s, distance_m, lat) in enumerate(
        [(480, 1900, START[0]), (300, 1200, ORIGIN[0] + 0.006), (120, 500, ORIGIN[0] + 0.002)],
        start=1,
    ):
        here = (lat, START[1])
        await drive(redis_client, redis_prefix, device, "acme", *here)
        await _trip_update(
            redis_client, redis_prefix, request_id, device,
            distance_m=distance_m, eta_s=eta_s, route=_route(here), version=version,
        )  # fmt: skip
        minutes = f"{eta_s // 60} min 00 s"
        await expect(page.locator("#eta")).to_have_text(minutes, timeout=UI_TIMEOUT_MS)
    await expect(page.locator("#distance")).to_have_text("500 m")
    await screenshot(page, "track-live")
    assert errors == []


async def test_without_a_token_the_console_asks_for_one(
    api_base: str, acme: Tenant, browser: BrowserContext
) -> None:
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(f"{api_base}/console")
    login = page.locator("#login")
    await expect(login).to_be_visible()
    await login.locator("textarea").fill("not-a-token")
    await login.locator("button").click()
    await expect(login.locator(".reason")).to_contain_text("not a valid")
    staff = token(Role.ADMIN, "admin-1", "acme")["Authorization"].removeprefix("Bearer ")
    await login.locator("textarea").fill(staff)
    await login.locator("button").click()
    await expect(login).to_be_hidden()
    await expect(page.locator("#who")).to_contain_text("tenant acme · admin")
    await expect(page.locator("#status")).to_contain_text("loaded", timeout=UI_TIMEOUT_MS)
    assert await page.evaluate("sessionStorage.getItem('fixgate.token')") == staff
    assert errors == []
