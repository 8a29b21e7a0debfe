"""Helpers for the real-time tests: `fixgate api` subprocesses on free loopback ports and
WebSocket clients (the `websockets` package) that collect what they receive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from api.auth import issue_token
from api.principal import Role
from devtools.ws_client import ws_url
from tests.support.api import SECRET, TOKEN_TTL_S
from tests.support.paths import FIXGATE_BIN, REPO_ROOT
from tests.support.ports import free_port

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass
class ApiProcess:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


def _wait_ready(api: ApiProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{api.http}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert api.proc.poll() is None, "fixgate api exited"
        assert time.monotonic() < deadline, "fixgate api not ready"
        time.sleep(0.1)


@contextlib.contextmanager
def api_processes(
    count: int, db_url: str, redis_url: str, prefix: str, **env: str
) -> Iterator[list[ApiProcess]]:
    """`count` real `fixgate api` processes sharing one database and Redis prefix."""
    apis: list[ApiProcess] = []
    try:
        for _ in range(count):
            port = free_port()
            environ = {
                **os.environ,
                "FIXGATE_DATABASE_URL": db_url,
                "FIXGATE_REDIS_URL": redis_url,
                "FIXGATE_REDIS_PREFIX": prefix,
                "FIXGATE_API_SECRET": SECRET,
                "FIXGATE_API_HOST": "127.0.0.1",
                "FIXGATE_API_PORT": str(port),
                "FIXGATE_API_DB_POOL_MAX": "5",
                **env,
            }
            proc = subprocess.Popen([FIXGATE_BIN, "api"], env=environ, cwd=REPO_ROOT)
            apis.append(ApiProcess(proc, port))
        for api in apis:
            _wait_ready(api)
        yield apis
    finally:
        for api in apis:
            api.proc.terminate()
        hung = []
        for api in apis:
            try:
                api.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                api.proc.send_signal(signal.SIGUSR1)  # its stacks to stderr (faulthandler)
                time.sleep(0.5)
                api.proc.kill()
                api.proc.wait()
                hung.append(api.port)
        assert not hung, f"fixgate api on port(s) {hung} did not stop on SIGTERM"


FLOODABLE = {
    "FIXGATE_CUSTOMER_OPEN_REQUESTS_MAX": "5000",
    "FIXGATE_CREATE_REQUESTS_PER_MIN": "5000",
}
"""For tests that flood requests through one customer (the real-time fan-out, the process
kills): the bounds on a customer's open requests and creations, tested in
tests/e2e/api/test_api_trust.py, are lifted."""


def raw_token(role: Role, subject: str, tenant: str) -> str:
    return issue_token(SECRET, subject=subject, tenant=tenant, role=role, ttl_s=TOKEN_TTL_S)


@dataclass
class Client:
    """A connected client that reads everything into `messages` as it comes."""

    ws: ClientConnection
    welcome: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if name is None or m["event"] == name]

    @property
    def last_id(self) -> str:
        ids = [m["id"] for m in self.messages if m["id"] is not None]
        return str(ids[-1]) if ids else str(self.welcome["id"])

    async def wait_for(
        self, check: Callable[[list[dict[str, Any]]], Any], timeout_s: float = 10.0
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            result = check(self.messages)
            if result:
                return result
            if time.monotonic() > deadline:
                got = [m["event"] for m in self.messages]
                raise AssertionError(f"not received within {timeout_s} s; got {got}")
            await asyncio.sleep(0.02)

    async def event(self, name: str, timeout_s: float = 10.0, **match: Any) -> dict[str, Any]:
        def found(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
            for m in messages:
                if m["event"] == name and all(_get(m["data"], k) == v for k, v in match.items()):
                    return m
            return None

        got: dict[str, Any] = await self.wait_for(found, timeout_s)
        return got

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await self._reader


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("__"):
        data = data.get(part) if isinstance(data, dict) else None
    return data


async def connect(url: str, token: str, last_event_id: str | None = None) -> Client:
    """Connect and read up to `welcome` (replayed events first, then welcome)."""
    ws = await websockets.connect(await ws_url(url, token, last_event_id))
    before: list[dict[str, Any]] = []
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10.0))
        if message["event"] == "welcome":
            break
        before.append(message)
    client = Client(ws, message, before)
    client._reader = asyncio.create_task(client._read())
    return client


@contextlib.asynccontextmanager
async def connected(
    url: str, token: str, last_event_id: str | None = None
) -> AsyncIterator[Client]:
    client = await connect(url, token, last_event_id)
    try:
        yield client
    finally:
        await client.close()


ORIGIN = (40.7128, -74.0060)


async def technician_near(
    tenant: Any, pg: Any, redis_client: Any, prefix: str, miles: float = 5.0
) -> tuple[str, str, str]:
    """A technician with a device whose live position (through the gateway's LiveWriter) is
    `miles` north of ORIGIN: (technicianId, raw token, deviceId)."""
    import uuid

    from tests.support.api import add_device, miles_north, place

    device = f"dev-{uuid.uuid4().hex[:8]}"
    await add_device(pg, device, tenant.name)
    await place(redis_client, prefix, device, tenant.name, *miles_north(*ORIGIN, miles))
    technician_id, _ = await tenant.technician(device_id=device)
    return technician_id, raw_token(Role.TECHNICIAN, technician_id, tenant.name), device


async def create_request(
    http: httpx.AsyncClient, vehicle_id: str, service_id: str, customer: dict[str, str]
) -> str:
    response = await http.post(
        "/service-request",
        json={
            "vehicleId": vehicle_id,
            "latitude": ORIGIN[0],
            "longitude": ORIGIN[1],
            "services": [service_id],
        },
        headers=customer,
    )
    assert response.status_code == 200, response.text
    request_id: str = response.json()["data"]["requestId"]
    return request_id


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def mentions(message: dict[str, Any], text: str) -> bool:
    return text in json.dumps(message)
