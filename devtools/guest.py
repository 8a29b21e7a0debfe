"""The demo's roles for a person (issue 23 item 5): a technician and a customer who use the
field apps, `/tech` and `/help`, on a phone or in a second browser window, beside the
scripted ones. The demo prints a one-time sign-in link for each (`POST /auth/links`):

- the technician goes on duty in the app; while their phone's position is fresh at the
  gateway, the next scenario's customer asks for help near them (on the extract's roads
  when they are on them, else a few hundred metres away), their app rings, and when they
  accept, the demo prints their job as it goes (journey, the engine's arrival, work,
  completion; the next scenarios go on meanwhile) and the scripted customer rates it;
  when they let it ring, a scripted technician takes
  it (or, nobody else being near, the customer gives up);
- the customer asks for help in the app; the next scenario serves that request with the
  scripted technicians (ring, accept, drive, work, complete), and the person rates it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import httpx

from devtools.driving import RoadPlanner

if TYPE_CHECKING:
    from devtools.scenario import DispatchSetup, Step

TECHNICIAN_CODE: Final = "DEMO-YOU-TECH"
CUSTOMER_CODE: Final = "DEMO-YOU-CUST"
VEHICLE_VIN: Final = "DEMOYOU0000000001"
LINK_TTL_S: Final = 12 * 3600
"""The printed links work for a working day (once each; the session then lasts its own)."""
FRESH_S: Final = 60.0
"""A technician whose phone sent a fix this recently is out there, on duty."""
ACCEPT_S: Final = 8.0
"""How long the person's technician has, after the scripted ones were rung, before a
scripted one takes the job (within the ring phase: 15 s by default)."""
FOLLOW_S: Final = 3600.0
"""Longest the scenario follows the person's job before going on without it."""
POLL_S: Final = 2.0
OPEN: Final = ("Ringing", "Pending", "Assigned", "EnRoute", "InProgress")


