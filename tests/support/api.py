"""Helpers for the dispatch API tests: the app through its lifespan, tokens, seed data."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from api.app import create_app
from api.auth import issue_token
from api.principal import Role
from api.settings import ApiSettings

SECRET = "test-secret-" + "x" * 32
TOKEN_TTL_S = 3600


def settings_for(db_url: str, redis_url: str, redis_prefix: str, **overrides: Any) -> ApiSettings:
    # In-process apps serve no WebSocket clients (httpx's ASGI transport speaks HTTP only):
    # their ring tests ring by position alone; tests/e2e/realtime rings connected clients.
    overrides.setdefault("ring_require_connected", False)
    return ApiSettings(
        database_url=db_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        api_secret=SECRET,
        **overrides,
    )


def raw_token(role: Role, subject: str, tenant: str) -> str:
    return issue_token(SECRET, subject=subject, tenant=tenant, role=role, ttl_s=TOKEN_TTL_S)


def token(role: Role, subject: str, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_token(role, subject, tenant)}"}


@contextlib.asynccontextmanager
async def running_app(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered (pool, Redis, workers), and a client for it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@dataclass
class Tenant:
    """A tenant's actors: an admin token and helpers to create catalog rows."""

    client: httpx.AsyncClient
    name: str

    @property
    def admin(self) -> dict[str, str]:
        return token(Role.ADMIN, "admin-1", self.name)

    async def post(self, path: str, body: dict[str, Any]) -> str:
        response = await self.client.post(path, json=body, headers=self.admin)
        assert response.status_code == 200, response.text
        row_id: str = response.json()["data"]["id"]
        return row_id

    async def customer(self) -> tuple[str, str, dict[str, str]]:
        """(customerId, vehicleId, customer token)"""
        code = f"CUST-{uuid.uuid4().hex[:6]}"
        customer_id = await self.post(
            "/customers",
            {"customerCode": code, "firstName": "John", "lastName": "Doe", "email": "j@x.org"},
        )
        vehicle_id = await self.post(
            f"/customers/{customer_id}/vehicles", {"vin": "WBADT43452G915187", "make": "BMW"}
        )
        return customer_id, vehicle_id, token(Role.CUSTOMER, customer_id, self.name)

    async def service(self, price: float = 49.99, minutes: int = 30) -> str:
        code = f"SVC-{uuid.uuid4().hex[:6]}"
        return await self.post(
            "/services",
            {
                "serviceCode": code,
                "serviceName": f"Service {code}",
                "servicePrice": price,
                "durationMinutes": minutes,
            },
        )

    async def request(
        self, customer: tuple[str, str, dict[str, str]], at: tuple[float, float], **extra: Any
    ) -> str:
        """A customer's request at `at` (lat, lon) for one new service: its requestId."""
        _, vehicle_id, headers = customer
        body = {"vehicleId": vehicle_id, "latitude": at[0], "longitude": at[1],
                "services": [await self.service()], **extra}  # fmt: skip
        response = await self.client.post("/service-request", json=body, headers=headers)
        assert response.status_code == 200, response.text
        request_id: str = response.json()["data"]["requestId"]
        return request_id

    async def technician(
        self, device_id: str | None = None, availability: str = "Available"
    ) -> tuple[str, dict[str, str]]:
        """(technicianId, technician token)"""
        code = f"TECH-{uuid.uuid4().hex[:6]}"
        body: dict[str, Any] = {
            "technicianCode": code,
            "firstName": "Mike",
            "lastName": "Smith",
            "availabilityStatus": availability,
        }
        if device_id is not None:
            body["deviceId"] = device_id
        technician_id = await self.post("/technicians", body)
        return technician_id, token(Role.TECHNICIAN, technician_id, self.name)


METERS_PER_MILE = 1609.344
METERS_PER_DEGREE_LAT = 111_195.0  # mean Earth radius 6371 km


def miles_north(lat: float, lon: float, miles: float) -> tuple[float, float]:
    return lat + miles * METERS_PER_MILE / METERS_PER_DEGREE_LAT, lon


async def place(
    client: Any, prefix: str, device: str, tenant: str, lat: float, lon: float, age_s: float = 0
) -> None:
    """A live position through the gateway's own Redis writer."""
    from datetime import UTC, datetime, timedelta

    from devices.fix import Fix
    from gateway.sinks.live import LiveWriter

    at = datetime.now(UTC) - timedelta(seconds=age_s)
    fix = Fix(device_id=device, tenant_id=tenant, time=at, lat=lat, lon=lon, received_at=at)
    await LiveWriter(client, prefix).write([fix])


async def add_device(pg: Any, device: str, tenant: str) -> None:
    await pg.execute(
        "INSERT INTO devices (id, tenant_id, kind, token_hash) VALUES ($1, $2, 'service_van', 'x')",
        device,
        tenant,
    )


async def eventually(check: Any, timeout_s: float = 10.0, every_s: float = 0.05) -> Any:
    """Poll an async check until it returns something truthy; fail after timeout_s."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {result!r})")
        await asyncio.sleep(every_s)


async def dispatch_events(client: Any, prefix: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(event name, payload, groups) of every entry on the dispatch stream, in order."""
    import json

    entries = await client.xrange(f"{prefix}dispatch")
    return [
        (
            fields[b"event"].decode(),
            json.loads(fields[b"payload"]),
            json.loads(fields[b"groups"]),
        )
        for _, fields in entries
    ]


async def fresh_minute() -> None:
    """Wait out the end of a minute: the API's rate limits count in the clock's minutes
    (api/limits.py, a fixed window), so a burst that straddles one is counted twice."""
    import asyncio
    import time

    left = 60 - time.time() % 60
    if left < 15:
        await asyncio.sleep(left + 0.5)
