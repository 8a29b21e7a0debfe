"""The ring: phases of widening annuli around an OnDemand request, run from the database.

`ringschedule` holds one row per ringing request: the next phase and when it is due. Each
API process takes due rows with `FOR UPDATE SKIP LOCKED`, runs the phase and moves the row
on in the same transaction, so a phase runs exactly once across processes and restarts
(a process that dies mid-phase rolls back; the row is due again at once). The technicians
of a phase: live position (the tenant's Redis GEO sets, one per shard) in the annulus, fresh,
availability not Offline, connected to `/ws` on some API process (unless
`FIXGATE_RING_REQUIRE_CONNECTED` is off), queue below the limit, not rung before for this
request (the ring log's UNIQUE(requestid, technicianid) makes that hold across processes
too).
After the last phase: Pending with `ringendtime`. Each phase is one unit of work
(api/unit_of_work.py): its rings, its move of the lifecycle (api/machine.py: `ring`,
`ring_timeout`), its audit row and its events commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from api.machine import RINGABLE, Action, Attempt, Move, RequestStatus, RequestView, decide
from api.metrics import RING_TIMEOUTS, RINGS
from api.notify import Notifier, announce
from api.realtime.presence import connected_technicians
from api.state import ApiState
from api.store import requests, rings
from api.store.requests import load_detail
from api.unit_of_work import UnitOfWork, unit_of_work
from contracts import live
from gateway.redis_link import AnyPipeline, evalsha, run_scripted

log = logging.getLogger("fixgate.api.ring")

MAX_CANDIDATES = 500
"""Most technicians one phase looks at (nearest first): a ring notifies a handful, and a
bound keeps one phase's transaction short in a dense city."""


@dataclass(frozen=True)
class Rang:
    request_id: UUID
    tenant: str
    phase: int
    technicians: list[str]
    min_miles: float
    max_miles: float
    started_at: datetime | None
    timed_out: bool


_CANDIDATES = """
local found = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[1], ARGV[2],
  'BYRADIUS', ARGV[4], 'mi', 'ASC', 'COUNT', ARGV[6], 'WITHDIST')
local out = {}
for _, pair in ipairs(found) do
  local miles = tonumber(pair[2])
  if miles >= tonumber(ARGV[3]) and miles < tonumber(ARGV[4]) then
    local ts = redis.call('HGET', ARGV[7] .. pair[1], ARGV[8])
    if ts and tonumber(ts) >= tonumber(ARGV[5]) then
      out[#out + 1] = pair[1]
      out[#out + 1] = pair[2]
    end
  end
end
return out
"""
"""Devices of a tenant's GEO set of one shard within [ARGV[3], ARGV[4]) miles of (lon, lat),
nearest first, whose newest fix (`ts` of their hash, contracts.live) is not older than
ARGV[5], as member, miles pairs: one round trip instead of a search and a read per device.
The device hashes are read by name (ARGV[7] prefix): they share the GEO set's hash tag, so
on Redis Cluster they are in its slot (contracts.keys)."""
_CANDIDATES_SHA = hashlib.sha1(_CANDIDATES.encode()).hexdigest()


async def _candidates(
    state: ApiState, tenant: str, lat: float, lon: float, min_mi: float, max_mi: float
) -> list[str]:
    """Device ids with a fresh live position in [min_mi, max_mi) miles, nearest first: one
    script per shard, pipelined (one round trip per Redis master), merged by distance."""
    keys = state.keys
    oldest = time.time() - state.settings.online_max_age_s

    async def build(pipe: AnyPipeline) -> None:
        for shard in range(keys.shards):
            evalsha(
                pipe, _CANDIDATES_SHA, [keys.geo(tenant, shard)], lon, lat, min_mi, max_mi,
                oldest, MAX_CANDIDATES, keys.device_prefix(shard), live.TS,
            )  # fmt: skip

    found: list[tuple[float, str]] = []
    for reply in await run_scripted(state.redis, build, [_CANDIDATES]):
        pairs = cast(list[bytes | str], reply)
        for i in range(0, len(pairs), 2):
            member = pairs[i]
            found.append(
                (float(pairs[i + 1]), member.decode() if isinstance(member, bytes) else member)
            )
    found.sort()
    return [device for _, device in found[:MAX_CANDIDATES]]


def _uuids(ids: set[str]) -> list[UUID]:
    found = []
    for raw in ids:
        try:
            found.append(UUID(raw))
        except ValueError:
            continue  # not a technician id: nobody to ring
    return found


