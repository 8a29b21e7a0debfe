"""The demo's dispatch side, all through the real API: the catalog (services, customers
with vehicles, technicians linked to the fleet's phones), each technician's app (a
WebSocket to `/ws`, so the ring finds them connected), and the scripted scenario: a
customer request on the roads, the ring, the nearest rung technician accepts, drives
there along the OSRM route (the engine's trip detects the arrival), works, completes;
the customer leaves feedback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import websockets

from api.auth import issue_token
from api.principal import Role
from contracts.geodesy import haversine_m
from devtools.driving import Errand, RoadPlanner
from devtools.guest import ACCEPT_S, Guest
from devtools.roads import point_ahead
from devtools.simulate import SimDevice
from devtools.ws_client import ws_url
from geofence.routes import Route

log = logging.getLogger("demo")

TOKEN_TTL_S: Final = 12 * 3600
"""The printed console and tracking links stay logged in for a working day."""
RING_SETTLE_S: Final = 3.0
"""After the first ring of a request, wait this long for the other technicians' rings
(a phase rings them all at once; their events arrive within milliseconds)."""
RING_WAIT_S: Final = 40.0
"""No ring within this (nobody connected and near): the dispatcher assigns by hand."""
ARRIVAL_WAIT_S: Final = 900.0
"""Longest a journey may take before the scenario gives up on it (Monaco: minutes)."""
POLL_S: Final = 1.0
APPS_WAIT_S: Final = 15.0
FIRST_FIXES_S: Final = 3.0
WS_RETRY_S: Final = 2.0
JOB_RETRY_S: Final = 2.0
"""No job found (every technician busy, or none on a road yet): look again this soon,
not a whole `every_s` later (a bounded demo may have time for one scenario only)."""
JOB_LEAD_S: Final = RING_SETTLE_S + 2.0
"""A job up the road is placed this far (at the leg's top speed) beyond the window, for
the technician drives on while rung and until accepted."""
JOB_MIN_SPEED_MPS: Final = 6.0
"""A job whose road is slower than this on average (OSRM's speeds; Monaco's lanes and
stairs-side chemins run at 10 km/h) is drawn again: its journey would take far longer
than its distance says."""
SERVICES: Final = (
    ("DEMO-JUMP", "Jump start", 49.0, 15),
    ("DEMO-TYRE", "Flat tyre change", 79.0, 30),
    ("DEMO-TOW", "Tow to garage", 149.0, 45),
)
CUSTOMERS: Final = (
    ("DEMO-CUST-01", "Grace", "Kelly", "WBADT43452G915187", "BMW"),
    ("DEMO-CUST-02", "Louis", "Chiron", "VF1RFB00X56789012", "Renault"),
    ("DEMO-CUST-03", "Charlene", "Wittstock", "ZFA31200000123456", "Fiat"),
)
FIRST_NAMES: Final = ("Mike", "Ana", "Luca", "Sofia", "Jean", "Marta", "Omar", "Lea")
OPEN_STATES: Final = ("Ringing", "Pending", "Assigned", "EnRoute", "InProgress")


@dataclass(frozen=True)
class ScenarioOptions:
    every_s: float = 60.0
    """A new customer request this long after the previous one started (or at once when
    the previous took longer)."""
    job_m: tuple[float, float] = (500.0, 1500.0)
    """Road distance from the nearest technician to the customer."""
    work_s: float = 15.0
    """Between start of work and completion."""


class ScenarioError(Exception):
    """An API call answered something the scenario cannot go on with."""


@dataclass
class Technician:
    id: str
    name: str
    device: SimDevice
    token: str
    rings: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    """Request ids this technician's app was rung for."""
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    """The app's WebSocket got its `welcome` (and is open)."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Customer:
    id: str
    vehicle_id: str
    name: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class DispatchSetup:
    tenant: str
    secret: str
    admin_token: str
    services: list[str]
    customers: list[Customer]
    technicians: list[Technician]
    guest: Guest | None = None
    """A person's technician and customer, who use the field apps (devtools/guest.py)."""

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @classmethod
    async def create(
        cls, api: httpx.AsyncClient, secret: str, tenant: str, devices: list[SimDevice],
        say: Callable[[str], None],
    ) -> DispatchSetup:  # fmt: skip
        """The catalog, reused by code when a previous demo created it."""
        admin_token = issue_token(
            secret, subject="demo-admin", tenant=tenant, role=Role.ADMIN, ttl_s=TOKEN_TTL_S
        )
        setup = cls(tenant, secret, admin_token, [], [], [])
        await setup._close_leftovers(api)
        for code, name, price, minutes in SERVICES:
            body = {"serviceCode": code, "serviceName": name, "servicePrice": price,
                    "durationMinutes": minutes}  # fmt: skip
            setup.services.append(await setup._ensure(api, "/services", "serviceCode", body))
        for code, first, last, vin, make in CUSTOMERS:
            body = {"customerCode": code, "firstName": first, "lastName": last,
                    "email": f"{first.lower()}@example.mc", "phoneNumber": "+377 0000 0000"}  # fmt: skip
            customer_id = await setup._ensure(api, "/customers", "customerCode", body)
            vehicle_id = await setup._vehicle(api, customer_id, vin, make)
            token = setup.token(Role.CUSTOMER, customer_id)
            setup.customers.append(Customer(customer_id, vehicle_id, f"{first} {last}", token))
        phones = [d for d in devices if d.road is not None and d.topic]
        for i, dev in enumerate(phones):
            first = FIRST_NAMES[i % len(FIRST_NAMES)]
            body = {"technicianCode": f"DEMO-{dev.id}", "firstName": first,
                    "lastName": f"({dev.id})", "deviceId": dev.id,
                    "availabilityStatus": "Available"}  # fmt: skip
            technician_id = await setup._ensure(api, "/technicians", "technicianCode", body)
            token = setup.token(Role.TECHNICIAN, technician_id)
            tech = Technician(technician_id, first, dev, token)
            await setup._call(
                api, "PUT", "/technician/availability", tech.headers,
                {"availabilityStatus": "Available"},
            )  # fmt: skip
            setup.technicians.append(tech)
        setup.guest = await Guest.create(api, setup)
        say(
            f"fixgate demo: dispatch catalog ready: {len(setup.services)} services, "
            f"{len(setup.customers)} customers, {len(setup.technicians)} technicians "
            f"({', '.join(f'{t.name} on {t.device.id}' for t in setup.technicians)})"
        )
        return setup

    def token(self, role: Role, subject: str) -> str:
        return issue_token(self.secret, subject=subject, tenant=self.tenant, role=role,
                           ttl_s=TOKEN_TTL_S)  # fmt: skip

    async def _call(
        self, api: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
        body: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
    ) -> Any:  # fmt: skip
        response = await api.request(method, path, headers=headers, json=body, params=params)
        if response.status_code != 200:
            raise ScenarioError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json().get("data")

    async def _ensure(
        self, api: httpx.AsyncClient, path: str, code_field: str, body: dict[str, Any]
    ) -> str:
        found = await self._call(
            api, "GET", path, self.admin,
            params={"searchKeyword": body[code_field], "rowsPerPage": 100},
        )  # fmt: skip
        id_field = {"/services": "serviceId", "/customers": "customerId"}.get(path, "technicianId")
        for row in found or []:
            if row.get(code_field) == body[code_field]:
                return str(row[id_field])
        created = await self._call(api, "POST", path, self.admin, body)
        return str(created["id"])

    async def _vehicle(self, api: httpx.AsyncClient, customer_id: str, vin: str, make: str) -> str:
        path = f"/customers/{customer_id}/vehicles"
        found = await self._call(api, "GET", path, self.admin, params={"rowsPerPage": 100})
        for row in found or []:
            if row.get("vin") == vin:
                return str(row["vehicleId"])
        created = await self._call(api, "POST", path, self.admin, {"vin": vin, "make": make})
        return str(created["id"])

    async def _close_leftovers(self, api: httpx.AsyncClient) -> None:
        """Requests a killed demo left open would keep its technicians busy: cancel them."""
        for status in OPEN_STATES:
            rows = await self._call(
                api, "GET", "/service-requests", self.admin,
                params={"requestStatus": status, "rowsPerPage": 100},
            )  # fmt: skip
            for row in rows or []:
                await api.put(
                    f"/service-request/{row['requestId']}/3",
                    headers=self.admin,
                    json={"reason": "demo restarted"},
                )


async def _app(api_base: str, tech: Technician, stop: asyncio.Event) -> None:
    """One technician's app: a WebSocket kept open, rings noted, reconnected if it drops."""
    last_id: str | None = None
    while not stop.is_set():
        try:
            url = await ws_url(api_base, tech.token, last_id)
            async with websockets.connect(url, open_timeout=10) as ws:
                async for text in ws:
                    message = json.loads(text)
                    if message.get("id"):
                        last_id = message["id"]
                    if message.get("event") == "welcome":
                        tech.connected.set()
                    if message.get("event") == "ring_notification_received":
                        info = message["data"]["serviceRequestInfo"]
                        tech.rings.put_nowait(str(info["requestId"]))
        except (OSError, websockets.WebSocketException, TimeoutError, httpx.HTTPError) as e:
            log.debug("demo: %s's app: %r; reconnecting", tech.name, e)
        tech.connected.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WS_RETRY_S)


