"""The dispatcher console in a real browser (Debian's Chromium) against a running
`fixgate api` and `fixgate gateway` (issue 22's acceptance): a dispatcher logs in with a
password, takes a call for a new customer by clicking the map, sees the ring reach a
technician whose position came through the gateway and, after the technician's accept,
the assignment, the ETA and the SLA countdown; cancels, escalates, reorders a queue and
unassigns, each checked through the API; and a technician moving live."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from playwright.async_api import BrowserContext, Page, expect

from api.principal import Role
from tests.e2e.browser.conftest import ORIGIN, RING_PHASE_S
from tests.support import realtime
from tests.support.api import Tenant, add_device, raw_token, token
from tests.support.browser import drive, log_in, require_websocket, screenshot, watch_errors
from tests.support.fleet import NmeaTracker, register
from tests.support.gateway import GatewayProcess

UI_TIMEOUT_MS = 10_000
STEP_DEG = 0.0005
"""A technician's move per step: about 55 m north, visible on the map at street zoom."""
MOVE_STEPS = 12
"""Seconds of driving: the API maps devices to technicians anew every 10 s, so a technician
created just before may show only after that; the steps outlast it."""


async def _technician(acme: Tenant, device: str, name: str) -> str:
    technician_id, _ = await acme.technician(device_id=device)
    renamed = await acme.client.patch(
        f"/technicians/{technician_id}", json={"firstName": name}, headers=acme.admin
    )
    assert renamed.status_code == 200, renamed.text
    return technician_id


async def _service_area(acme: Tenant, minutes: int = 20) -> None:
    d = 0.01
    ring = [
        [ORIGIN[1] + x, ORIGIN[0] + y] for x, y in ((-d, -d), (d, -d), (d, d), (-d, d), (-d, -d))
    ]
    area = await acme.post(
        "/geofences",
        {"name": "Console area", "kind": "service_area",
         "geometry": {"type": "Polygon", "coordinates": [ring]}},
    )  # fmt: skip
    await acme.post("/service-areas", {"geofenceId": int(area), "responseTimeSlaMinutes": minutes})


async def _customer_request(acme: Tenant, service: str, **extra: Any) -> str:
    customer = await acme.customer()
    body = {"vehicleId": customer[1], "latitude": ORIGIN[0] + 0.001, "longitude": ORIGIN[1],
            "services": [service], **extra}  # fmt: skip
    made = await acme.client.post("/service-request", json=body, headers=customer[2])
    assert made.status_code == 200, made.text
    request_id: str = made.json()["data"]["requestId"]
    return request_id


async def _detail(acme: Tenant, request_id: str) -> dict[str, Any]:
    got = await acme.client.get(f"/service-request/{request_id}", headers=acme.admin)
    data: dict[str, Any] = got.json()["data"]
    return data


def _item(page: Page, request_id: str) -> Any:
    return page.locator(f'#requests li[data-request-id="{request_id}"]')


async def _select(page: Page, acme: Tenant, request_id: str) -> None:
    number = (await _detail(acme, request_id))["requestNumber"]
    await _item(page, request_id).get_by_role("button", name=number).click()
    await expect(page.locator("#request-title")).to_contain_text(number)


async def test_a_dispatcher_logs_in_takes_a_call_and_runs_requests(
    api_base: str,
    acme: Tenant,
    gateway: GatewayProcess,
    dispatcher: tuple[str, str],
    pg: asyncpg.Connection,
    browser: BrowserContext,
) -> None:
    await _service_area(acme)
    service = await acme.service()
    van_token = await register(acme.client, acme.admin, "van-ana")
    ana = await _technician(acme, "van-ana", "Ana")
    await add_device(pg, "van-bruno", "acme")
    bruno = await _technician(acme, "van-bruno", "Bruno")
    # Ana's van reports through the gateway (TCP NMEA), a fix a second, a block north.
    tracker = await NmeaTracker.connect(gateway.tcp_port, "van-ana", van_token)
    stop = asyncio.Event()

    async def report() -> None:
        while not stop.is_set():
            await tracker.fix(datetime.now(UTC), ORIGIN[0] + 0.003, ORIGIN[1] + 0.002)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    ws_url = api_base.replace("http://", "ws://") + "/ws"
    async with contextlib.AsyncExitStack() as stack:
        reporting = asyncio.create_task(report())
        stack.push_async_callback(tracker.close)
        stack.push_async_callback(lambda: asyncio.wait_for(reporting, 5))
        stack.callback(stop.set)
        await stack.enter_async_context(
            realtime.connected(ws_url, raw_token(Role.TECHNICIAN, ana, "acme"))
        )
        page = await browser.new_page()
        errors = watch_errors(page)
        await log_in(page, api_base, *dispatcher)
        assert await page.evaluate("sessionStorage.getItem('fixgate.token')")
        fleet = page.locator(f'#fleet li[data-technician-id="{ana}"] .position')
        await expect(fleet).to_contain_text(f"{ORIGIN[0] + 0.003:.4f}", timeout=UI_TIMEOUT_MS)
        await screenshot(page, "console-fleet")

        request_id = await _take_a_call(page, acme, pg)
        await _ring_then_accept(page, acme, request_id, ana)
        await _levers(page, acme, service, ana, bruno)
        # The one refusal the test provoked, and nothing else.
        assert [e.split()[0] for e in errors] == ["409"], errors