async def run_one_due(state: ApiState) -> Rang | None:
    """Run one due phase (or the timeout) if any, with its events; None when nothing is due."""
    async with unit_of_work(state) as uow:
        rang = await _run_phase(state, uow)
    if rang is None:
        return None
    if rang.technicians:
        RINGS.labels(str(rang.phase + 1)).inc(len(rang.technicians))
    if rang.timed_out:
        RING_TIMEOUTS.inc()
    return rang


async def _run_phase(state: ApiState, uow: UnitOfWork) -> Rang | None:
    """Take one due row and run its phase (or the timeout) in the unit of work."""
    conn = uow.conn
    radii = state.settings.ring_radii_miles
    due = await rings.take_due(conn)
    if due is None:
        return None
    request_id: UUID = due["requestid"]
    tenant: str = due["tenant_id"]
    phase: int = due["nextphase"]
    uow.tenant = tenant
    # FOR SHARE: an accept waits for this phase to commit, so nobody is rung after.
    view = await requests.read_view(conn, tenant, request_id, None, lock="FOR SHARE OF r")
    # A Scheduled request's first phase starts its ring; later ones need it still ringing.
    if view is None or view.status not in (RINGABLE if phase == 0 else {RequestStatus.RINGING}):
        await rings.unschedule(conn, request_id)
        return Rang(request_id, tenant, phase, [], 0, 0, None, False)
    await rings.end_open(conn, request_id)  # the previous phase's rings have run their time
    if phase >= len(radii):
        return await _time_out(uow, view, phase)
    min_mi = radii[phase - 1] if phase > 0 else 0.0
    max_mi = radii[phase]
    devices = await _candidates(state, tenant, view.lat, view.lon, min_mi, max_mi)
    connected: list[UUID] | None = None  # None: connection not required
    if state.settings.ring_require_connected and devices:
        prefix = state.settings.redis_prefix
        connected = _uuids(await connected_technicians(state.redis, prefix, tenant))
    rung = await rings.ring(
        conn, tenant, request_id, phase, (min_mi, max_mi), devices, state.settings.queue_limit,
        connected,
    )  # fmt: skip
    technicians = [str(r["technicianid"]) for r in rung]
    note = f"phase {phase + 1}: {min_mi:g}-{max_mi:g} mi, {len(technicians)} rung"
    move = decide(Attempt(Action.RING, note=note), view, None, _now())
    assert isinstance(move, Move)  # ringable, checked above
    if move.changes:  # a Scheduled request's time: it starts ringing
        await requests.apply(conn, tenant, view, move)
    await rings.advance(conn, request_id, phase + 1, state.settings.ring_phase_s)
    uow.record(request_id, move.audit)
    started = rung[0]["ringstartedat"] if rung else None
    rang = Rang(request_id, tenant, phase, technicians, min_mi, max_mi, started, False)
    if rang.technicians:
        detail = await load_detail(conn, tenant, request_id)
        assert detail is not None and started is not None  # held by this transaction
        Notifier(uow).rings(
            detail, tenant, technicians, max_mi, state.settings.ring_phase_s, started
        )
    return rang


async def _time_out(uow: UnitOfWork, view: RequestView, phase: int) -> Rang:
    """Every phase rang without an accept: Pending, for anyone of the tenant to take."""
    await rings.unschedule(uow.conn, view.id)
    decision = decide(Attempt(Action.RING_TIMEOUT), view, None, _now())
    timed_out = isinstance(decision, Move) and await requests.apply(
        uow.conn, uow.tenant, view, decision
    )
    if isinstance(decision, Move) and timed_out:
        uow.record(view.id, decision.audit)
        detail = await load_detail(uow.conn, uow.tenant, view.id)
        assert detail is not None  # held by this transaction
        announce(uow, decision, detail)
    return Rang(view.id, uow.tenant, phase, [], 0, 0, None, timed_out)


def _now() -> datetime:
    return datetime.now(UTC)


async def worker(state: ApiState) -> None:
    """Run due phases until none is due, then wait for a wake-up or the next poll."""
    while True:
        try:
            while await run_one_due(state) is not None:
                pass
        except asyncio.CancelledError:
            raise
        except Exception:  # the database or Redis away: try again at the next poll
            log.exception("ring worker")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(state.settings.ring_poll_s):
                await state.ring_wakeup.wait()
        state.ring_wakeup.clear()
