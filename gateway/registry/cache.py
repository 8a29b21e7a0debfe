"""The device registry as the listeners see it: an in-memory copy, kept current.

No listener queries the database per message: lookups are dict reads. Every write to the
`devices` table notifies the channel `fixgate_devices` (a trigger, migration 0009) with
the device's id; the cache LISTENs on its own connection and re-reads the notified devices
(coalesced: one query per burst), so `fixgate device add`, `disable` and `enable` take
effect in every running gateway within milliseconds. A lookup that misses also reads that
one device from the database (a point query, at most `max_miss_lookups_per_s` a second, so
an unknown-device flood cannot hammer it), which covers a device connecting before its
notification arrived. The whole copy is still reloaded every `refresh_interval_s`: the
safety net for a notification lost while the LISTEN connection was down.

Each load that changes the copy is also written to a snapshot file (token hashes only,
mode 0600). A gateway (re)started while the database is away loads the snapshot instead,
so its devices are served and their fixes spooled rather than the gateway not starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec

from gateway.registry.store import Device, check_login, get_devices, list_devices
from gateway.retry import DATABASE_ERRORS, RETRY_BACKOFF_S, backoff

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "registry.json"
"""Kept in the spool directory: the gateway's own state, one gateway per directory."""
NOTIFY_CHANNEL = "fixgate_devices"
"""The channel the `devices` trigger notifies, payload the device id (migration 0009)."""
MAX_MISS_LOOKUPS_PER_S = 100.0
"""Point queries for devices not in the copy: enough for a fleet registered by a script
and connecting at once, few enough that a flood of unknown ids costs the database little."""
COALESCE_NOTIFICATIONS_S = 0.005
"""Notifications arriving this close together are read back in one query."""

K = TypeVar("K", bound=Hashable)
Changed = Callable[[str, Device | None], None]
"""Called with a device id and its new entry (None: removed) after the copy changed."""


class RegistryUnavailable(RuntimeError):
    """Neither the database nor a snapshot can say which devices exist."""