async def _take_a_call(page: Page, acme: Tenant, pg: asyncpg.Connection) -> str:
    """New request: a new customer with a vehicle, the place by a click on the map."""
    await page.get_by_role("button", name="New request").click()
    await page.get_by_text("Add a new customer with a vehicle").click()
    await page.get_by_label("First name").fill("Grace")
    await page.get_by_label("Last name").fill("Kelly")
    await page.get_by_label("Phone number").fill("+377 555 0101")
    await page.get_by_label("Vehicle plate or VIN").fill("MC-1956")
    await page.get_by_label("Vehicle make and model").fill("Rolls-Royce Silver Cloud")
    box = await page.locator("#map").bounding_box()
    assert box is not None
    # Beside the centre, where the fitted map has the van.
    await page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.6)
    await expect(page.get_by_label("Latitude")).not_to_have_value("")
    clicked = (float(await page.get_by_label("Latitude").input_value()),
               float(await page.get_by_label("Longitude").input_value()))  # fmt: skip
    await page.get_by_label("Address").fill("Place du Casino")
    await page.get_by_label("Notes").fill("flat tyre, two children in the car")
    await page.get_by_label("Call priority").select_option("High")
    await screenshot(page, "console-new-request")
    await page.get_by_role("button", name="Create request").click()
    await expect(page.locator("#request-title")).to_contain_text("Ringing", timeout=UI_TIMEOUT_MS)
    row = await pg.fetchrow(
        "SELECT r.requestid, r.latitude::float8 AS lat, r.longitude::float8 AS lon, r.location,"
        " r.priority, c.firstname, c.phonenumber, v.vin FROM servicerequests r"
        " JOIN customermaster c USING (customerid)"
        " JOIN customervehicles v ON v.customervehicleid = r.vehicleid"
    )
    assert (row["firstname"], row["phonenumber"], row["vin"]) == ("Grace", "+377 555 0101",
                                                                 "MC-1956")  # fmt: skip
    assert (round(row["lat"], 5), round(row["lon"], 5)) == (round(clicked[0], 5),
                                                           round(clicked[1], 5))  # fmt: skip
    assert (row["location"], row["priority"]) == ("Place du Casino", 2)  # High
    audit = await pg.fetchval("SELECT actorrole FROM dispatchaudit WHERE action = 'create'")
    assert audit == "dispatcher"
    return str(row["requestid"])


async def _ring_then_accept(page: Page, acme: Tenant, request_id: str, ana: str) -> None:
    ring = page.locator(f'#rings .ring[data-request-id="{request_id}"]')
    await expect(ring).to_contain_text("ring 1 of 4", timeout=UI_TIMEOUT_MS)
    await expect(ring.locator(".rung")).to_contain_text("Ana Smith (phase 1, notified)")
    first = float((await ring.locator(".countdown").inner_text()).split()[0])
    assert 0 < first <= RING_PHASE_S
    await screenshot(page, "console-ring")
    accepted = await acme.client.put(f"/service-request/{request_id}/1",
                                     headers=token(Role.TECHNICIAN, ana, "acme"))  # fmt: skip
    assert accepted.status_code == 200, accepted.text
    item = _item(page, request_id)
    await expect(item.locator(".badge")).to_have_text("Assigned", timeout=UI_TIMEOUT_MS)
    await expect(ring).to_have_count(0, timeout=UI_TIMEOUT_MS)
    await expect(item.locator(".technician")).to_contain_text("Ana Smith")
    await expect(item.locator(".eta")).to_contain_text("queue #1 · ETA ")
    sla = item.locator(".sla")
    await expect(sla).to_contain_text("left · Console area")
    before = await sla.inner_text()
    await expect(sla).not_to_have_text(before, timeout=3000)  # the SLA countdown counts
    await screenshot(page, "console-assigned")


