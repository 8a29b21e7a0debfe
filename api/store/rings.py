"""The ring in the database: its schedule (`ringschedule`, one row per ringing request),
the ring log (who was rung when, `technicianringlog`), the technicians' engagement with a
request (`technicianengagementdetails`), and the two statements of the race a ring starts:
the accept and the reject."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

from api.machine import RINGABLE, Move, RequestStatus, RequestView
from api.store.outbox import AUDIT_COLUMNS, audit_arrays, committed_rows, event_arrays
from api.store.requests import QUEUED_STATES, states

if TYPE_CHECKING:
    from api.unit_of_work import UnitOfWork

RINGABLE_STATES = states(RINGABLE)


async def end_open(conn: asyncpg.Connection, request_id: UUID) -> list[UUID]:
    """End every open ring of a request (its phase is over, or the request is taken or
    gone); the technicians whose ring ended."""
    rows = await conn.fetch(
        "UPDATE technicianringlog SET ringendedat = now(), updatedat = now()"
        " WHERE requestid = $1 AND ringendedat IS NULL RETURNING technicianid",
        request_id,
    )
    return [r["technicianid"] for r in rows]


async def unschedule(conn: asyncpg.Connection, request_id: UUID) -> None:
    """The request rings no more. An action takes this row before the request's (a ring
    phase holds them in that order: the other way round, the two could deadlock)."""
    await conn.execute("DELETE FROM ringschedule WHERE requestid = $1", request_id)


async def schedule(
    conn: asyncpg.Connection, tenant: str, request_id: UUID, due_at: datetime | None
) -> None:
    """The request's ring: its first phase due now (None) or at `due_at`."""
    await conn.execute(
        "INSERT INTO ringschedule (requestid, tenant_id, dueat)"
        " VALUES ($1, $2, coalesce($3::timestamptz, now()))",
        request_id,
        tenant,
        due_at,
    )


async def engage(
    conn: asyncpg.Connection,
    tenant: str,
    request_id: UUID,
    technician_id: UUID,
    action: str,
    reason: str | None = None,
) -> None:
    """A technician's engagement with a request (ACCEPTED, REJECTED, CANCELED, NOTIFIED)."""
    await conn.execute(
        "INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action,"
        " reason) VALUES ($1, $2, $3, $4, $5)",
        tenant,
        request_id,
        technician_id,
        action,
        reason,
    )


async def take_due(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """One due phase, locked for this transaction (skipping those another process runs):
    the most urgent request first (call priority), then the longest due."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT s.requestid, s.tenant_id, s.nextphase FROM ringschedule s"
        " JOIN servicerequests r ON r.requestid = s.requestid WHERE s.dueat <= now()"
        " ORDER BY r.priority DESC, s.dueat LIMIT 1 FOR UPDATE OF s SKIP LOCKED"
    )
    return row


_RING = """
WITH rung AS (
INSERT INTO technicianringlog (tenant_id, requestid, technicianid, phase,
                               ringminradius, ringmaxradius)
SELECT $1, $2, t.technicianid, $3, $4, $5
FROM technicianmaster t
WHERE t.tenant_id = $1 AND t.device_id = ANY($6::text[]) AND t.enabled
  AND t.availabilitystatus <> 'Offline'
  AND ($9::uuid[] IS NULL OR t.technicianid = ANY($9::uuid[]))
  AND {queue_count} < $8
ON CONFLICT (requestid, technicianid) DO NOTHING
RETURNING technicianid, ringstartedat
), notified AS (
INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action)
SELECT $1, $2, technicianid, 'NOTIFIED' FROM rung
)
SELECT technicianid, ringstartedat FROM rung
""".format(
    queue_count="(SELECT count(*) FROM servicerequests q WHERE q.tenant_id = $1"
    " AND q.currenttechnicianid = t.technicianid AND q.requeststatus = ANY($7::text[]))"
)
"""Ring the technicians of these devices who may take it: enabled, not Offline, connected
(when `$9` names who is), room in their queue, not rung for it before (the ring log's
UNIQUE(requestid, technicianid) makes that hold across processes)."""


async def ring(
    conn: asyncpg.Connection,
    tenant: str,
    request_id: UUID,
    phase: int,
    radii_miles: tuple[float, float],
    devices: list[str],
    queue_limit: int,
    connected: list[UUID] | None,
) -> list[asyncpg.Record]:
    """One phase's rings (technicianid, ringstartedat), nearest first as `devices` are."""
    rows = await conn.fetch(
        _RING, tenant, request_id, phase, round(radii_miles[0]), round(radii_miles[1]),
        devices, QUEUED_STATES, queue_limit, connected,
    )  # fmt: skip
    return list(rows)


