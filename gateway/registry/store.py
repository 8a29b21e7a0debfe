"""The device registry: which devices exist, for which tenant, and how they log in.

Rows live in the `devices` table; tokens are stored hashed (`gateway.registry.tokens`). Listeners
never query it per fix: they keep a `RegistryCache` (gateway side) refreshed from
`load_devices`.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from devices.osmand import MAX_ID_CHARS
from gateway.db import DbConnection
from gateway.registry.tokens import check_token, generate_token, hash_token, verify_token

DEVICE_KINDS = ("tow_truck", "service_van", "phone", "tracker", "other")


class DeviceExists(Exception):
    def __init__(self, device_id: str) -> None:
        super().__init__(f"device {device_id!r} already exists")


class OwnTracksIdentityTaken(Exception):
    def __init__(self, identity: str) -> None:
        super().__init__(f"OwnTracks identity {identity!r} is already mapped to another device")


class OwnTracksUserTaken(Exception):
    """Another device logs in to the broker under this OwnTracks user with another token."""

    def __init__(self, user: str) -> None:
        super().__init__(
            f"OwnTracks user {user!r} already has a device: a user logs in to the broker with one"
            " token, so give this one the same token (--token), or use another user"
        )


class LoginTaken(Exception):
    """A device id and an OwnTracks user would log in to the broker under one name."""

    def __init__(self, login: str) -> None:
        super().__init__(
            f"{login!r} is already another device's broker login (its id or OwnTracks user)"
        )


class IdentifierTaken(Exception):
    """An IMEI or a Traccar Client id already names another device."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"{kind} {value!r} already names another device")
        self.kind = kind


class Device(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    tenant_id: str
    kind: str
    token_hash: str
    enabled: bool
    created_at: datetime
    protocols: tuple[str, ...] = ()
    owntracks_user: str | None = None
    owntracks_device: str | None = None
    # Appended (issue 12); a registry snapshot written before them reads as None.
    imei: str | None = None
    """The 15-digit IMEI a Teltonika or GT06 tracker logs in with."""
    traccar_id: str | None = None
    """The identifier the Traccar Client app sends (`id`, `device_id`)."""
    # Appended (issue 23); a registry snapshot written before it reads as None.
    app_token_hash: str | None = None
    """The technician app's token for this device (OwnTracks HTTP only): minted by the API
    for the technician linked to the device (`api.store.phones`), hashed as `token_hash`."""


_COLUMNS = (
    "id, tenant_id, kind, token_hash, enabled, created_at, protocols, "
    "owntracks_user, owntracks_device, imei, traccar_id, app_token_hash"
)
IMEI_DIGITS = 15
"""An IMEI is 14 digits and a Luhn check digit (3GPP TS 23.003); trackers send all 15."""
MAX_TRACCAR_ID_CHARS = MAX_ID_CHARS
"""As long as the OsmAnd decoder accepts (`devices.osmand.MAX_ID_CHARS`)."""


def _device(row: asyncpg.Record) -> Device:
    return Device(**{**dict(row), "protocols": tuple(row["protocols"])})


def check_imei(imei: str) -> str:
    """The IMEI as stored, or ValueError. Only the form is checked, not the Luhn digit:
    cheap clones ship with IMEIs that fail it, and they log in with what they have."""
    if len(imei) != IMEI_DIGITS or not imei.isascii() or not imei.isdigit():
        raise ValueError(f"an IMEI is {IMEI_DIGITS} digits, got {imei!r}")
    return imei


def check_traccar_id(traccar_id: str) -> str:
    """The Traccar Client id as stored, or ValueError."""
    if not traccar_id or len(traccar_id) > MAX_TRACCAR_ID_CHARS or not traccar_id.isprintable():
        raise ValueError(
            f"a Traccar Client id is 1-{MAX_TRACCAR_ID_CHARS} printable characters, got {traccar_id!r}"
        )
    return traccar_id


def parse_owntracks_identity(identity: str) -> tuple[str, str]:
    """`user/device` as the OwnTracks app names itself in `owntracks/<user>/<device>`."""
    user, sep, device = identity.partition("/")
    if not sep or not user or not device or "/" in device or "+" in identity or "#" in identity:
        raise ValueError(f"OwnTracks identity must be <user>/<device>, got {identity!r}")
    return user, device


async def add_device(
    conn: DbConnection,
    device_id: str,
    *,
    tenant_id: str,
    kind: str,
    token: str | None = None,
    owntracks: str | None = None,
    protocols: tuple[str, ...] = (),
    imei: str | None = None,
    traccar_id: str | None = None,
) -> str:
    """Register a device; return its token (generated unless given). Only a hash is stored."""
    if kind not in DEVICE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DEVICE_KINDS)}; got {kind!r}")
    if not device_id or any(c in device_id for c in "/+#,*$ ") or not device_id.isprintable():
        raise ValueError(
            f"device id {device_id!r} may not be empty or contain / + # , * $ or spaces"
        )
    if token is None:
        token = generate_token()
    else:
        check_token(token)
    ot_user, ot_device = parse_owntracks_identity(owntracks) if owntracks else (None, None)
    if imei is not None:
        check_imei(imei)
    if traccar_id is not None:
        check_traccar_id(traccar_id)
    await _check_login_free(conn, ot_user or device_id, device_id, (ot_user, ot_device), token)
    try:
        await conn.execute(
            "INSERT INTO devices (id, tenant_id, kind, token_hash, protocols, owntracks_user,"
            " owntracks_device, imei, traccar_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            device_id,
            tenant_id,
            kind,
            hash_token(token),
            list(protocols),
            ot_user,
            ot_device,
            imei,
            traccar_id,
        )
    except asyncpg.UniqueViolationError as e:
        if e.constraint_name == "devices_pkey":
            raise DeviceExists(device_id) from None
        if e.constraint_name == "devices_imei_key":
            raise IdentifierTaken("IMEI", imei or "") from None
        if e.constraint_name == "devices_traccar_id_key":
            raise IdentifierTaken("Traccar Client id", traccar_id or "") from None
        raise OwnTracksIdentityTaken(owntracks or "") from None
    return token


