"""The tests' side of an authenticated broker: every publisher logs in as a real device,
every gateway under an account of its own, as in production (docs/security.md).

- `register()` (tests/support/ingest.py) creates the device's broker account with its
  token, through the product's own `register_device`, and remembers the token here, by
  the device's broker login (its id, or its OwnTracks user).
- A test's devices may publish under any one-level topic prefix (`ANY_PREFIX`), so
  registration needs no prefix: isolation comes from each test's gateway subscribing to
  its own prefix (`mqtt_prefix`), as before.
- `DevicePublisher` publishes each message as the device its topic names (or as the one
  it is told to impersonate), one connection per device, logged in with its token.
- `gateway_account()` gives a test's gateway (or a bare subscriber) an account of its own,
  read-only on its prefix: the broker names a session after its account, so gateways with
  a shared account would share one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import paho.mqtt.client as paho

from devices.topics import parse_topic
from gateway.config import mqtt_address
from gateway.registry.broker import (
    apply_gateway,
    broker_admin,
    forget_account,
    gateway_role,
)

_admin_url: list[str] = []
"""The admin URL of the broker tests register on (a stack; the fault stack within its tests)."""
_tokens: dict[str, tuple[str, str]] = {}
"""Tokens of the devices registered in this run, and the database of each, by broker
login (the last registration wins)."""


@contextlib.contextmanager
def use_broker(admin_url: str) -> Iterator[None]:
    """Register devices on this broker inside the block (stacked: the innermost wins)."""
    _admin_url.append(admin_url)
    try:
        yield
    finally:
        _admin_url.pop()


def admin_url() -> str | None:
    return _admin_url[-1] if _admin_url else None


def remember(login: str, token: str, db_url: str) -> None:
    _tokens[login] = (token, db_url)


def token_of(login: str) -> str:
    try:
        return _tokens[login][0]
    except KeyError:
        raise KeyError(f"no token for broker login {login!r}: register it first") from None


def shared_token(login: str, db_url: str) -> str | None:
    """The token of a login already registered in this database (an OwnTracks user's)."""
    token, db = _tokens.get(login, ("", ""))
    return token if db == db_url else None


def login_of_topic(topic: str, prefix: str) -> str:
    """Who may publish on a device topic: the device (fixgate/...) or OwnTracks user."""
    levels = topic.removeprefix(prefix).split("/")
    if levels[0] == "owntracks" and len(levels) > 2:  # the app's sub-topics too
        return levels[1]
    route = parse_topic(topic, prefix)
    if route is None:
        raise ValueError(f"not a device topic under {prefix!r}: {topic}")
    return route.tenant_or_user if route.kind.value == "owntracks" else route.device


def device_client(mqtt_url: str, login: str, *, clean_session: bool = True) -> paho.Client:
    """A connected paho client logged in as a registered device (loop started)."""
    host, port, _, _ = mqtt_address(mqtt_url)
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=login, clean_session=clean_session
    )
    client.username_pw_set(login, token_of(login))
    client.max_inflight_messages_set(1000)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(10) or not client.is_connected():
        client.loop_stop()
        raise RuntimeError(f"the broker did not let {login!r} in")
    return client


class DevicePublisher:
    """Publishes each message as the device (or OwnTracks user) its topic names."""

    def __init__(self, mqtt_url: str, prefix: str = "") -> None:
        self.mqtt_url, self.prefix = mqtt_url, prefix
        self.clients: dict[str, paho.Client] = {}

    def client(self, login: str) -> paho.Client:
        if login not in self.clients:
            self.clients[login] = device_client(self.mqtt_url, login)
        return self.clients[login]

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, as_login: str | None = None
    ) -> paho.MQTTMessageInfo:
        login = as_login or login_of_topic(topic, self.prefix)
        return self.client(login).publish(topic, payload, qos=qos)

    def disconnect(self) -> None:
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()
        self.clients.clear()


def account_url(mqtt_url: str, username: str, password: str) -> str:
    """`mqtt_url` with another account's credentials."""
    host, port, _, _ = mqtt_address(mqtt_url)
    scheme = mqtt_url.split("://", 1)[0]
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}"


@contextlib.contextmanager
def gateway_account(mqtt_url: str, prefix: str, admin: str | None = None) -> Iterator[str]:
    """An account of its own for a test's gateway, reading the topics under `prefix`;
    yields `mqtt_url` logged in as it. Removed afterwards (its session goes with it)."""
    admin = admin or admin_url()
    assert admin is not None, "no broker to make accounts on (use_broker)"
    username, password = f"gw-{uuid.uuid4().hex[:10]}", secrets.token_urlsafe(24)

    async def make() -> None:
        async with broker_admin(admin) as a:
            await apply_gateway(a, username, password, prefix)

    async def drop() -> None:
        async with broker_admin(admin) as a:
            await forget_account(a, username)
            # The prefix's role too, unless another account holds it (the demo's gateway
            # does in its test): Mosquitto 2.0.11 crashes on a deleted role still held.
            role = gateway_role(prefix)
            (listed,) = await a.run([{"command": "listClients", "verbose": True, "count": -1}])
            holders = [
                c for c in listed["data"]["clients"]
                if any(r.get("rolename") == role for r in c.get("roles", []))
            ]  # fmt: skip
            if not holders:
                await a.run([{"command": "deleteRole", "rolename": role}])

    asyncio.run(make())
    try:
        yield account_url(mqtt_url, username, password)
    finally:
        asyncio.run(drop())


@contextlib.contextmanager
def broker_device(device_id: str, tenant: str, admin: str | None = None) -> Iterator[None]:
    """A device's broker account without a registry (tests of the broker and the MQTT
    client alone); its token is remembered like a registered one's. Removed afterwards."""
    from datetime import UTC, datetime

    from gateway.registry.broker import ANY_PREFIX, apply_account
    from gateway.registry.store import Device

    admin = admin or admin_url()
    assert admin is not None, "no broker to make accounts on (use_broker)"
    token = secrets.token_urlsafe(32)
    device = Device(
        id=device_id, tenant_id=tenant, kind="tracker", token_hash="", enabled=True,
        created_at=datetime.now(UTC),
    )  # fmt: skip

    async def make() -> None:
        async with broker_admin(admin) as a:
            await apply_account(a, device_id, [device], token=token, prefix=ANY_PREFIX)

    async def drop() -> None:
        async with broker_admin(admin) as a:
            await forget_account(a, device_id)

    asyncio.run(make())
    remember(device_id, token, "")
    try:
        yield
    finally:
        asyncio.run(drop())


def login_options(url: str) -> dict[str, str | None]:
    """paho's/aiomqtt's username and password of a URL (for clients built by hand)."""
    _, _, username, password = mqtt_address(url)
    return {"username": username, "password": password}


def attempt(mqtt_url: str, login: str, topic: str, payload: bytes) -> bool:
    """Publish once as `login` on a connection of its own (QoS 1) where its ACLs may not
    allow it; True when the broker kept the connection. Mosquitto 2.0 acknowledges a
    refused PUBLISH of an MQTT 3.1.1 client and then disconnects it."""
    client = device_client(mqtt_url, login)
    try:
        info = client.publish(topic, payload, qos=1)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(2)
        time.sleep(0.2)
        return client.is_connected()
    finally:
        client.disconnect()
        client.loop_stop()
