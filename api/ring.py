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
After the last phase: Pending with `ringendtime`. A phase's events (the rings, the timeout)
are written to the outbox in the phase's transaction and relayed after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from uuid import UUID

import asyncpg

from api import audit
from api.metrics import RING_TIMEOUTS, RINGS
from api.notify import Notifier
from api.outbox import OutboxWriter
from api.realtime.presence import connected_technicians
from api.state import ApiState
from api.store.requests import QUEUED_STATES, load_detail
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
    async with state.tx() as conn:
        rang = await _run_phase(state, conn)
        if rang is not None:
            await _announce(state, conn, rang)
    if rang is None:
        return None
    if rang.technicians:
        RINGS.labels(str(rang.phase + 1)).inc(len(rang.technicians))
    return rang


async def _run_phase(state: ApiState, conn: asyncpg.Connection) -> Rang | None:
    """Take one due row and run its phase (or the timeout) in the caller's transaction."""
    radii = state.settings.ring_radii_miles
    # Most urgent first (call priority), then the longest due.
    due = await conn.fetchrow(
        "SELECT s.requestid, s.tenant_id, s.nextphase FROM ringschedule s"
        " JOIN servicerequests r ON r.requestid = s.requestid WHERE s.dueat <= now()"
        " ORDER BY r.priority DESC, s.dueat LIMIT 1 FOR UPDATE OF s SKIP LOCKED"
    )
    if due is None:
        return None
    request_id: UUID = due["requestid"]
    tenant: str = due["tenant_id"]
    phase: int = due["nextphase"]
    # FOR SHARE: an accept waits for this phase to commit, so nobody is rung after.
    req = await conn.fetchrow(
        "SELECT requeststatus, latitude::float8 AS lat, longitude::float8 AS lon"
        " FROM servicerequests WHERE requestid = $1 FOR SHARE",
        request_id,
    )
    ringable = ("Pending", "Ringing") if phase == 0 else ("Ringing",)
    if req is None or req["requeststatus"] not in ringable:
        await conn.execute("DELETE FROM ringschedule WHERE requestid = $1", request_id)
        return Rang(request_id, tenant, phase, [], 0, 0, None, False)
    # The previous phase's rings have run their time.
    await conn.execute(
        "UPDATE technicianringlog SET ringendedat = now(), updatedat = now()"
        " WHERE requestid = $1 AND ringendedat IS NULL",
        request_id,
    )
    if phase >= len(radii):
        return await _time_out(conn, request_id, tenant, phase)
    min_mi = radii[phase - 1] if phase > 0 else 0.0
    max_mi = radii[phase]
    devices = await _candidates(state, tenant, req["lat"], req["lon"], min_mi, max_mi)
    connected: list[UUID] | None = None  # None: connection not required
    if state.settings.ring_require_connected and devices:
        prefix = state.settings.redis_prefix
        connected = _uuids(await connected_technicians(state.redis, prefix, tenant))
    rung = await conn.fetch(
        """
        WITH rung AS (
        INSERT INTO technicianringlog (tenant_id, requestid, technicianid, phase,
                                       ringminradius, ringmaxradius)
        SELECT $1, $2, t.technicianid, $3, $4, $5
        FROM technicianmaster t
        WHERE t.tenant_id = $1 AND t.device_id = ANY($6::text[]) AND t.enabled
          AND t.availabilitystatus <> 'Offline'
          AND ($9::uuid[] IS NULL OR t.technicianid = ANY($9::uuid[]))
          AND (SELECT count(*) FROM servicerequests q
               WHERE q.tenant_id = $1 AND q.currenttechnicianid = t.technicianid
                 AND q.requeststatus = ANY($7::text[])) < $8
        ON CONFLICT (requestid, technicianid) DO NOTHING
        RETURNING technicianid, ringstartedat
        ), notified AS (
        INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action)
        SELECT $1, $2, technicianid, 'NOTIFIED' FROM rung
        )
        SELECT technicianid, ringstartedat FROM rung
        """,
        tenant,
        request_id,
        phase,
        round(min_mi),
        round(max_mi),
        devices,
        list(QUEUED_STATES),
        state.settings.queue_limit,
        connected,
    )
    if phase == 0 and req["requeststatus"] == "Pending":  # a Scheduled request's time
        await conn.execute(
            "UPDATE servicerequests SET requeststatus = 'Ringing', ringstarttime = now(),"
            " version = version + 1, updatedat = now() WHERE requestid = $1",
            request_id,
        )
    await conn.execute(
        "UPDATE ringschedule SET nextphase = $2, dueat = now() + make_interval(secs => $3)"
        " WHERE requestid = $1",
        request_id,
        phase + 1,
        state.settings.ring_phase_s,
    )
    technicians = [str(r["technicianid"]) for r in rung]
    await audit.record(
        conn,
        tenant=tenant,
        request_id=request_id,
        action="ring",
        actor=None,
        old_state=req["requeststatus"],
        new_state="Ringing",
        detail=f"phase {phase + 1}: {min_mi:g}-{max_mi:g} mi, {len(technicians)} rung",
    )
    started = rung[0]["ringstartedat"] if rung else None
    return Rang(request_id, tenant, phase, technicians, min_mi, max_mi, started, False)


async def _time_out(conn: asyncpg.Connection, request_id: UUID, tenant: str, phase: int) -> Rang:
    await conn.execute("DELETE FROM ringschedule WHERE requestid = $1", request_id)
    status = await conn.execute(
        "UPDATE servicerequests SET requeststatus = 'Pending', ringendtime = now(),"
        " version = version + 1, updatedat = now()"
        " WHERE requestid = $1 AND requeststatus = 'Ringing'",
        request_id,
    )
    timed_out = status == "UPDATE 1"
    if timed_out:
        await audit.record(
            conn,
            tenant=tenant,
            request_id=request_id,
            action="ring_timeout",
            actor=None,
            old_state="Ringing",
            new_state="Pending",
        )
        RING_TIMEOUTS.inc()
    return Rang(request_id, tenant, phase, [], 0, 0, None, timed_out)


async def _announce(state: ApiState, conn: asyncpg.Connection, rang: Rang) -> None:
    """The phase's events, into the outbox of its transaction."""
    if not rang.technicians and not rang.timed_out:
        return
    detail = await load_detail(conn, rang.tenant, rang.request_id)
    if detail is None:
        return
    notifier = Notifier(OutboxWriter(conn))
    if rang.timed_out:
        await notifier.status_changed(detail, rang.tenant, [])
        return
    assert rang.started_at is not None
    await notifier.rings(
        detail,
        rang.tenant,
        list(rang.technicians),
        rang.max_miles,
        state.settings.ring_phase_s,
        rang.started_at,
    )


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
