"""The device registry as the listeners see it: an in-memory copy, refreshed.

No listener queries the database per message: lookups are dict reads. The copy is
reloaded every `refresh_interval_s`, and at once (at most once per `min_reload_interval_s`)
when a lookup misses, so a device registered a moment ago is not refused for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from devices.registry import Device, check_login, list_devices


class RegistryCache:
    def __init__(self, pool: asyncpg.Pool, min_reload_interval_s: float = 1.0) -> None:
        self.pool = pool
        self.min_reload_interval_s = min_reload_interval_s
        """Bounds the reloads an unknown-device flood can cause."""
        self.by_id: dict[str, Device] = {}
        self.by_owntracks: dict[tuple[str, str], Device] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def reload(self) -> None:
        async with self._lock:
            async with self.pool.acquire() as conn:
                devices = await list_devices(conn)
            self.by_id = {d.id: d for d in devices}
            self.by_owntracks = {
                (d.owntracks_user, d.owntracks_device): d for d in devices if d.owntracks_user and d.owntracks_device
            }
            self._loaded_at = time.monotonic()

    async def _reload_after_miss(self) -> bool:
        if time.monotonic() - self._loaded_at < self.min_reload_interval_s:
            return False
        try:
            await self.reload()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
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
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                    await self.reload()
