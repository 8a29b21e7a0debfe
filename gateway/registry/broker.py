"""The broker's view of the registry, kept by Mosquitto's dynamic-security plugin.

The broker authenticates every client and its ACLs decide who may publish and read
where (docs/security.md); this module tells it, over the plugin's control topic
(`$CONTROL/dynamic-security/v1`, as `mosquitto_ctrl` does), with an admin account
(`FIXGATE_MQTT_ADMIN_URL`). Nothing here trusts a topic: the broker checks every packet.

- A device's account: username = its device id (an OwnTracks phone: its OwnTracks user,
  as the app logs in), password = its token, and a role of its own
  (`fixgate-device:{username}`) that may publish on exactly its topics, for the protocols
  it is registered for, under the deployment's topic prefix; it may read nothing.
- A gateway's account: the role `fixgate-gateway` (`fixgate-gateway:{prefix}` under a
  prefix) may subscribe to and receive the device topics, and publish nothing.
- The broker runs with `use_username_as_clientid`, so an account's client id is its name:
  nobody can take the gateway's persistent session or a device's.

The plugin keeps only the password's hash and needs the token itself to create an
account, so an account is made where the token is known: `apply_device(..., token=...)`
right after `add_device`, in its transaction. Disabling, enabling and removing need no
token: `apply_device` / `forget_device`, called by whatever changed the registry, and by
the gateway that follows the registry's NOTIFY (`gateway.registry.cache`), so a change
made by any path reaches the broker within a second. Disabling or removing an account
disconnects its client at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from devices.topics import FIXGATE_ROOT, OWNTRACKS_ROOT, check_prefix
from gateway.config import mqtt_address, mqtt_tls
from gateway.db import DbConnection
from gateway.registry import store
from gateway.registry.cache import RegistryCache
from gateway.registry.store import Device, allows
from gateway.retry import RETRY_BACKOFF_S, backoff

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
DEVICE_ROLE_PREFIX = "fixgate-device:"
GATEWAY_ROLE = "fixgate-gateway"
TIMEOUT_S = 10.0
"""Longest a command batch may take: the plugin answers in milliseconds, but it writes its
whole state file after each batch, which grows with the fleet."""
CONNECT_ATTEMPTS = 5
"""Tries of an admin connection and of a batch whose connection was lost. Registry writers
share the admin account, whose session the broker names after it: two connections at
once cut each other off, and each tries again after a random pause (`_pause`)."""


def _pause(attempt: int) -> float:
    """Jittered, so two admin connections that collided do not collide again in step."""
    return backoff(RETRY_BACKOFF_S, attempt) * random.uniform(0.5, 1.5)


class BrokerError(RuntimeError):
    """The broker refused a command or did not answer."""


login_name = store.login_of


def device_role(login: str) -> str:
    return DEVICE_ROLE_PREFIX + login


ANY_PREFIX = "+/"
"""A prefix of one level of any name: devices registered once for many deployments that
share a broker under their own prefixes (the tests; each gateway reads its own)."""


def device_topics(device: Device, prefix: str = "") -> list[str]:
    """The topics a device may publish on, and no others."""
    if prefix != ANY_PREFIX:
        check_prefix(prefix)
    base = f"{prefix}{FIXGATE_ROOT}/{device.tenant_id}/{device.id}"
    topics = [
        f"{base}/{leaf}"
        for leaf, proto in (("fix", "json"), ("nmea", "nmea"))
        if allows(device, proto)
    ]
    if device.owntracks_user and device.owntracks_device and allows(device, "owntracks"):
        # The app's location topic and its own sub-topics (events, info, waypoints).
        topics.append(
            f"{prefix}{OWNTRACKS_ROOT}/{device.owntracks_user}/{device.owntracks_device}/#"
        )
    return topics


def gateway_role(prefix: str = "") -> str:
    return GATEWAY_ROLE if not prefix else f"{GATEWAY_ROLE}:{prefix}"


HEALTH_TOPIC = "$SYS/broker/uptime"
"""A gateway account may also read the broker's uptime: the compose health check's login."""


def gateway_acls(prefix: str = "") -> list[dict[str, Any]]:
    """Read-only on the device topics under the prefix, shared subscriptions included
    (as devtools/stack/broker_init.py makes the stack's first gateway role)."""
    check_prefix(prefix)
    acls = [
        {"acltype": kind, "topic": HEALTH_TOPIC, "allow": True}
        for kind in ("subscribeLiteral", "publishClientReceive")
    ]
    roots = (f"{FIXGATE_ROOT}/+/+/fix", f"{FIXGATE_ROOT}/+/+/nmea", f"{OWNTRACKS_ROOT}/+/+")
    for topic in (prefix + root for root in roots):
        for kind, pattern in (
            ("subscribePattern", topic), ("subscribePattern", f"$share/+/{topic}"),
            ("unsubscribePattern", topic), ("unsubscribePattern", f"$share/+/{topic}"),
            ("publishClientReceive", topic),
        ):  # fmt: skip
            acls.append({"acltype": kind, "topic": pattern, "allow": True})
    return acls


def _publish_acls(topics: Sequence[str]) -> list[dict[str, Any]]:
    return [{"acltype": "publishClientSend", "topic": t, "allow": True} for t in topics]


def tls_context(ca_file: Path | str | None) -> ssl.SSLContext:
    """Verify the broker's certificate against `ca_file` (the system's CAs without one)."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def client_options(url: str, ca_file: Path | str | None = None) -> dict[str, Any]:
    """aiomqtt.Client keyword arguments for an `mqtt://` or `mqtts://` URL."""
    host, port, user, password = mqtt_address(url)
    options: dict[str, Any] = {
        "hostname": host,
        "port": port,
        "username": user,
        "password": password,
    }
    if mqtt_tls(url):
        options["tls_context"] = tls_context(ca_file)
    return options


class BrokerAdmin:
    """One connection to the plugin's control topic; `run` sends commands, awaits answers."""

    def __init__(self, url: str, ca_file: Path | str | None = None) -> None:
        self._options = client_options(url, ca_file)
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count()

    async def __aenter__(self) -> BrokerAdmin:
        # The broker names a session after its account: a second admin connection at the
        # same moment (another gateway, the CLI) cuts this one off. Try again.
        for attempt in range(CONNECT_ATTEMPTS):
            self._client = aiomqtt.Client(**self._options, timeout=TIMEOUT_S)
            try:
                await self._client.__aenter__()
                await self._client.subscribe(RESPONSE_TOPIC, qos=1)
                return self
            except aiomqtt.MqttError as e:
                await self.__aexit__()
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise BrokerError(f"broker admin login refused or broker away: {e}") from None
                await asyncio.sleep(_pause(attempt))
        raise AssertionError("unreachable")

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(None, None, None)
            self._client = None

    async def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send a batch (the plugin saves its state once per batch); raise BrokerError on
        an error answer, except a delete or removal of what is not there, a create or add
        of what is (all already as wanted) and a get that finds nothing (the caller reads
        that). A connection lost on the way (another admin connection took the account's
        session) is made again and the batch sent again: every batch here is idempotent."""
        tag = f"fixgate-{next(self._ids)}"
        for i, command in enumerate(commands):
            command["correlationData"] = f"{tag}-{i}"
        async with self._lock:
            for attempt in range(CONNECT_ATTEMPTS):
                client = self._client
                if client is None:
                    raise BrokerError("BrokerAdmin used outside `async with`")
                try:
                    await client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
                    responses = await asyncio.wait_for(self._response(client, tag), TIMEOUT_S)
                    break
                except TimeoutError:
                    raise BrokerError(
                        f"the broker did not answer within {TIMEOUT_S:.0f} s"
                    ) from None
                except (aiomqtt.MqttError, BrokerError) as e:
                    if attempt == CONNECT_ATTEMPTS - 1:
                        raise BrokerError(f"broker admin connection lost: {e}") from None
                    await self.__aexit__()
                    await asyncio.sleep(_pause(attempt))
                    await self.__aenter__()
        for response in responses:
            error = str(response.get("error") or "").lower()
            name = str(response.get("command"))
            if (
                not error
                or ("not found" in error and name.startswith(("delete", "get", "remove")))
                or ("already" in error and name.startswith(("createRole", "add")))
            ):
                continue
            raise BrokerError(f"{name}: {response.get('error')}")
        return responses

    async def _response(self, client: aiomqtt.Client, tag: str) -> list[dict[str, Any]]:
        async for message in client.messages:
            body = json.loads(bytes(message.payload))
            responses: list[dict[str, Any]] = body.get("responses", [])
            if responses and str(responses[0].get("correlationData", "")).startswith(f"{tag}-"):
                return responses
        raise BrokerError("broker connection closed")


@contextlib.asynccontextmanager
async def broker_admin(url: str, ca_file: Path | str | None = None) -> AsyncIterator[BrokerAdmin]:
    async with BrokerAdmin(url, ca_file) as admin:
        yield admin


def _enable(username: str, enabled: bool) -> dict[str, Any]:
    return {"command": "enableClient" if enabled else "disableClient", "username": username}


async def _set_role_acls(
    admin: BrokerAdmin, role: str, acls: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The commands that give an existing role exactly these ACLs, or create it.

    Changed in place (removeRoleACL/addRoleACL): Mosquitto 2.0.11's deleteRole leaves a
    dangling reference in the clients that hold the role, so a role is deleted only after
    its clients are."""
    (answer,) = await admin.run([{"command": "getRole", "rolename": role}])
    if answer.get("error"):
        return [{"command": "createRole", "rolename": role, "acls": acls}]
    have = {(a["acltype"], a["topic"]) for a in answer["data"]["role"].get("acls", [])}
    want = {(a["acltype"], a["topic"]) for a in acls}
    return [
        {"command": "removeRoleACL", "rolename": role, "acltype": kind, "topic": topic}
        for kind, topic in sorted(have - want)
    ] + [
        {"command": "addRoleACL", "rolename": role, "acltype": kind, "topic": topic, "allow": True}
        for kind, topic in sorted(want - have)
    ]


async def apply_account(
    admin: BrokerAdmin,
    login: str,
    devices: Sequence[Device],
    *,
    token: str | None = None,
    prefix: str = "",
) -> None:
    """Make the broker's account `login` match the registry's devices that log in as it
    (one, or an OwnTracks user's several): the topics of those enabled, for the protocols
    each is registered for, under the prefix; enabled while any of them is; with `token`,
    its password (the account made anew). No devices left: the account is removed.

    Without a token the account must exist already (made when its device was added).
    Raises BrokerError when the broker refuses or is away."""
    if not devices:
        await forget_account(admin, login)
        return
    role = device_role(login)
    topics = [t for d in devices if d.enabled for t in device_topics(d, prefix)]
    acls = _publish_acls(topics)
    enabled = any(d.enabled for d in devices)
    if token is not None:
        await admin.run(
            [{"command": "deleteClient", "username": login},
             {"command": "deleteRole", "rolename": role},
             {"command": "createRole", "rolename": role, "acls": acls},
             {"command": "createClient", "username": login, "password": token,
              "roles": [{"rolename": role}]},
             _enable(login, enabled)]
        )  # fmt: skip
        return
    commands = await _set_role_acls(admin, role, acls)
    if commands and commands[0]["command"] == "createRole":  # lost: give it back
        commands.append({"command": "addClientRole", "username": login, "rolename": role})
    await admin.run([*commands, _enable(login, enabled)])


async def apply_gateway(admin: BrokerAdmin, username: str, password: str, prefix: str = "") -> None:
    """A gateway account (another gateway instance, a benchmark's, a test's) reading the
    device topics under `prefix`; its client id is its username."""
    role = gateway_role(prefix)
    commands = await _set_role_acls(admin, role, gateway_acls(prefix))
    commands += [
        {"command": "deleteClient", "username": username},
        {"command": "createClient", "username": username, "password": password,
         "roles": [{"rolename": role}]},
    ]  # fmt: skip
    await admin.run(commands)


async def forget_account(admin: BrokerAdmin, username: str) -> None:
    """Remove an account (its client is disconnected at once) and its own role."""
    await admin.run(
        [{"command": "deleteClient", "username": username},
         {"command": "deleteRole", "rolename": device_role(username)}]
    )  # fmt: skip


# ---- the registry and the broker together: what the CLI calls, and an admin API would ----


@dataclass(frozen=True)
class BrokerSync:
    """Where registry changes go on the broker: its admin account and the topic prefix."""

    admin_url: str
    prefix: str = ""
    ca_file: Path | str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> BrokerSync | None:
        """From `gateway.config.Settings`; None when no admin account is configured."""
        url = settings.mqtt_admin_url
        if not url:
            return None
        return cls(url, settings.mqtt_topic_prefix, settings.mqtt_ca_file)

    async def apply(self, conn: DbConnection, login: str, token: str | None = None) -> None:
        """The account `login` as the registry has it now (read within `conn`)."""
        devices = await store.devices_by_login(conn, login)
        async with broker_admin(self.admin_url, self.ca_file) as admin:
            await apply_account(admin, login, devices, token=token, prefix=self.prefix)


async def register_device(
    conn: DbConnection, sync: BrokerSync | None, device_id: str, /, **fields: Any
) -> str:
    """`store.add_device` and the device's broker account, in one transaction: a device
    the broker could not be told about is not registered. Returns the token.

    Raises what `store.add_device` raises, and BrokerError."""
    async with conn.transaction():
        token = await store.add_device(conn, device_id, **fields)
        if sync is not None:
            device = await store.get_device(conn, device_id)
            assert device is not None  # inserted just now, in this transaction
            await sync.apply(conn, login_name(device), token)
    return token


async def set_device_enabled(
    conn: DbConnection, sync: BrokerSync | None, device_id: str, enabled: bool
) -> bool:
    """Enable or disable a device in the registry and on the broker (disabling
    disconnects its client at once); False when there is no such device."""
    if not await store.set_enabled(conn, device_id, enabled):
        return False
    device = await store.get_device(conn, device_id)
    if sync is not None and device is not None:
        await sync.apply(conn, login_name(device))
    return True


async def remove_device(conn: DbConnection, sync: BrokerSync | None, device_id: str) -> bool:
    """Remove a device from the registry and its account from the broker; False when
    there is no such device. Its stored fixes stay (history is the tenant's)."""
    device = await store.remove_device(conn, device_id)
    if device is None:
        return False
    if sync is not None:
        await sync.apply(conn, login_name(device))  # the user's other phones keep theirs
    return True


class BrokerFollower:
    """The gateway's side of "any path": it follows the registry copy (changes arrive by
    NOTIFY, `gateway.registry.cache`) and brings each changed device's broker account in
    line, so a device disabled or removed by a path that did not tell the broker (an SQL
    UPDATE, a future admin API) is still refused by the broker within a second.

    It cannot create an account: that needs the token, which only the registering path
    holds (`register_device`). An account missing here is logged, not invented."""

    def __init__(self, sync: BrokerSync, cache: RegistryCache) -> None:
        self.sync = sync
        self.cache = cache
        self._logins = {d.id: login_name(d) for d in cache.by_id.values()}
        self._pending: set[str] = set()
        self._kick = asyncio.Event()
        cache.on_change.append(self._changed)

    def _changed(self, device_id: str, device: Device | None) -> None:
        old = self._logins.pop(device_id, None)
        if old is not None:
            self._pending.add(old)
        if device is not None:
            self._logins[device_id] = login_name(device)
            self._pending.add(login_name(device))
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 1.0)
                self._kick.clear()
                continue
            logins, self._pending = self._pending, set()
            try:
                async with broker_admin(self.sync.admin_url, self.sync.ca_file) as admin:
                    for login in sorted(logins):
                        devices = [d for d in self.cache.by_id.values() if login_name(d) == login]
                        try:
                            await apply_account(admin, login, devices, prefix=self.sync.prefix)
                        except BrokerError as e:
                            log.warning("broker: account %s not brought in line: %s", login, e)
                attempt = 0
            except (BrokerError, aiomqtt.MqttError) as e:
                self._pending |= logins
                log.warning("broker: cannot reach the broker's admin account (%s); retrying", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff(RETRY_BACKOFF_S, attempt))
                attempt += 1