async def _levers(page: Page, acme: Tenant, service: str, ana: str, bruno: str) -> None:
    to_cancel = await _customer_request(acme, service)
    to_escalate = await _customer_request(acme, service)
    second = await _customer_request(acme, service)
    for request_id in (to_cancel, to_escalate, second):
        await expect(_item(page, request_id)).to_have_count(1, timeout=UI_TIMEOUT_MS)

    # Cancel with a reason; without one the console asks for it first.
    await _select(page, acme, to_cancel)
    await page.get_by_role("button", name="Cancel request").click()
    await expect(page.locator("#action-error")).to_contain_text("say why")
    await page.get_by_label("Reason for canceling").fill("caller found a garage")
    await page.get_by_role("button", name="Cancel request").click()
    await expect(_item(page, to_cancel)).to_have_count(0, timeout=UI_TIMEOUT_MS)  # open only
    canceled = await _detail(acme, to_cancel)
    assert (canceled["requestStatus"], canceled["cancellationReason"]) == (
        "Canceled", "caller found a garage",
    )  # fmt: skip

    # Escalate: Medium -> Critical.
    await _select(page, acme, to_escalate)
    await page.get_by_label("Raise priority to").select_option("Critical")
    await page.get_by_label("Reason for escalating").fill("on the motorway")
    await page.get_by_role("button", name="Escalate").click()
    await expect(_item(page, to_escalate).locator(".priority")).to_have_text("Critical",
                                                                            timeout=UI_TIMEOUT_MS)  # fmt: skip
    assert (await _detail(acme, to_escalate))["priority"] == "Critical"

    # Assign beyond the ring: Bruno was never rung; then a refusal in words.
    await _select(page, acme, to_escalate)
    await page.get_by_label("Technician to assign").select_option(bruno)
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(_item(page, to_escalate).locator(".badge")).to_have_text("Assigned",
                                                                         timeout=UI_TIMEOUT_MS)  # fmt: skip
    assert (await _detail(acme, to_escalate))["technician"]["technicianId"] == bruno

    # Reorder Ana's queue: the call she accepted, then `second` assigned behind it.
    await _select(page, acme, second)
    await page.get_by_label("Technician to assign").select_option(ana)
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(_item(page, second).locator(".eta")).to_contain_text("queue #2",
                                                                     timeout=UI_TIMEOUT_MS)  # fmt: skip
    number = (await _detail(acme, second))["requestNumber"]
    await page.get_by_role("button", name=f"Move {number} up").click()
    await expect(_item(page, second).locator(".eta")).to_contain_text("queue #1",
                                                                     timeout=UI_TIMEOUT_MS)  # fmt: skip
    queue = await acme.client.get(f"/service-request/{second}/queue", headers=acme.admin)
    assert queue.json()["data"]["queuePosition"] == 1
    await screenshot(page, "console-queue")

    # Unassign: back to Pending, out of Ana's queue.
    await page.get_by_role("button", name="Unassign").click()
    await expect(_item(page, second).locator(".badge")).to_have_text("Pending",
                                                                     timeout=UI_TIMEOUT_MS)  # fmt: skip
    back = await _detail(acme, second)
    assert back["requestStatus"] == "Pending" and back["technician"] is None

    # A refusal is said in words: assigning an assigned request (the console disables the
    # button for it; enabled again, as a console a step behind would have it).
    await _select(page, acme, to_escalate)
    refused = await acme.client.post("/service-request/assign", headers=acme.admin,
                                     json={"requestId": to_escalate, "technicianId": ana})  # fmt: skip
    assert refused.status_code == 409
    await page.evaluate("document.getElementById('assign').disabled = false")
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.locator("#action-error")).to_contain_text(
        "Only a pending or ringing request can be assigned"
    )


async def test_the_console_shows_a_technician_moving_live(
    api_base: str,
    acme: Tenant,
    pg: asyncpg.Connection,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    browser: BrowserContext,
) -> None:
    require_websocket()
    await add_device(pg, "van-1", "acme")
    technician = await _technician(acme, "van-1", "Carla")
    await drive(redis_client, redis_prefix, "van-1", "acme", *ORIGIN)
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(f"{api_base}/console#token={raw_token(Role.DISPATCHER, 'd-1', 'acme')}")
    assert "token=" not in page.url  # the token left the address bar for session storage
    await expect(page.locator("#live")).to_have_text("live", timeout=UI_TIMEOUT_MS)
    position = page.locator(f'#fleet li[data-technician-id="{technician}"] .position')
    await expect(position).to_contain_text(f"{ORIGIN[0]:.5f}", timeout=UI_TIMEOUT_MS)
    marker = page.locator(".tech-icon")
    before = await marker.bounding_box()

    # The gateway's live writer (hash, GEO set, positions stream), one fix a second north;
    # the console redraws from the fleet events, without a reload.
    shown = set()
    for step in range(1, MOVE_STEPS + 1):
        await drive(redis_client, redis_prefix, "van-1", "acme", ORIGIN[0] + step * STEP_DEG,
                    ORIGIN[1])  # fmt: skip
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