def login_of(device: Device) -> str:
    """The name a device logs in to the broker with: its OwnTracks user, else its id."""
    return device.owntracks_user or device.id


async def _check_login_free(
    conn: DbConnection,
    login: str,
    device_id: str,
    identity: tuple[str | None, str | None],
    token: str,
) -> None:
    """One broker login is one secret: a device id may not be another device's OwnTracks
    user (or the reverse), and an OwnTracks user's devices share one token. A taken id or
    identity is left to the insert, which names it."""
    ot_user, ot_device = identity
    rows = await conn.fetch(
        "SELECT id, owntracks_user, owntracks_device, token_hash FROM devices"
        " WHERE coalesce(owntracks_user, id) = $1 AND id <> $2",
        login,
        device_id,
    )
    for row in rows:
        if ot_user is not None and row["owntracks_device"] == ot_device:
            continue  # the same identity: the insert says so (OwnTracksIdentityTaken)
        if ot_user is None or row["owntracks_user"] != ot_user:
            raise LoginTaken(login)
        if not verify_token(token, row["token_hash"]):
            raise OwnTracksUserTaken(ot_user)


async def devices_by_login(conn: DbConnection, login: str) -> list[Device]:
    """The devices that log in to the broker as `login` (several: an OwnTracks user's)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM devices WHERE coalesce(owntracks_user, id) = $1 ORDER BY id", login
    )
    return [_device(r) for r in rows]


async def list_devices(conn: DbConnection, tenant_id: str | None = None) -> list[Device]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM devices WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, id",
        tenant_id,
    )
    return [_device(r) for r in rows]


async def get_device(conn: DbConnection, device_id: str) -> Device | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)
    return _device(row) if row else None


async def get_devices(
    conn: DbConnection,
    *,
    ids: list[str],
    owntracks: tuple[str, str] | None = None,
    imei: str | None = None,
    traccar_id: str | None = None,
) -> list[Device]:
    """The devices with these ids (and the ones with this OwnTracks identity, IMEI or
    Traccar Client id), as stored."""
    user, device = owntracks if owntracks else (None, None)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM devices WHERE id = ANY($1::text[])"
        " OR (owntracks_user = $2 AND owntracks_device = $3) OR imei = $4 OR traccar_id = $5",
        ids,
        user,
        device,
        imei,
        traccar_id,
    )
    return [_device(r) for r in rows]


async def set_enabled(conn: DbConnection, device_id: str, enabled: bool) -> bool:
    """Enable or disable a device; False when there is no such device."""
    status = await conn.execute("UPDATE devices SET enabled = $2 WHERE id = $1", device_id, enabled)
    return status != "UPDATE 0"


async def remove_device(conn: DbConnection, device_id: str) -> Device | None:
    """Remove a device from the registry; the removed entry, or None when there was none."""
    row = await conn.fetchrow(f"DELETE FROM devices WHERE id = $1 RETURNING {_COLUMNS}", device_id)
    return _device(row) if row else None


def allows(device: Device, protocol: str) -> bool:
    """Whether a device may send with this protocol (`devices.fix.Protocol` values; none
    registered: any)."""
    return not device.protocols or protocol in device.protocols


def check_identified(device: Device | None, protocol: str | None = None) -> str | None:
    """Why a device that names itself by IMEI or app id (no token) must be refused."""
    if device is None:
        return "unknown_device"
    if not device.enabled:
        return "disabled_device"
    if protocol is not None and not allows(device, protocol):
        return "wrong_protocol"
    return None


FAILED_IDENTIFICATIONS = frozenset({"unknown_device", "wrong_token"})
"""Refusals that count as guessing (gateway.listeners.guard): an id or token that is wrong."""


def check_login(device: Device | None, token: str, protocol: str | None = None) -> str | None:
    """Why a login must be refused (a metric label), or None when it may proceed."""
    refused = check_identified(device, protocol)
    if refused is not None or device is None:
        return refused
    if not verify_token(token, device.token_hash):
        return "wrong_token"
    return None


def check_app_login(device: Device | None, token: str) -> str | None:
    """Why a login with the technician app's token must be refused, or None. Only the
    OwnTracks HTTP listener takes app tokens (the app speaks nothing else); the device's
    registered protocols bound its own token, not this one."""
    refused = check_identified(device)
    if refused is not None or device is None:
        return refused
    if device.app_token_hash is None or not verify_token(token, device.app_token_hash):
        return "wrong_token"
    return None


async def set_app_token(conn: DbConnection, device_id: str) -> str:
    """A new app token for the device (the previous one stops working at once: the
    registry's NOTIFY reaches the gateways); returns it, only its hash is stored."""
    token = generate_token()
    await conn.execute(
        "UPDATE devices SET app_token_hash = $2 WHERE id = $1", device_id, hash_token(token)
    )
    return token
