"""`TechnicianLocationUpdated` for the dispatcher console: the gateway's positions stream
mapped to technicians (device -> technician, cached from `technicianmaster`), at most one
per technician per `MIN_LOCATION_INTERVAL_S`, to `AllAdmins` of the tenant. A fix that
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
MIN_LOCATION_INTERVAL_S = 1.0
"""A console redraws a marker about once a second; faster only costs every admin socket."""
RELOAD_S = 10.0
"""How stale the device -> technician map (and the availability shown) may get."""


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
        self.loaded_at = now

    def offer(self, fixes: Iterable[Fix], hub: Hub, now: float) -> None:
        for fix in fixes:
            tech = self._by_device.get(fix.device_id)
            if tech is None or tech.tenant != fix.tenant_id or not hub.has_admins(tech.tenant):
                continue
            held = self._held.get(tech.technician_id)
            if held is None or fix.time >= held[1].time:
                self._held[tech.technician_id] = (tech, fix)
        self.flush(hub, now)

    def flush(self, hub: Hub, now: float) -> None:
        for technician_id, (tech, fix) in list(self._held.items()):
            if now - self._last_sent.get(technician_id, float("-inf")) < MIN_LOCATION_INTERVAL_S:
                continue
            del self._held[technician_id]
            self._last_sent[technician_id] = now
            data = {
                "technicianId": technician_id,
                "deviceId": fix.device_id,
                "lat": fix.lat,
                "lon": fix.lon,
                "heading": fix.heading,
                "speed": fix.speed,
                "availability": tech.availability,
                "time": fix.time.isoformat(),
            }
            at = fix.received_at.timestamp() if fix.received_at else None
            hub.to_admins(tech.tenant, message(EVENT, None, json.dumps(data)), at)
