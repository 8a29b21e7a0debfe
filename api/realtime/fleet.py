"""`TechnicianLocationUpdated` for the dispatcher console: the gateway's positions stream
mapped to technicians (device -> technician, cached from `technicianmaster`), at most one
per technician per `MIN_LOCATION_INTERVAL_S`, to `AllAdmins` of the tenant (several due at
once in one message). A fix that
comes too soon is held and sent when the interval is up (newest wins), so the console
ends on the latest position."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import asyncpg

from api.realtime.hub import Hub
from api.realtime.protocol import message
from devices.fix import Fix

log = logging.getLogger("fixgate.api.realtime.fleet")

EVENT = "TechnicianLocationUpdated"
BATCH_EVENT = "TechnicianLocationsUpdated"
"""Several technicians' moves due at once, `{"technicians": [TechnicianLocationUpdated's
data, ...]}`."""
MIN_LOCATION_INTERVAL_S = 0.5
"""A console redraws a marker about once a second; faster only costs every admin socket.
Half a 1 Hz tracker's period, so its fixes pass as they come even with half a second of
network or scheduling jitter: at exactly 1 s each of them arrived a little before its
technician's second was up and was held for most of a second (the console showed
positions about a second old). A faster device is held to two a second; several due at
once go in one message anyway."""
RELOAD_S = 10.0
"""How stale the device -> technician map (and the availability shown) may get."""
RELOAD_UNKNOWN_S = 1.0
"""A fix of a device new to the map reloads it sooner, at most this often: a technician
just given a device shows up within a second. Devices the reload still does not know (a
van without technician) are left alone until the periodic reload."""
MAX_HELD_UNKNOWN = 10_000
"""Newest fixes kept of devices waiting for a reload: a fleet's worth, then dropped."""


@dataclass(frozen=True, slots=True)
class Technician:
    technician_id: str
    tenant: str
    availability: str


class Fleet:
    def __init__(self) -> None:
        self._by_device: dict[str, Technician] = {}
        self._last_sent: dict[str, float] = {}
        self._held: dict[str, tuple[Technician, Fix]] = {}
        self.loaded_at = float("-inf")
        self._periodic_at = float("-inf")
        self._waiting: dict[str, Fix] = {}  # device not in the map yet -> newest fix
        self._unmapped: set[str] = set()  # not a technician's device at the last reload

    def due(self, now: float) -> bool:
        age = now - self.loaded_at
        return now - self._periodic_at > RELOAD_S or (
            bool(self._waiting) and age > RELOAD_UNKNOWN_S
        )

    async def reload(self, pool: asyncpg.Pool, now: float) -> None:
        async with pool.acquire() as conn:
            rows = await cast(asyncpg.Connection, conn).fetch(
                "SELECT device_id, technicianid, tenant_id, availabilitystatus"
                " FROM technicianmaster WHERE device_id IS NOT NULL AND enabled"
            )
        self._by_device = {
            r["device_id"]: Technician(
                str(r["technicianid"]), r["tenant_id"], r["availabilitystatus"]
            )
            for r in rows
        }
        if now - self._periodic_at > RELOAD_S:
            self._periodic_at = now
            self._unmapped.clear()
        self.loaded_at = now

    def retry_waiting(self, hub: Hub, now: float) -> None:
        """After a reload: offer the waiting fixes again; devices still unknown are not
        technicians' (until the periodic reload)."""
        waiting, self._waiting = self._waiting, {}
        self._unmapped.update(d for d in waiting if d not in self._by_device)
        self.offer([f for d, f in waiting.items() if d in self._by_device], hub, now)

    def offer(self, fixes: Iterable[Fix], hub: Hub, now: float) -> None:
        """Hold each technician's newest fix and send what is due."""
        for fix in fixes:
            tech = self._by_device.get(fix.device_id)
            if tech is None:
                if fix.device_id not in self._unmapped and (
                    fix.device_id in self._waiting or len(self._waiting) < MAX_HELD_UNKNOWN
                ):
                    self._waiting[fix.device_id] = fix
                continue
            if tech.tenant != fix.tenant_id or not hub.has_admins(tech.tenant):
                continue
            held = self._held.get(tech.technician_id)
            if held is None or fix.time >= held[1].time:
                self._held[tech.technician_id] = (tech, fix)
        self.flush(hub, now)

    def flush(self, hub: Hub, now: float) -> None:
        """Send what is due: one technician's move as `TechnicianLocationUpdated`, several
        of a tenant at once as one `TechnicianLocationsUpdated` (a thousand moves a second
        are a few messages, not a thousand, for the API and for every console)."""
        due: dict[str, list[dict[str, object]]] = {}
        oldest: dict[str, float | None] = {}
        for technician_id, (tech, fix) in list(self._held.items()):
            if now - self._last_sent.get(technician_id, float("-inf")) < MIN_LOCATION_INTERVAL_S:
                continue
            del self._held[technician_id]
            self._last_sent[technician_id] = now
            due.setdefault(tech.tenant, []).append({
                "technicianId": technician_id,
                "deviceId": fix.device_id,
                "lat": fix.lat,
                "lon": fix.lon,
                "heading": fix.heading,
                "speed": fix.speed,
                "availability": tech.availability,
                "time": fix.time.isoformat(),
            })  # fmt: skip
            at = fix.received_at.timestamp() if fix.received_at else None
            if at is not None and (oldest.get(tech.tenant) or at) >= at:
                oldest[tech.tenant] = at
        for tenant, moves in due.items():
            if len(moves) == 1:
                text = message(EVENT, None, json.dumps(moves[0]))
            else:
                text = message(BATCH_EVENT, None, json.dumps({"technicians": moves}))
            hub.to_admins(tenant, text, oldest.get(tenant))