class RegistryCache:
    def __init__(self, pool: asyncpg.Pool, snapshot: Path | None = None) -> None:
        self.pool = pool
        self.snapshot = snapshot
        self.by_id: dict[str, Device] = {}
        self.by_owntracks: dict[tuple[str, str], Device] = {}
        self.by_imei: dict[str, Device] = {}
        self.by_traccar_id: dict[str, Device] = {}
        self.from_snapshot = False
        """True while the copy came from the snapshot (the database has not answered yet)."""
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self.on_change: list[Changed] = []
        """Listeners act on a device disabled or removed (TCP closes its connections)."""
        self.listening = False
        """True while the LISTEN connection is up (notifications arrive)."""
        self._notified: set[str] = set()
        self._notify_kick = asyncio.Event()
        self._miss_budget = MAX_MISS_LOOKUPS_PER_S
        self._miss_budget_at = time.monotonic()

    async def start(self, timeout_s: float = 5.0) -> None:
        """The first load: from the database, else (it is away) from the snapshot."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.reload()
            return
        except DATABASE_ERRORS as e:
            error = e
        devices = self._read_snapshot()
        if devices is None:
            raise RegistryUnavailable(
                f"the database is not answering ({type(error).__name__}: {error}) and there is no registry snapshot"
                f" at {self.snapshot}: the gateway needs one of them to know its devices"
            ) from error
        self._install(devices)
        self.from_snapshot = True
        log.warning(
            "registry: the database is not answering (%s); serving %d devices from the snapshot %s until it does",
            type(error).__name__, len(devices), self.snapshot,
        )  # fmt: skip

    async def reload(self) -> None:
        async with self._lock:
            async with self.pool.acquire() as conn:
                devices = await list_devices(conn)
            first, before = not self._loaded_at, self.by_id
            self._install(devices)
            changed = first or self.from_snapshot or self.by_id != before
            if self.from_snapshot:
                self.from_snapshot = False
                log.warning("registry: loaded from the database again (%d devices)", len(devices))
            if changed:
                await asyncio.to_thread(self._write_snapshot, devices)

    def _install(self, devices: list[Device]) -> None:
        before = self.by_id
        self.by_id = {d.id: d for d in devices}
        self.by_owntracks, self.by_imei, self.by_traccar_id = {}, {}, {}
        for device in devices:
            self._index(device)
        self._loaded_at = time.monotonic()
        for device_id in before.keys() - self.by_id.keys():
            self._changed(device_id, None)
        for device in devices:
            if before.get(device.id, device) != device:
                self._changed(device.id, device)

    def _update(self, device_id: str, device: Device | None) -> None:
        """One device's entry, as the database has it now."""
        old = self.by_id.get(device_id)
        if old == device:
            return
        if old is not None:
            self._unindex(old)
        if device is None:
            self.by_id.pop(device_id, None)
        else:
            self.by_id[device_id] = device
            self._index(device)
        self._changed(device_id, device)

    def _index(self, device: Device) -> None:
        """Enter the device under the other names it may arrive by."""
        if device.owntracks_user and device.owntracks_device:
            self.by_owntracks[(device.owntracks_user, device.owntracks_device)] = device
        if device.imei:
            self.by_imei[device.imei] = device
        if device.traccar_id:
            self.by_traccar_id[device.traccar_id] = device

    def _unindex(self, device: Device) -> None:
        # Only the entries that still point at this device: a name moved to another
        # device (updated first) keeps its new owner.
        if device.owntracks_user and device.owntracks_device:
            key = (device.owntracks_user, device.owntracks_device)
            if self.by_owntracks.get(key, device).id == device.id:
                self.by_owntracks.pop(key, None)
        if device.imei and self.by_imei.get(device.imei, device).id == device.id:
            self.by_imei.pop(device.imei, None)
        if device.traccar_id and self.by_traccar_id.get(device.traccar_id, device).id == device.id:
            self.by_traccar_id.pop(device.traccar_id, None)

    def _changed(self, device_id: str, device: Device | None) -> None:
        for changed in self.on_change:
            changed(device_id, device)

    def _write_snapshot(self, devices: list[Device]) -> None:
        if self.snapshot is None:
            return
        try:
            self.snapshot.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.snapshot.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.encode(devices))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.snapshot)  # whole or not at all
        except OSError as e:
            log.error("registry: cannot write the snapshot %s (%s)", self.snapshot, e)

    def _read_snapshot(self) -> list[Device] | None:
        if self.snapshot is None:
            return None
        try:
            return msgspec.json.decode(self.snapshot.read_bytes(), type=list[Device])
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError) as e:
            log.error("registry: cannot read the snapshot %s (%s)", self.snapshot, e)
            return None

    def _may_look_up(self) -> bool:
        """A token bucket of `MAX_MISS_LOOKUPS_PER_S` point queries a second."""
        now = time.monotonic()
        self._miss_budget = min(
            MAX_MISS_LOOKUPS_PER_S,
            self._miss_budget + (now - self._miss_budget_at) * MAX_MISS_LOOKUPS_PER_S,
        )
        self._miss_budget_at = now
        if self._miss_budget < 1.0:
            return False
        self._miss_budget -= 1.0
        return True

    async def _look_up(
        self,
        device_id: str | None = None,
        owntracks: tuple[str, str] | None = None,
        imei: str | None = None,
        traccar_id: str | None = None,
    ) -> None:
        if not self._may_look_up():
            return
        try:
            async with self.pool.acquire() as conn:
                found = await get_devices(
                    conn,
                    ids=[device_id] if device_id else [],
                    owntracks=owntracks,
                    imei=imei,
                    traccar_id=traccar_id,
                )
        except DATABASE_ERRORS:
            return  # database away: keep serving the copy we have
        for device in found:
            self._update(device.id, device)

    async def _find(self, index: dict[K, Device], key: K, **look_up: Any) -> Device | None:
        """A dict read; on a miss, one rate-limited point query (`_look_up`), then again."""
        found = index.get(key)
        if found is None:
            await self._look_up(**look_up)
            found = index.get(key)
        return found

    async def device(self, device_id: str) -> Device | None:
        return await self._find(self.by_id, device_id, device_id=device_id)

    async def owntracks(self, user: str, device: str) -> Device | None:
        return await self._find(self.by_owntracks, (user, device), owntracks=(user, device))

    async def imei(self, imei: str) -> Device | None:
        """The device a binary tracker (Teltonika, GT06) names by its IMEI."""
        return await self._find(self.by_imei, imei, imei=imei)

    async def traccar_id(self, traccar_id: str) -> Device | None:
        """The device the Traccar Client app names by its own id."""
        return await self._find(self.by_traccar_id, traccar_id, traccar_id=traccar_id)

    async def login(self, device_id: str, token: str) -> tuple[Device | None, str | None]:
        """The device and None, or None and why the login is refused."""
        device = await self.device(device_id)
        refused = check_login(device, token)
        return (None, refused) if refused else (device, None)

    async def run(self, refresh_interval_s: float, stop: asyncio.Event) -> None:
        """The periodic full reload (the safety net)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), refresh_interval_s)
            except TimeoutError:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self.reload()

    async def listen(self, database_url: str, stop: asyncio.Event) -> None:
        """LISTEN for registry changes on a connection of its own, reconnecting while the
        database is away; after each (re)connect the whole copy is reloaded once, since
        notifications sent meanwhile are lost."""
        attempt = 0
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(database_url, timeout=5)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                self.listening = True
                if attempt:
                    await self.reload()
                attempt = 0
                await self._apply_notifications(conn, stop)
            except DATABASE_ERRORS as e:
                if attempt == 0:
                    log.warning(
                        "registry: not listening for changes (%s: %s); retrying",
                        type(e).__name__,
                        e,
                    )
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(*DATABASE_ERRORS):
                        await asyncio.wait_for(conn.close(), 2)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff(RETRY_BACKOFF_S, attempt))
            attempt += 1

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._notified.add(str(payload))
        self._notify_kick.set()

    async def _apply_notifications(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self._notified:
                kick, stopped = (
                    asyncio.ensure_future(self._notify_kick.wait()),
                    asyncio.ensure_future(stop.wait()),
                )
                try:
                    # Wakes now and then to notice a dead connection, and at once on stop.
                    await asyncio.wait(
                        (kick, stopped), timeout=5, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    kick.cancel()
                    stopped.cancel()
                self._notify_kick.clear()
                if conn.is_closed():
                    raise ConnectionResetError("the LISTEN connection closed")
                continue
            await asyncio.sleep(COALESCE_NOTIFICATIONS_S)
            ids, self._notified = self._notified, set()
            found = {d.id: d for d in await get_devices(conn, ids=sorted(ids))}
            for device_id in ids:
                self._update(device_id, found.get(device_id))
