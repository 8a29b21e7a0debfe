"""The field apps in headless Chromium, one browser context per person (its own storage,
emulated geolocation and network), against real `fixgate gateway`, `fixgate engine` and
`fixgate api` processes on this test's database and Redis prefix:

- a customer asks for help in /help; a technician on duty in /tech, whose emulated
  position reached the gateway as their device, is rung within 2 s and accepts; the
  customer sees their name and ETA; the journey, the emulated position driving to the
  place, the engine's arrival in both apps, work, completion, the rating; every state
  checked through the API too, and axe-core run on each screen at 360 px;
- offline: "Start work" tapped without a connection is shown pending, and once the
  connection returns it is applied exactly once (one audit row) although its first answer
  is lost on the way back; the fixes taken offline are stored with their own times;
- the apps are installable: manifests, a service worker controlling the page, the shell
  opening without a connection; the sign-in box; screenshots at 360 px.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.e2e.browser.conftest import ORIGIN
from tests.support.api import SECRET, Tenant, eventually
from tests.support.axe import violations
from tests.support.browser import api_process, artifacts_dir, chromium_browser
from tests.support.engine import EngineProcess
from tests.support.gateway import running_gateway
from tests.support.ports import free_port

TENANT = "acme"
PHONE = {"width": 360, "height": 740}
CUSTOMER_AT = ORIGIN
TECH_START = (ORIGIN[0] + 0.0055, ORIGIN[1])
"""About 610 m north of the customer."""
RING_WITHIN_MS = 2000
UI_MS = 10_000
ARRIVAL_S = 45.0


@dataclass
class Field:
    api: str
    gateway_port: int


@contextlib.contextmanager
def field_processes(
    env: dict[str, str], tmp_path: Path, roads_file: Path, routing_url: str | None
) -> Iterator[Field]:
    """The gateway (its HTTP listener allowing the API's origin), the engine when a routing
    URL is given, and the API (telling the app where the gateway's listener is)."""
    api_port, gateway_port = free_port(), free_port()
    origin = f"http://127.0.0.1:{api_port}"
    settings = {"osmand_port": str(gateway_port), "http_cors_origins": origin}
    with running_gateway(env, tmp_path, **settings), contextlib.ExitStack() as stack:
        if routing_url is not None:
            engine = EngineProcess(env, tmp_path / "engine.log", FIXGATE_ROUTING_URL=routing_url)
            stack.callback(lambda: engine.stop())
            engine.wait_ready()
        api_env = {
            **env,
            "FIXGATE_API_SECRET": SECRET,
            "FIXGATE_MAP_ROADS_PATH": str(roads_file),
            "FIXGATE_PHONE_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            "FIXGATE_RING_PHASE_S": "60",  # long enough to look at the ring (axe) before accepting
        }
        with api_process(api_env, port=api_port) as api:
            yield Field(api, gateway_port)


@contextlib.asynccontextmanager
async def person(
    browser: Browser, at: tuple[float, float], **options: Any
) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        viewport=PHONE,
        geolocation={"latitude": at[0], "longitude": at[1], "accuracy": 5},
        permissions=["geolocation"],
        **options,
    )
    try:
        yield context
    finally:
        await context.close()


async def link(http: httpx.AsyncClient, acme: Tenant, role: str, subject: str) -> str:
    """A one-time sign-in link staff make (issue 22): `/tech#code=...` or `/help#code=...`."""
    made = await http.post(
        "/auth/links", json={"role": role, "subject": subject, "ttlS": 900}, headers=acme.admin
    )
    assert made.status_code == 200, made.text
    url: str = made.json()["data"]["url"]
    return url


async def accessible_at_360(page: Page, name: str) -> None:
    """No serious or critical axe-core violation, nothing wider than the phone; a screenshot."""
    found = await violations(page)
    assert found == [], f"{name}: {found}"
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: {width} px wide"
    await page.screenshot(path=str(artifacts_dir() / f"field-{name}.png"), full_page=True)


async def request_of(http: httpx.AsyncClient, acme: Tenant, request_id: str) -> dict[str, Any]:
    answer = await http.get(f"/service-request/{request_id}", headers=acme.admin)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


async def stored_fixes(pg: asyncpg.Connection, device: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pg.fetch(
        "SELECT time, lat, lon, protocol FROM positions WHERE device_id = $1 ORDER BY time", device
    )
    return rows


async def move(
    context: BrowserContext, start: tuple[float, float], end: tuple[float, float], steps: int
) -> None:
    """The phone travels from start to end, one fix a second (watchPosition's)."""
    for i in range(1, steps + 1):
        f = i / steps
        at = (start[0] + (end[0] - start[0]) * f, start[1] + (end[1] - start[1]) * f)
        await context.set_geolocation({"latitude": at[0], "longitude": at[1], "accuracy": 5})
        await asyncio.sleep(1.0)


# ---- the whole call, two people ------------------------------------------------------


async def test_a_call_from_help_to_rating_through_gateway_and_engine(
    fixgate_env: dict[str, str],
    tmp_path: Path,
    roads_file: Path,
    routing_url: str,
    redis_client: object,
    pg: asyncpg.Connection,
) -> None:
    with field_processes(fixgate_env, tmp_path, roads_file, routing_url) as field:
        async with httpx.AsyncClient(base_url=field.api, timeout=30) as http:
            await _whole_call(http, field, pg)


async def _whole_call(http: httpx.AsyncClient, field: Field, pg: asyncpg.Connection) -> None:
    acme = Tenant(http, TENANT)
    jump = await acme.service(49.0, 15)
    tyre = await acme.service(79.0, 30)
    customer_id, _, _ = await acme.customer()
    technician_id, _ = await acme.technician(availability="Offline")  # no device: the app enrols
    tech_link = await link(http, acme, "technician", technician_id)
    help_link = await link(http, acme, "customer", customer_id)
    device = f"app-{technician_id}"

    async with (
        chromium_browser() as browser,
        person(browser, TECH_START) as tech_ctx,
        person(browser, CUSTOMER_AT) as cust_ctx,
    ):
        tech = await tech_ctx.new_page()
        await tech.goto(tech_link)
        await tech.get_by_role("radio", name="On duty").check()
        # The emulated position went to the gateway as the technician's device: stored.
        fixes = await eventually(lambda: stored_fixes(pg, device), timeout_s=15)
        assert (fixes[0]["lat"], fixes[0]["lon"], fixes[0]["protocol"]) == (
            *TECH_START,
            "owntracks",
        )
        me = (await http.get(f"/technicians/{technician_id}", headers=acme.admin)).json()["data"]
        assert (me["availabilityStatus"], me["deviceId"]) == ("Available", device)
        await expect(tech.locator("#live")).to_have_text("live", timeout=UI_MS)

        cust = await cust_ctx.new_page()
        await cust.goto(help_link)
        await cust.get_by_role("button", name="Use my position").click()
        await expect(cust.get_by_label("Latitude")).to_have_value(f"{CUSTOMER_AT[0]:.6f}")
        await cust.get_by_label("What happened?").fill("The battery is flat")
        await cust.get_by_label("Address or landmark").fill("Place du Casino")
        await cust.get_by_role("checkbox", name="Service SVC-", exact=False).first.check()
        await accessible_at_360(cust, "help-ask")

        asked = time.monotonic()
        await cust.get_by_role("button", name="Request help").click()
        accept = tech.get_by_role("button", name="Accept")
        await expect(accept).to_be_visible(timeout=RING_WITHIN_MS)
        rung_after_s = time.monotonic() - asked
        assert rung_after_s <= RING_WITHIN_MS / 1000
        found = await http.get("/service-requests", params={"rowsPerPage": 1}, headers=acme.admin)
        request_id = found.json()["data"][0]["requestId"]
        assert (await request_of(http, acme, request_id))["requestStatus"] == "Ringing"
        await expect(tech.locator("#ring-services")).to_contain_text("Service SVC-")
        await expect(tech.locator("#ring-distance")).to_have_text(re.compile(r"^6\d\d m$"))
        countdown = int(await tech.locator("#ring-countdown").inner_text())
        assert 40 <= countdown <= 60
        await accessible_at_360(tech, "tech-ring")

        await accept.click()
        await expect(cust.locator("#technician")).to_have_text("Mike Smith", timeout=UI_MS)
        await expect(cust.locator("#eta")).to_contain_text("min", timeout=UI_MS)
        detail = await request_of(http, acme, request_id)
        assert (detail["requestStatus"], detail["technician"]["technicianId"]) == (
            "Assigned",
            technician_id,
        )
        await accessible_at_360(cust, "help-assigned")

        await tech.get_by_role("button", name="Start journey").click()
        await expect(tech.get_by_role("button", name="Start work")).to_be_visible(timeout=UI_MS)
        await eventually(lambda: _status_is(http, acme, request_id, "EnRoute"))
        await expect(cust.locator("#request-status")).to_have_text(
            "Mike Smith is on the way", timeout=UI_MS
        )
        directions = await tech.get_by_role("link", name="Directions").get_attribute("href")
        assert directions is not None and directions.startswith(
            f"geo:{CUSTOMER_AT[0]},{CUSTOMER_AT[1]}"
        )

        # The phone drives to the place and stays: the engine's trip detects the arrival.
        await move(tech_ctx, TECH_START, CUSTOMER_AT, steps=8)
        await expect(cust.locator("#distance")).to_have_text(re.compile(r"\d+ m$"), timeout=UI_MS)
        arrived = tech.locator("#job-arrival")
        deadline = time.monotonic() + ARRIVAL_S
        jitter = 0
        while not (await arrived.inner_text()).startswith("Arrived"):
            assert time.monotonic() < deadline, "no arrival shown in the technician app"
            jitter ^= 1  # a phone at rest still reports a fix a second, a metre apart
            here = {
                "latitude": CUSTOMER_AT[0] + jitter * 1e-5,
                "longitude": CUSTOMER_AT[1],
                "accuracy": 5,
            }
            await tech_ctx.set_geolocation(here)
            await asyncio.sleep(1.0)
        await expect(cust.locator("#request-status")).to_have_text(
            "Mike Smith has arrived", timeout=UI_MS
        )
        assert (await request_of(http, acme, request_id))["arrivedAt"] is not None

        await tech.get_by_role("button", name="Start work").click()
        complete = tech.get_by_role("button", name="Complete")
        await expect(complete).to_be_visible(timeout=UI_MS)
        await eventually(lambda: _status_is(http, acme, request_id, "InProgress"))
        await tech.get_by_label("Mileage").fill("45210")
        await tech.get_by_label("Evidence notes").fill("Battery boosted\nPhoto of the terminals")
        await tech.locator("#additional-services").get_by_role("checkbox").first.check()
        await accessible_at_360(tech, "tech-complete")
        await complete.click()
        await eventually(lambda: _status_is(http, acme, request_id, "Completed"))
        done = await request_of(http, acme, request_id)
        assert (done["mileage"], done["evidences"]) == (
            45210,
            ["Battery boosted", "Photo of the terminals"],
        )
        statuses = {s["serviceId"]: s["serviceStatus"] for s in done["services"]}
        assert statuses == {jump: "Completed", tyre: "Completed"}  # the extra one added
        await expect(tech.locator("#job-none")).to_be_visible(timeout=UI_MS)

        rate = cust.get_by_role("button", name="Rate")
        await expect(rate).to_be_visible(timeout=UI_MS)
        await accessible_at_360(cust, "help-rate")
        await cust.get_by_label("5 stars").check()
        await cust.get_by_label("Comment").fill("Quick and friendly")
        await rate.click()
        await expect(cust.locator("#rated")).to_have_text(
            "Thank you: you rated it 5 out of 5.", timeout=UI_MS
        )
        rated = await request_of(http, acme, request_id)
        assert (rated["rating"], rated["feedback"]) == (5, "Quick and friendly")

    # Every write of the apps went once: one audit row per step, all of them ok.
    steps = await pg.fetch(
        "SELECT action, outcome FROM dispatchaudit WHERE requestid = $1 ORDER BY at", request_id
    )
    actions = [r["action"] for r in steps if r["outcome"] == "ok"]
    for step in ("create", "accept", "start_journey", "start_work", "complete", "feedback"):
        assert actions.count(step) == 1, (step, actions)


async def _status_is(http: httpx.AsyncClient, acme: Tenant, request_id: str, status: str) -> bool:
    return (await request_of(http, acme, request_id))["requestStatus"] == status


# ---- offline --------------------------------------------------------------------------


async def test_an_action_taken_offline_is_applied_once_and_its_fixes_stored(
    fixgate_env: dict[str, str],
    tmp_path: Path,
    roads_file: Path,
    redis_client: object,
    pg: asyncpg.Connection,
) -> None:
    with field_processes(fixgate_env, tmp_path, roads_file, routing_url=None) as field:
        async with httpx.AsyncClient(base_url=field.api, timeout=30) as http:
            await _offline(http, pg)


async def _offline(http: httpx.AsyncClient, pg: asyncpg.Connection) -> None:
    acme = Tenant(http, TENANT)
    customer = await acme.customer()
    technician_id, tech_headers = await acme.technician()
    request_id = await acme.request(customer, CUSTOMER_AT)
    assigned = await http.post(
        "/service-request/assign",
        json={"requestId": request_id, "technicianId": technician_id},
        headers=acme.admin,
    )
    assert assigned.status_code == 200, assigned.text
    device = f"app-{technician_id}"

    async with (
        chromium_browser() as browser,
        person(browser, CUSTOMER_AT, service_workers="block") as ctx,
    ):
        page = await ctx.new_page()
        await page.goto(await link(http, acme, "technician", technician_id))
        await page.get_by_role("radio", name="On duty").check()
        await eventually(lambda: stored_fixes(pg, device), timeout_s=15)
        await page.get_by_role("button", name="Start journey").click()
        await eventually(lambda: _status_is(http, acme, request_id, "EnRoute"))
        start_work = page.get_by_role("button", name="Start work")
        await expect(start_work).to_be_visible(timeout=UI_MS)
        before = len(await stored_fixes(pg, device))

        await ctx.set_offline(True)
        offline_at = time.time()
        for i in range(1, 4):  # the phone moves while offline: fixes kept in IndexedDB
            await ctx.set_geolocation(
                {"latitude": CUSTOMER_AT[0] + i * 1e-4, "longitude": CUSTOMER_AT[1], "accuracy": 5}
            )
            await asyncio.sleep(1.1)
        await start_work.click()
        outbox = page.locator("#outbox")
        await expect(outbox).to_contain_text("Start work", timeout=UI_MS)
        await expect(outbox).to_contain_text("pending")
        await expect(page.locator("#outbox-summary")).to_contain_text("No connection")
        await expect(page.locator("#job-status")).to_have_text("Working (waiting to be sent)")
        await accessible_at_360(page, "tech-offline")
        assert (await request_of(http, acme, request_id))["requestStatus"] == "EnRoute"
        assert len(await stored_fixes(pg, device)) == before

        # Back online, the first attempt reaches the API but its answer is lost: the app
        # keeps the action and sends it again with the same Idempotency-Key.
        attempts: list[dict[str, str]] = []

        async def lose_first_answer(route: Route) -> None:
            attempts.append(dict(route.request.headers))
            if len(attempts) == 1:
                answer = await route.fetch()
                assert answer.status == 200
                await route.abort("connectionreset")
            else:
                await route.continue_()

        await page.route(re.compile(r".*/service-request/[^/?]+\?workAction=1$"), lose_first_answer)
        await ctx.set_offline(False)
        online_at = time.time()
        await expect(outbox).to_be_hidden(timeout=20_000)
        await expect(page.locator("#job-status")).to_have_text("Working", timeout=UI_MS)
        assert len(attempts) == 2
        keys = {a["idempotency-key"] for a in attempts}
        assert len(keys) == 1, attempts
        assert (await request_of(http, acme, request_id))["requestStatus"] == "InProgress"
        audit = await pg.fetch(
            "SELECT outcome FROM dispatchaudit WHERE requestid = $1 AND action = 'start_work'",
            request_id,
        )
        assert [r["outcome"] for r in audit] == ["ok"]

        # The fixes taken offline, stored with their own times once the connection returned.
        moved_to = {round(CUSTOMER_AT[0] + i * 1e-4, 5) for i in range(1, 4)}

        async def offline_fixes() -> set[float]:
            rows = await stored_fixes(pg, device)
            taken = [r for r in rows if offline_at - 1 <= r["time"].timestamp() < online_at]
            return {round(r["lat"], 5) for r in taken} >= moved_to and {
                round(r["lat"], 5) for r in taken
            }

        try:
            await eventually(offline_fixes, timeout_s=15)
        except AssertionError:
            rows = [
                (r["time"].timestamp(), round(r["lat"], 5)) for r in await stored_fixes(pg, device)
            ]
            raise AssertionError(
                f"offline {offline_at:.2f}..{online_at:.2f}, stored {rows}"
            ) from None
    assert tech_headers  # the technician's token was only ever used by the page itself


# ---- installable, signed out, 360 px -----------------------------------------------------


async def test_the_apps_install_open_without_the_server_and_ask_for_a_sign_in(
    fixgate_env: dict[str, str], roads_file: Path, redis_client: object
) -> None:
    api_env = {
        **fixgate_env,
        "FIXGATE_API_SECRET": SECRET,
        "FIXGATE_MAP_ROADS_PATH": str(roads_file),
    }
    async with chromium_browser() as browser, person(browser, CUSTOMER_AT) as ctx:
        page = await ctx.new_page()
        with api_process(api_env) as api:
            async with httpx.AsyncClient(base_url=api, timeout=30) as http:
                for app in ("tech", "help"):
                    manifest = (await http.get(f"/{app}/manifest.webmanifest")).json()
                    assert (manifest["start_url"], manifest["scope"], manifest["display"]) == (
                        f"/{app}", f"/{app}", "standalone",
                    )  # fmt: skip
                    assert {"192x192", "512x512"} <= {i["sizes"] for i in manifest["icons"]}
                    worker = await http.get(f"/{app}/sw.js")
                    assert worker.headers["service-worker-allowed"] == f"/{app}"
                acme = Tenant(http, TENANT)
                customer_id, _, _ = await acme.customer()
                help_link = await link(http, acme, "customer", customer_id)

            await page.goto(help_link)
            await expect(page.get_by_role("button", name="Request help")).to_be_visible(
                timeout=UI_MS
            )
            assert "code=" not in page.url  # the code left the address bar at once
            await page.evaluate("navigator.serviceWorker.ready.then(() => true)")
            await page.reload()  # now under the worker, which keeps the shell
            assert await page.evaluate("navigator.serviceWorker.controller !== null")

            # A used link, or none: the sign-in box, in plain words.
            other = await ctx.new_page()
            await other.goto(f"{api}/tech")
            await expect(other.get_by_label("Sign-in link")).to_be_visible(timeout=UI_MS)
            await other.goto(help_link.replace("/help", "/tech"))
            await expect(other.get_by_role("alert")).to_contain_text(
                "unknown, used or expired", timeout=UI_MS
            )
            await accessible_at_360(other, "tech-sign-in")

        # The API is gone (no connection): the app still opens, from its service worker.
        await page.reload()
        await expect(page.get_by_role("heading", name="Roadside help")).to_be_visible(timeout=UI_MS)
        await expect(page.locator("#status")).to_contain_text("No connection", timeout=UI_MS)
