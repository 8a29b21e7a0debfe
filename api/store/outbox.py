"""The outbox and the audit trail: what an action's commit writes, and what the relay reads.

`dispatchoutbox` holds an action's events from its commit until the relay has put them on
the stream (api/outbox.py); `dispatchaudit` keeps every action, allowed or refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from api.unit_of_work import AuditRow, OutboxEvent

AUDIT_COLUMNS = (
    "tenant_id, requestid, action, actorrole, actorsubject, oldstate, newstate, outcome, detail"
)
"""An audit row's columns, in `AuditRow`'s order."""
AUDIT_TYPES = "text[], uuid[], text[], text[], text[], text[], text[], text[], text[]"

ROW_COLUMNS = "seq, tenant_id, event, groups::text AS groups, payload::text AS payload, eventid,"
ROW_COLUMNS += " createdat"
"""What the relay reads of a row (the JSON as written: it goes to the stream as is)."""

_WRITE = f"""
WITH audited AS (
    INSERT INTO dispatchaudit ({AUDIT_COLUMNS})
    SELECT * FROM unnest({", ".join(f"${n}::{t}" for n, t in enumerate(AUDIT_TYPES.split(", "), 1))})
)
INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)
SELECT tenant_id, event, groups, payload, eventid
FROM unnest($10::text[], $11::text[], $12::json[], $13::json[], $14::uuid[])
    WITH ORDINALITY AS e(tenant_id, event, groups, payload, eventid, n)
ORDER BY n
RETURNING seq, eventid, createdat
"""
"""An action's audit rows and events in one statement, the events in the order announced."""


def audit_arrays(rows: Sequence[AuditRow]) -> list[list[Any]]:
    """The audit rows as the nine column arrays of `_WRITE` (and the accept's function)."""
    return [
        [r.tenant for r in rows],
        [r.request_id for r in rows],
        [r.action for r in rows],
        [r.actor_role for r in rows],
        [r.actor_subject for r in rows],
        [r.old for r in rows],
        [r.new for r in rows],
        [r.outcome for r in rows],
        [r.detail for r in rows],
    ]


def event_arrays(events: Sequence[OutboxEvent]) -> list[list[Any]]:
    return [
        [e.tenant for e in events],
        [e.event for e in events],
        [e.groups for e in events],
        [e.payload for e in events],
        [e.event_id for e in events],
    ]


def committed_rows(
    events: Sequence[OutboxEvent],
    seqs: Sequence[int],
    created: datetime,
    *,
    groups: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The outbox rows of `events` as the relay puts them on the stream (api/outbox.py
    `xadd`); `groups`: as the statement that wrote them left them, if it changed any."""
    final = groups if groups is not None else [e.groups for e in events]
    return [
        {"seq": seq, "tenant_id": e.tenant, "event": e.event, "groups": g,
         "payload": e.payload, "eventid": e.event_id, "createdat": created}
        for e, seq, g in zip(events, seqs, final, strict=True)
    ]  # fmt: skip


async def write(
    conn: asyncpg.Connection, audits: Sequence[AuditRow], events: Sequence[OutboxEvent]
) -> list[dict[str, Any]]:
    """Write an action's audit rows and events inside its transaction; the event rows."""
    if not audits and not events:
        return []
    rows = await conn.fetch(_WRITE, *audit_arrays(audits), *event_arrays(events))
    if not rows:
        return []
    seq = {r["eventid"]: r["seq"] for r in rows}
    return committed_rows(events, [seq[e.event_id] for e in events], rows[0]["createdat"])


async def audit_refusal(conn: asyncpg.Connection, row: AuditRow) -> None:
    """A refused attempt's audit row, after its transaction rolled back (nothing to audit
    when its request is gone)."""
    with contextlib.suppress(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            f"INSERT INTO dispatchaudit ({AUDIT_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            row.tenant, row.request_id, row.action, row.actor_role, row.actor_subject,
            row.old, row.new, row.outcome, row.detail,
        )  # fmt: skip


async def take(
    conn: asyncpg.Connection, where: str, arg: object, limit: int
) -> list[asyncpg.Record]:
    """Delete and return (in seq order) up to `limit` rows that `where` selects, skipping
    rows another relay holds; the caller's transaction keeps them until it commits."""
    rows = await conn.fetch(
        "DELETE FROM dispatchoutbox WHERE seq IN (SELECT seq FROM dispatchoutbox"
        f" WHERE {where} ORDER BY seq LIMIT {limit} FOR UPDATE SKIP LOCKED)"
        f" RETURNING {ROW_COLUMNS}",
        arg,
    )
    return sorted(rows, key=lambda r: int(r["seq"]))


async def delete(conn: asyncpg.Connection, seqs: list[int]) -> None:
    await conn.execute("DELETE FROM dispatchoutbox WHERE seq = ANY($1::bigint[])", seqs)


BY_SEQ = "seq = ANY($1::bigint[])"
OLDER_THAN = "createdat < now() - make_interval(secs => $1::float8)"
