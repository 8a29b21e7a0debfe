"""The device registry as the listeners see it: an in-memory copy, refreshed.

No listener queries the database per message: lookups are dict reads. The copy is
reloaded every `refresh_interval_s`, and at once (at most once per `min_reload_interval_s`)
when a lookup misses, so a device registered a moment ago is not refused for long.

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
from pathlib import Path

import asyncpg
import msgspec

from devices.registry import Device, check_login, list_devices
from gateway.writers import DATABASE_ERRORS

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "registry.json"
"""Kept in the spool directory: the gateway's own state, one gateway per directory."""


class RegistryUnavailable(RuntimeError):
    """Neither the database nor a snapshot can say which devices exist."""


class RegistryCache:
    def __init__(self, pool: asyncpg.Pool, min_reload_interval_s: float = 1.0, snapshot: Path | None = None) -> None:
        self.pool = pool
        self.min_reload_interval_s = min_reload_interval_s
        """Bounds the reloads an unknown-device flood can cause."""
        self.snapshot = snapshot
        self.by_id: dict[str, Device] = {}
        self.by_owntracks: dict[tuple[str, str], Device] = {}
        self.from_snapshot = False
        """True while the copy came from the snapshot (the database has not answered yet)."""
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

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
        self.by_id = {d.id: d for d in devices}
        self.by_owntracks = {
            (d.owntracks_user, d.owntracks_device): d for d in devices if d.owntracks_user and d.owntracks_device
        }
        self._loaded_at = time.monotonic()

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

    async def _reload_after_miss(self) -> bool:
        if time.monotonic() - self._loaded_at < self.min_reload_interval_s:
            return False
        try:
            await self.reload()
        except DATABASE_ERRORS:
            return False  # database away: keep serving the copy we have
        return True

    async def device(self, device_id: str) -> Device | None:
        found = self.by_id.get(device_id)
        if found is None and await self._reload_after_miss():
            found = self.by_id.get(device_id)
        return found

    async def owntracks(self, user: str, device: str) -> Device | None:
        found = self.by_owntracks.get((user, device))
        if found is None and await self._reload_after_miss():
            found = self.by_owntracks.get((user, device))
        return found

    async def login(self, device_id: str, token: str) -> tuple[Device | None, str | None]:
        """The device and None, or None and why the login is refused."""
        device = await self.device(device_id)
        refused = check_login(device, token)
        return (None, refused) if refused else (device, None)

    async def run(self, refresh_interval_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), refresh_interval_s)
            except TimeoutError:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await self.reload()