@dataclass
class Guest:
    technician_id: str
    customer_id: str
    technician_link: str
    customer_link: str
    served: set[str] = field(default_factory=set)
    """The person's requests the scenario has taken up."""
    following: set[asyncio.Task[None]] = field(default_factory=set)
    """The person's jobs followed beside the next scenarios (a person takes their time)."""

    @classmethod
    async def create(cls, api: httpx.AsyncClient, setup: DispatchSetup) -> Guest:
        """The person's technician (no device: the app registers one) and customer (with a
        vehicle), reused by code, and a sign-in link for each."""
        tech = {"technicianCode": TECHNICIAN_CODE, "firstName": "You",
                "lastName": "(technician app)", "availabilityStatus": "Offline"}  # fmt: skip
        technician_id = await setup._ensure(api, "/technicians", "technicianCode", tech)
        customer = {"customerCode": CUSTOMER_CODE, "firstName": "You",
                    "lastName": "(customer app)", "email": "you@example.mc"}  # fmt: skip
        customer_id = await setup._ensure(api, "/customers", "customerCode", customer)
        await setup._vehicle(api, customer_id, VEHICLE_VIN, "Your car")

        async def link(role: str, subject: str) -> str:
            body = {"role": role, "subject": subject, "ttlS": LINK_TTL_S}
            made = await setup._call(api, "POST", "/auth/links", setup.admin, body)
            return str(made["url"])

        return cls(
            technician_id, customer_id,
            await link("technician", technician_id), await link("customer", customer_id),
        )  # fmt: skip

    def banner(self) -> str:
        return (
            "  Play a role in the next scenario (open on a phone, or in a second browser window; each link once):\n"
            f"    technician  {self.technician_link}\n"
            "                go On duty: the next customer asks for help near your position\n"
            f"    customer    {self.customer_link}\n"
            "                ask for help (tap the map where you are): the next scenario sends a technician"
        )

    # ---- the person as the technician ------------------------------------------------

    async def job_near(
        self, api: httpx.AsyncClient, setup: DispatchSetup, planner: RoadPlanner,
        job_m: tuple[float, float], rng: random.Random,
    ) -> tuple[float, float] | None:  # fmt: skip
        """A place for the next job near the person's technician, when they are on duty
        with a fresh position (the console's fleet view) and no job of theirs open; else
        None."""
        if self.following:
            return None  # one job at a time for a person
        fleet = await setup._call(api, "GET", "/console/fleet", setup.admin)
        me = next((t for t in fleet or [] if t["technicianId"] == self.technician_id), None)
        where = me and me.get("location")
        if not me or me["availabilityStatus"] != "Available" or not where:
            return None
        updated = datetime.fromisoformat(where["updatedAt"])
        if (datetime.now(UTC) - updated).total_seconds() > FRESH_S:
            return None
        at = (float(where["latitude"]), float(where["longitude"]))
        r = await planner.random_route(at, rng, job_m, nearby=True)
        if r is not None:
            return r.points[-1]
        return _offset(at, job_m[0], rng.uniform(0.0, 2 * math.pi))  # off the extract's roads

    async def accepted(
        self, api: httpx.AsyncClient, setup: DispatchSetup, request_id: str,
        stop: asyncio.Event, wait_s: float = ACCEPT_S,
    ) -> bool:  # fmt: skip
        """Whether the person's technician took the request, waiting up to `wait_s` for
        them to (0: has taken it already)."""
        deadline = time.monotonic() + wait_s
        while not stop.is_set():
            d = await setup._call(api, "GET", f"/service-request/{request_id}", setup.admin)
            technician = (d.get("technician") or {}).get("technicianId")
            if technician == self.technician_id:
                return True
            if technician is not None or d["requestStatus"] not in ("Ringing", "Pending"):
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)
        return False

    def in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self.following.add(task)
        task.add_done_callback(self.following.discard)

    async def stop_following(self) -> None:
        for task in list(self.following):
            task.cancel()
        await asyncio.gather(*self.following, return_exceptions=True)

    async def follow(
        self, api: httpx.AsyncClient, setup: DispatchSetup, request_id: str, step: Step,
        stop: asyncio.Event, say: Callable[[str], None],
    ) -> str:  # fmt: skip
        """Print the person's job as it goes (the app's actions, the engine's arrival);
        its last status."""
        said: tuple[str, bool] | None = None
        deadline = time.monotonic() + FOLLOW_S
        status = "Assigned"
        while not stop.is_set() and time.monotonic() < deadline:
            d: dict[str, Any] = await setup._call(
                api, "GET", f"/service-request/{request_id}", setup.admin
            )
            status, arrived = d["requestStatus"], d.get("arrivedAt") is not None
            if (status, arrived) != said:
                said = (status, arrived)
                say(step.line(_WORDS.get((status, arrived), status)))
            if status not in OPEN:
                break
            await asyncio.sleep(POLL_S)
        return status

    # ---- the person as the customer ---------------------------------------------------

    async def request_to_serve(
        self, api: httpx.AsyncClient, setup: DispatchSetup
    ) -> dict[str, Any] | None:
        """The person's newest request still looking for a technician, not yet taken up."""
        for status in ("Ringing", "Pending"):
            rows = await setup._call(
                api, "GET", "/service-requests", setup.admin,
                params={"requestStatus": status, "rowsPerPage": 100},
            )  # fmt: skip
            for row in rows or []:
                if row["customerId"] == self.customer_id and row["requestId"] not in self.served:
                    self.served.add(row["requestId"])
                    found: dict[str, Any] = row
                    return found
        return None


_WORDS: Final = {
    ("Assigned", False): "you have the job (the technician app): Start journey when you set off",
    (
        "EnRoute",
        False,
    ): "you are on the way: your phone's fixes drive the engine's trip and the customer's ETA",
    ("EnRoute", True): "you arrived (the engine's trip_arrived -> technician_arrived): Start work",
    ("InProgress", True): "you are working: Complete with the mileage, evidence and services",
    ("InProgress", False): "you are working: Complete with the mileage, evidence and services",
    ("Completed", True): "you completed it",
    ("Completed", False): "you completed it",
    ("Canceled", True): "canceled",
    ("Canceled", False): "canceled",
}


def _offset(at: tuple[float, float], metres: float, bearing: float) -> tuple[float, float]:
    """The point `metres` from `at` on `bearing` (radians), as the crow flies."""
    lat = at[0] + metres * math.cos(bearing) / 111_195.0
    lon = at[1] + metres * math.sin(bearing) / (111_195.0 * math.cos(math.radians(at[0])))
    return lat, lon
