"""Accessibility (issue 22 item 7): axe-core (from the npm registry, web/node_modules, the
version web/package-lock.json pins) finds no serious or critical violation on the login
page, the console (its take-a-call form and a request's levers open too), the playback,
geofence and device pages, at a desktop width and at 360 px; the main controls have these
names and work from the keyboard."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from api.principal import Role
from tests.e2e.browser.conftest import ORIGIN
from tests.support.api import Tenant, raw_token
from tests.support.browser import screenshot
from tests.support.paths import REPO_ROOT

AXE = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
UI_TIMEOUT_MS = 10_000
NAMED = ("New request", "Create request", "Assign", "Unassign", "Cancel request", "Escalate")
"""The issue's exact names of the console's main controls (Play, Register device and Save
geofence are on their pages: the tests of those pages click them by these names)."""


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical violations axe-core finds on the page as it is now. The source
    goes in through the DevTools protocol (page.evaluate), which the page's
    Content-Security-Policy does not govern, so the page is tested with its CSP on."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    results = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert results["passes"], "axe-core ran no rule"
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"],
         "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results["violations"] if v["impact"] in ("serious", "critical")
    ]  # fmt: skip


async def _staff(page: Page, base: str, path: str) -> None:
    await page.goto(f"{base}{path}#token={raw_token(Role.ADMIN, 'admin-1', 'acme')}")
    await expect(page.locator("#status")).not_to_have_class("error")


async def _request(acme: Tenant) -> None:
    customer = await acme.customer()
    body = {"vehicleId": customer[1], "latitude": ORIGIN[0], "longitude": ORIGIN[1],
            "services": [await acme.service()], "location": "Place du Casino"}  # fmt: skip
    assert (await acme.client.post("/service-request", json=body,
                                   headers=customer[2])).status_code == 200  # fmt: skip
    await acme.client.post("/devices", json={"deviceId": "van-a11y", "kind": "service_van"},
                           headers=acme.admin)  # fmt: skip


@pytest.mark.parametrize("width", [1280, 360])
async def test_the_pages_pass_axe_core_at_desktop_and_phone_widths(
    api_base: str, acme: Tenant, browser: BrowserContext, width: int
) -> None:
    assert AXE.is_file(), "web/node_modules/axe-core: ./run's setup installs it (npm ci)"
    await _request(acme)
    page = await browser.new_page()
    await page.set_viewport_size({"width": width, "height": 800})
    found: dict[str, list[dict[str, Any]]] = {}

    await page.goto(f"{api_base}/login")
    found["login"] = await axe_violations(page)
    await screenshot(page, f"login-{width}px")

    await _staff(page, api_base, "/console")
    await expect(page.locator("#requests li[data-request-id]")).to_have_count(1,
                                                                          timeout=UI_TIMEOUT_MS)  # fmt: skip
    found["console"] = await axe_violations(page)
    await page.get_by_role("button", name="New request").click()
    await page.locator("#requests li[data-request-id] button.link").click()
    await expect(page.locator("#request-panel")).to_be_visible()
    for name in NAMED:
        await expect(page.get_by_role("button", name=name, exact=True)).to_have_count(1)
    found["console with its form and levers"] = await axe_violations(page)
    # A phone's width: nothing wider than the screen (the panel above the map).
    scroll = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the console is {scroll} px wide at {width} px"
    await screenshot(page, f"console-{width}px")

    for path in ("/console/playback", "/console/geofences", "/console/devices"):
        await _staff(page, api_base, path)
        await expect(page.locator("#who")).to_contain_text("tenant acme")
        found[path] = await axe_violations(page)
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{path} is {scroll} px wide at {width} px"
    await page.get_by_label("Device id").fill("x")  # the device page's register form
    assert {page: v for page, v in found.items() if v} == {}


async def test_the_console_works_from_the_keyboard(
    api_base: str, acme: Tenant, browser: BrowserContext
) -> None:
    await acme.service()
    page = await browser.new_page()
    await _staff(page, api_base, "/console")
    await expect(page.locator("#status")).to_contain_text("loaded", timeout=UI_TIMEOUT_MS)
    # Tab from the top of the page to "New request", Enter opens the form with the
    # customer search focused.
    for _ in range(20):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "New request":
            break
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Find customer by name, phone or code")).to_be_focused()
    # Typed coordinates place the caller without the mouse.
    await page.get_by_label("Latitude").fill(str(ORIGIN[0]))
    await page.get_by_label("Longitude").fill(str(ORIGIN[1]))
    await page.get_by_label("Longitude").press("Tab")
    await expect(page.locator('.leaflet-marker-icon[title="The caller\'s place"]')).to_have_count(1)
    # Create request without a customer: said in words, not swallowed.
    await page.get_by_role("button", name="Create request").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#new-request-error")).to_have_text(
        "Find the customer, or add a new one."
    )