async def advance(conn: asyncpg.Connection, request_id: UUID, phase: int, after_s: float) -> None:
    """The next phase, due after this one's length."""
    await conn.execute(
        "UPDATE ringschedule SET nextphase = $2, dueat = now() + make_interval(secs => $3)"
        " WHERE requestid = $1",
        request_id,
        phase,
        after_s,
    )


# ---- the race a ring starts ------------------------------------------------------------------

_REJECT = f"""
WITH still AS (
    SELECT 1 FROM servicerequests WHERE requestid = $2 AND requeststatus = ANY($5::text[])
), rejected AS (
    INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action, reason)
    SELECT $1, $2, $3, 'REJECTED', $4 FROM still
), ended AS (
    UPDATE technicianringlog SET ringendedat = now(), updatedat = now()
    WHERE requestid = $2 AND technicianid = $3 AND ringendedat IS NULL
      AND EXISTS (SELECT FROM still)
), moved AS (
    UPDATE ringschedule SET dueat = now()
    WHERE requestid = $2 AND $6::text = 'Ringing' AND EXISTS (SELECT FROM still)
      AND NOT EXISTS (SELECT FROM technicianringlog WHERE requestid = $2
                      AND ringendedat IS NULL AND technicianid <> $3)
), audited AS (
    INSERT INTO dispatchaudit ({AUDIT_COLUMNS})
    SELECT a.* FROM unnest($7::text[], $8::uuid[], $9::text[], $10::text[], $11::text[],
                           $12::text[], $13::text[], $14::text[], $15::text[]) a, still
)
SELECT EXISTS (SELECT FROM still)
"""
"""The reject's writes in one statement (committed on its own: no transaction around it),
while the request is still ringing or pending: the REJECTED row, the technician's ring
ended, the unit of work's audit row, and when everyone rung so far has said no (no other
ring of the request still open), the ring moved on now instead of at its phase's end."""


async def reject(
    conn: asyncpg.Connection, uow: UnitOfWork, request: RequestView, technician_id: UUID
) -> bool:
    """The reject, in one statement that drains the unit of work's audit row; False when
    the request moved on before it ran."""
    reason = uow.audits[-1].detail if uow.audits else None
    done: bool = await conn.fetchval(
        _REJECT, uow.tenant, request.id, technician_id, reason, RINGABLE_STATES,
        request.status.value, *audit_arrays(uow.audits),
    )  # fmt: skip
    return done


async def accept(
    conn: asyncpg.Connection,
    uow: UnitOfWork,
    request: RequestView,
    move: Move,
    *,
    queue_limit: int,
    rung_event: int | None,
    technician_group: str,
) -> asyncpg.Record:
    """The accept as `move` says, in one statement that commits on its own
    (`dispatch_accept`, migrations/0014): the technician's row locked, their queue counted,
    the request updated under its version, the rings ended, the audit row and the unit of
    work's events written. The row: outcome (`won`, `full`, `moved`), queue length, the
    request's state and version (fresh when moved), and when won the outbox rows' seqs,
    their groups (the technicians whose ring it ended added to event `rung_event`) and
    their time."""
    changes = move.changes
    row = await conn.fetchrow(
        "SELECT * FROM dispatch_accept($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
        " $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
        uow.tenant,
        request.id,
        changes["currenttechnicianid"],
        request.version,
        changes["queueposition"] - 1,
        queue_limit,
        changes["assignedat"],
        changes["ringendtime"],
        QUEUED_STATES,
        RequestStatus.ASSIGNED.value,
        *audit_arrays(uow.audits),
        *event_arrays(uow.events),
        rung_event + 1 if rung_event is not None else 0,
        technician_group,
        RINGABLE_STATES,
    )
    assert row is not None  # the function answers one row
    return row


def accepted_rows(uow: UnitOfWork, won: asyncpg.Record) -> list[dict[str, Any]]:
    """The outbox rows a won accept committed, as the relay puts them on the stream."""
    return committed_rows(uow.events, won["seqs"], won["created"], groups=won["groups"])