async def technician_apps(api_base: str, setup: DispatchSetup, stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as tg:
        for tech in setup.technicians:
            tg.create_task(_app(api_base, tech, stop))


# ---- the scenario ----------------------------------------------------------------------


@dataclass
class Step:
    """What the scenario prints as it goes."""

    number: int
    request_number: str = ""
    started: float = field(default_factory=time.monotonic)

    def line(self, text: str) -> str:
        return f"scenario {self.number} {self.request_number} +{time.monotonic() - self.started:.0f} s: {text}"


async def _request(
    api: httpx.AsyncClient, setup: DispatchSetup, customer: Customer, at: tuple[float, float],
    services: list[str],
) -> tuple[str, str]:  # fmt: skip
    data = await setup._call(
        api, "POST", "/service-request", customer.headers,
        {"vehicleId": customer.vehicle_id, "latitude": at[0], "longitude": at[1],
         "services": services, "description": "Broke down, please come",
         "location": f"{at[0]:.5f}, {at[1]:.5f}"},
    )  # fmt: skip
    return str(data["requestId"]), str(data["requestNumber"])


async def _rung(
    setup: DispatchSetup, request_id: str, stop: asyncio.Event,
    taken: Callable[[], Awaitable[bool]] | None = None,
) -> list[Technician]:  # fmt: skip
    """The technicians whose apps were rung for this request (first phase); the wait ends
    early once `taken()` says someone outside the script (the person) has accepted."""
    deadline = time.monotonic() + RING_WAIT_S
    rung: list[Technician] = []
    settle_until: float | None = None
    asked_at = time.monotonic()
    while not stop.is_set():
        if taken is not None and time.monotonic() - asked_at >= POLL_S:
            asked_at = time.monotonic()
            if await taken():
                break
        for tech in setup.technicians:
            while not tech.rings.empty():
                if tech.rings.get_nowait() == request_id and tech not in rung:
                    rung.append(tech)
                    settle_until = settle_until or time.monotonic() + RING_SETTLE_S
        now = time.monotonic()
        if (settle_until is not None and now >= settle_until) or now >= deadline:
            break
        await asyncio.sleep(0.2)
    return rung


async def _nearest(
    planner: RoadPlanner, techs: list[Technician], at: tuple[float, float]
) -> tuple[Technician, Route | None]:
    """The technician with the shortest drive to `at` at OSRM's speeds, and that drive
    (Monaco's one-way lanes make the nearest as the crow flies a long way round); else
    the nearest as the crow flies."""
    best: tuple[Technician, Route] | None = None
    for tech in techs:
        r = await planner.route(tech.device.position, at)
        if r is not None and (best is None or r.duration_s < best[1].duration_s):
            best = tech, r
    if best is not None:
        return best

    def away_m(t: Technician) -> float:
        lat, lon = t.device.position
        return haversine_m(lat, lon, at[0], at[1])

    return min(techs, key=away_m), None


def _ahead(tech: Technician, job_m: tuple[float, float]) -> tuple[float, float] | None:
    """A point of the road the technician is driving along, `job_m` ahead of where it
    will be once rung and accepted (a breakdown up the road: the drive there stays short
    however one-way the streets around)."""
    road = tech.device.road
    if road is None:
        return None
    lead_m = JOB_LEAD_S * max(road.motion.leg.speeds_mps, default=0.0)
    return point_ahead(road.motion, job_m[0] + lead_m, job_m[1] + lead_m)


async def _pick_job(
    setup: DispatchSetup, planner: RoadPlanner, job_m: tuple[float, float], rng: random.Random
) -> tuple[float, float] | None:
    """A customer location on the road, `job_m` by road from a free technician: up the
    road it drives along, else a random one around it (each technician in turn: one may
    still be parked off the road before its first leg)."""
    free = [t for t in setup.technicians if t.device.errand is None]
    rng.shuffle(free)
    for tech in free:
        at = _ahead(tech, job_m)
        if at is not None:
            return at
    for tech in free:
        r = await planner.random_route(
            tech.device.position, rng, job_m, nearby=True, max_s=job_m[1] / JOB_MIN_SPEED_MPS
        )
        if r is not None:
            return r.points[-1]
    return None


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def _wait(check: Callable[[], Any], stop: asyncio.Event, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)
    return None


async def run_one(
    api: httpx.AsyncClient, setup: DispatchSetup, planner: RoadPlanner, at: tuple[float, float],
    work_s: float, number: int, rng: random.Random, stop: asyncio.Event,
    say: Callable[[str], None], api_base: str, *, for_guest: bool = False,
) -> None:  # fmt: skip
    """One customer request at `at`, to its feedback (`for_guest`: placed near the
    person's technician, who may take it in the app)."""
    step = Step(number)
    customer = setup.customers[(number - 1) % len(setup.customers)]
    services = rng.sample(setup.services, k=rng.choice((1, 2)))
    request_id, step.request_number = await _request(api, setup, customer, at, services)
    say(step.line(f"{customer.name} asks for help at {at[0]:.5f},{at[1]:.5f}"
                  + (" (near you: your technician app rings)" if for_guest else "")))  # fmt: skip
    say(f"  tracking page  {api_base}/track/{request_id}#token={customer.token}")
    await _serve(api, setup, planner, request_id, at, services, customer, work_s, rng, stop, say,
                 step, for_guest=for_guest)  # fmt: skip


async def serve_guest_request(
    api: httpx.AsyncClient, setup: DispatchSetup, planner: RoadPlanner, row: dict[str, Any],
    work_s: float, number: int, rng: random.Random, stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """The person's request (asked in the customer app), served by the scripted
    technicians; the person rates it in the app."""
    step = Step(number, str(row["requestNumber"]))
    at = (float(row["latitude"]), float(row["longitude"]))
    services = [str(s["serviceId"]) for s in row["services"]]
    say(step.line(f"you ask for help at {at[0]:.5f},{at[1]:.5f} (the customer app)"))
    await _serve(api, setup, planner, str(row["requestId"]), at, services, None, work_s, rng,
                 stop, say, step, for_guest=False)  # fmt: skip


async def _serve(
    api: httpx.AsyncClient, setup: DispatchSetup, planner: RoadPlanner, request_id: str,
    at: tuple[float, float], services: list[str], customer: Customer | None, work_s: float,
    rng: random.Random, stop: asyncio.Event, say: Callable[[str], None], step: Step, *,
    for_guest: bool,
) -> None:  # fmt: skip
    """A request from its ring to its feedback: the person's technician when they take it
    (`for_guest`), else the nearest scripted technician rung (or assigned by hand);
    `customer` None: the person's own request, which they rate in the app."""
    guest = setup.guest

    async def taken() -> bool:
        return guest is not None and await guest.accepted(api, setup, request_id, stop, 0.0)

    rung = await _rung(setup, request_id, stop, taken if for_guest else None)
    if stop.is_set():
        return

    async def guest_took_it(wait_s: float) -> bool:
        """The person's technician accepted it (rung near them, or anywhere they were): their
        job is followed beside the next scenarios, and rated by its customer when done."""
        if guest is None or not await guest.accepted(api, setup, request_id, stop, wait_s):
            return False
        say(step.line("you accepted in the technician app"))

        async def follow_then_rate() -> None:
            assert guest is not None
            try:
                if await guest.follow(api, setup, request_id, step, stop, say) == "Completed":
                    await _feedback(api, setup, request_id, customer, rng, say, step)
            except (ScenarioError, httpx.HTTPError) as e:
                say(step.line(str(e) or repr(e)))

        guest.in_background(follow_then_rate())
        return True

    if await guest_took_it(ACCEPT_S if for_guest else 0.0):
        return
    if rung:
        tech, drive = await _nearest(planner, rung, at)
        try:
            await setup._call(api, "PUT", f"/service-request/{request_id}/1", tech.headers)
        except ScenarioError:
            if await guest_took_it(0.0):  # the person was quicker
                return
            raise
        say(step.line(f"rang {len(rung)} technicians; {tech.name} (the nearest by road) accepted"))
    elif for_guest:
        await setup._call(
            api, "PUT", f"/service-request/{request_id}/3", customer.headers if customer else setup.admin,
            {"reason": "Nobody took it"},
        )  # fmt: skip
        say(step.line("you let it ring and nobody else is near: the customer gave up"))
        return
    else:
        free = [t for t in setup.technicians if t.device.errand is None] or setup.technicians
        tech, drive = await _nearest(planner, free, at)
        await setup._call(
            api, "POST", "/service-request/assign", setup.admin,
            {"requestId": request_id, "technicianId": tech.id},
        )  # fmt: skip
        say(step.line(f"nobody was rung; the dispatcher assigned {tech.name}"))

    errand = Errand(at[0], at[1])
    tech.device.errand = errand
    try:
        await setup._call(api, "POST", f"/service-request/{request_id}/start-journey", tech.headers)
        by_road = (
            ""
            if drive is None
            else f", {drive.distance_m:.0f} m, ~{drive.duration_s:.0f} s by road"
        )
        say(
            step.line(f"{tech.name} is on the way (the engine's trip: ETA and route live{by_road})")
        )

        async def arrived() -> str | None:
            d = await setup._call(api, "GET", f"/service-request/{request_id}", setup.admin)
            return str(d["arrivedAt"]) if d.get("arrivedAt") else None

        if await _wait(arrived, stop, ARRIVAL_WAIT_S) is None:
            say(step.line("no arrival in time; giving up on this one"))
            return
        say(step.line(f"{tech.name} arrived (the engine's trip_arrived -> technician_arrived)"))
        await setup._call(
            api, "PUT", f"/service-request/{request_id}", tech.headers, params={"workAction": 1}
        )
        say(step.line("work started"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), work_s)
        if stop.is_set():
            return
        await setup._call(
            api, "PUT", f"/service-request/{request_id}", tech.headers,
            {"mileage": rng.randint(20_000, 180_000),
             "evidences": [f"demo://photos/{request_id}/after.jpg"],
             "completedServices": services},
            params={"workAction": 2},
        )  # fmt: skip
        say(step.line("completed"))
    finally:
        errand.released.set()
    await _feedback(api, setup, request_id, customer, rng, say, step)


async def _feedback(
    api: httpx.AsyncClient, setup: DispatchSetup, request_id: str, customer: Customer | None,
    rng: random.Random, say: Callable[[str], None], step: Step,
) -> None:  # fmt: skip
    if customer is None:
        say(step.line("rate it in your customer app"))
        return
    rating = rng.choice((4, 5, 5))
    await setup._call(
        api, "POST", f"/service-request/feedback/{request_id}", customer.headers,
        {"rating": rating, "feedback": "Quick and friendly"},
    )  # fmt: skip
    say(step.line(f"{customer.name} rated it {rating}/5"))


async def run_scenarios(
    api: httpx.AsyncClient, setup: DispatchSetup, planner: RoadPlanner,
    options: ScenarioOptions, stop: asyncio.Event, say: Callable[[str], None],
) -> None:  # fmt: skip
    """One scenario after the other, each starting `every_s` after the previous started."""
    rng = random.Random()
    api_base = str(api.base_url).rstrip("/")
    number = 0
    try:
        # The ring wants connected technicians with a fresh live position: the apps' sockets
        # open and the first fixes stored take a second or two after the fleet starts.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(APPS_WAIT_S):
                for tech in setup.technicians:
                    await tech.connected.wait()
        if await _sleep(stop, FIRST_FIXES_S):
            return
        looking = False
        while not stop.is_set():
            guest = setup.guest
            theirs = await guest.request_to_serve(api, setup) if guest else None
            if theirs is not None:  # the person asked for help in the customer app
                number += 1
                started = time.monotonic()
                try:
                    await serve_guest_request(api, setup, planner, theirs, options.work_s,
                                              number, rng, stop, say)  # fmt: skip
                except (ScenarioError, httpx.HTTPError) as e:
                    say(f"scenario {number}: {e}")
                await _sleep(stop, max(5.0, options.every_s - (time.monotonic() - started)))
                continue
            near_guest = (
                await guest.job_near(api, setup, planner, options.job_m, rng) if guest else None
            )
            at = near_guest or await _pick_job(setup, planner, options.job_m, rng)
            if at is None:
                if not looking:
                    say(f"scenario {number + 1}: no free technician or no road point found;"
                        f" looking every {JOB_RETRY_S:g} s")  # fmt: skip
                looking = True
                await _sleep(stop, JOB_RETRY_S)
                continue
            looking = False
            number += 1
            started = time.monotonic()
            try:
                await run_one(api, setup, planner, at, options.work_s, number, rng, stop, say,
                              api_base, for_guest=near_guest is not None)  # fmt: skip
            except (ScenarioError, httpx.HTTPError) as e:
                say(f"scenario {number}: {e}")
            left = options.every_s - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(5.0, left))
    finally:
        if setup.guest is not None:
            await setup.guest.stop_following()
        await planner.client.aclose()
