"""Technicians as the lifecycle and the dispatcher see them: the one an action is for
(availability, queue, the job under way), their availability changes, their job counts and
the suggestions for a request, each in one statement."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from api.machine import AvailabilityStatus, TechnicianChange, TechnicianView
from api.store.requests import ACTIVE_STATES, QUEUED_STATES

QUEUE_COUNT = (
    "(SELECT count(*) FROM servicerequests q WHERE q.tenant_id = t.tenant_id"
    " AND q.currenttechnicianid = t.technicianid AND q.requeststatus = ANY($3::text[]))"
)
"""How many requests are in technician `t`'s queue ($3: the queued states)."""

_VIEW = f"""
SELECT t.availabilitystatus, {QUEUE_COUNT} AS queued,
       (SELECT q.requestnumber FROM servicerequests q
        WHERE q.tenant_id = t.tenant_id AND q.currenttechnicianid = t.technicianid
          AND q.requeststatus = ANY($4::text[]) AND q.requestid <> $5 LIMIT 1) AS busy
FROM technicianmaster t
WHERE t.technicianid = $1 AND t.tenant_id = $2 AND t.enabled
"""


def view_of(technician_id: UUID, row: asyncpg.Record) -> TechnicianView:
    return TechnicianView(
        technician_id,
        AvailabilityStatus(row["availabilitystatus"]),
        int(row["queued"]),
        row["busy"],
    )


async def lock(conn: asyncpg.Connection, tenant: str, technician_id: UUID) -> bool:
    """Lock the enabled technician's row for this transaction: their own assignments wait
    for each other, so two cannot both take the last place in the queue. NO KEY UPDATE:
    it does not wait for the ring phases of other requests, whose ring-log rows hold KEY
    SHARE locks on the technician (their foreign key). False: no such technician."""
    found: bool | None = await conn.fetchval(
        "SELECT true FROM technicianmaster WHERE technicianid = $1 AND tenant_id = $2"
        " AND enabled FOR NO KEY UPDATE",
        technician_id,
        tenant,
    )
    return bool(found)


async def view(
    conn: asyncpg.Connection, tenant: str, technician_id: UUID, *, besides: UUID | None = None
) -> TechnicianView | None:
    """The enabled technician an action is for: availability, queue length, and another
    request of theirs under way (not `besides`)."""
    row = await conn.fetchrow(
        _VIEW, technician_id, tenant, QUEUED_STATES, ACTIVE_STATES, besides or technician_id
    )
    return view_of(technician_id, row) if row is not None else None


async def change(conn: asyncpg.Connection, technician_id: UUID, move: TechnicianChange) -> None:
    """A technician's availability as a move says (only from the states it names)."""
    only_from = sorted(s.value for s in move.only_from)
    await conn.execute(
        "UPDATE technicianmaster SET availabilitystatus = $2, updatedat = now(),"
        " version = version + 1"
        " WHERE technicianid = $1 AND (cardinality($3::text[]) = 0"
        "   OR availabilitystatus = ANY($3::text[]))",
        technician_id,
        move.to.value,
        only_from,
    )


async def device_of(conn: asyncpg.Connection, technician_id: UUID) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT device_id FROM technicianmaster WHERE technicianid = $1", technician_id
    )
    return found


JOB_COUNTS = """
count(*) FILTER (WHERE q.requeststatus = 'Completed'
    AND q.completedat >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
    AS completed,
count(*) FILTER (WHERE q.requeststatus = ANY({queued}::text[])) AS queued
"""
"""A technician's jobs completed today (the UTC day) and queued now, over their requests
`q`; `{queued}`: the parameter holding the queued states."""


async def job_counts(conn: asyncpg.Connection, tenant: str, technician_id: UUID) -> tuple[int, int]:
    """(completed today, queued now) of a technician."""
    row = await conn.fetchrow(
        f"SELECT {JOB_COUNTS.format(queued='$3')} FROM servicerequests q"
        " WHERE q.tenant_id = $1 AND q.currenttechnicianid = $2",
        tenant,
        technician_id,
        QUEUED_STATES,
    )
    assert row is not None  # an aggregate always answers one row
    return int(row["completed"]), int(row["queued"])


TECHNICIAN_COLUMNS = """
t.technicianid, t.userid AS t_userid, t.techniciancode, t.availabilitystatus,
t.firstname AS t_firstname, t.lastname AS t_lastname, t.email AS t_email,
t.phonenumber AS t_phonenumber, t.profileimageurl AS t_profileimageurl,
t.device_id, t.vanid AS t_vanid, t.enabled AS t_enabled
"""
"""A technician as `api.store.requests.technician_info` reads one."""


async def suggestions(
    conn: asyncpg.Connection, tenant: str, keyword: str | None, limit: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    """(how many match, one page of them with their job counts): the available first, in
    one statement for every candidate."""
    args: list[Any] = [tenant, QUEUED_STATES]
    where = "t.tenant_id = $1 AND t.enabled"
    if keyword:
        args.append(f"%{keyword}%")
        n = len(args)
        where += (
            f" AND (t.techniciancode ILIKE ${n} OR t.firstname ILIKE ${n}"
            f" OR t.lastname ILIKE ${n} OR t.email ILIKE ${n})"
        )
    rows = await conn.fetch(
        f"""
        SELECT {TECHNICIAN_COLUMNS}, c.completed, c.queued, count(*) OVER () AS total
        FROM technicianmaster t
        CROSS JOIN LATERAL (
            SELECT {JOB_COUNTS.format(queued="$2")} FROM servicerequests q
            WHERE q.tenant_id = t.tenant_id AND q.currenttechnicianid = t.technicianid
        ) c
        WHERE {where}
        ORDER BY t.availabilitystatus = 'Available' DESC, t.techniciancode
        LIMIT {int(limit)} OFFSET {int(offset)}
        """,
        *args,
    )
    if rows:
        return int(rows[0]["total"]), list(rows)
    # An empty page (past the end): the count alone ($2 is unused but keeps the numbering).
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM technicianmaster t WHERE {where} AND $2::text[] IS NOT NULL",
        *args,
    )
    return total, []
