"""The response-time SLA of service areas (seed 000): a request made inside an area is due a
technician by its `sladueat`. When that passes with nobody there (no arrival recorded, not
yet at work) and the request still open, the watcher records one violation
(`slaviolations`), raises the request's call priority one step (seed 000's automated
escalation; Critical stays Critical), audits it and tells the staff: `sla_violated` to the
admins and the request's technician, `request_escalated` to the request's groups.

Every API process polls (`FIXGATE_SLA_POLL_S`); due requests are taken with `FOR UPDATE
SKIP LOCKED` and marked violated in the same transaction as their events (the outbox), so
each is violated exactly once across processes and restarts. The arrival fills in the
violation's actual minutes (api/lifecycle.py `arrived`).
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from api import audit
from api.metrics import SLA_VIOLATIONS
from api.models.common import CallPriority
from api.notify import Notifier
from api.outbox import OutboxWriter
from api.state import ApiState
from api.store.requests import load_detail

log = logging.getLogger("fixgate.api.sla")

BATCH = 50
"""Most requests one transaction marks: a backlog (after an outage) goes in short steps."""

_VIOLATE = f"""
WITH due AS (
    SELECT requestid FROM servicerequests
    WHERE sladueat <= now() AND slaviolatedat IS NULL AND arrivedat IS NULL
      AND requeststatus IN ('Pending', 'Ringing', 'Assigned', 'EnRoute')
    ORDER BY sladueat LIMIT {BATCH} FOR UPDATE SKIP LOCKED
), old AS (
    SELECT r.requestid, r.priority, r.requeststatus FROM servicerequests r JOIN due USING (requestid)
), marked AS (
    UPDATE servicerequests r SET slaviolatedat = now(), priority = least(r.priority + 1, 3),
        version = r.version + 1, updatedat = now()
    FROM due WHERE r.requestid = due.requestid
    RETURNING r.requestid, r.tenant_id, r.serviceareaid, r.priority,
        round(extract(epoch FROM r.sladueat - coalesce(r.scheduledat, r.requestedat)) / 60)::int
            AS target
), recorded AS (
    INSERT INTO slaviolations (tenant_id, requestid, serviceareaid, targetminutes)
    SELECT tenant_id, requestid, serviceareaid, target FROM marked
    ON CONFLICT (requestid, violationtype) DO NOTHING
)
SELECT m.requestid, m.tenant_id, m.target, m.priority, o.priority AS oldpriority,
       o.requeststatus
FROM marked m JOIN old o USING (requestid)
ORDER BY m.requestid
"""
"""Take the due requests, mark them violated one priority step up, record the violations;
return each with its old priority and state (the CTE `old` reads the rows before the
update: one snapshot)."""


async def run_due(state: ApiState) -> list[UUID]:
    """Violate the requests now past their SLA (one batch), with their audit and events."""
    async with state.tx() as conn:
        rows = await conn.fetch(_VIOLATE)
        notifier = Notifier(OutboxWriter(conn))
        for row in rows:
            tenant: str = row["tenant_id"]
            target: int = row["target"]
            before, after = (
                CallPriority.of_rank(row["oldpriority"]),
                CallPriority.of_rank(row["priority"]),
            )
            raised = f"; priority {before.value} -> {after.value}" if after != before else ""
            await audit.record(
                conn,
                tenant=tenant,
                request_id=row["requestid"],
                action="sla_violation",
                actor=None,
                old_state=row["requeststatus"],
                new_state=row["requeststatus"],
                detail=f"nobody there {target} min after the request{raised}",
            )
            detail = await load_detail(conn, tenant, row["requestid"])
            if detail is None:  # held by this transaction: cannot be missing
                continue
            await notifier.sla_violated(detail, tenant, target)
            if after != before:
                reason = f"response-time SLA of {target} min passed"
                await notifier.escalated(detail, tenant, before.value, reason)
    SLA_VIOLATIONS.inc(len(rows))
    return [row["requestid"] for row in rows]


async def worker(state: ApiState) -> None:
    """Violate due requests batch by batch, then sleep until the next poll."""
    while True:
        try:
            while len(await run_due(state)) == BATCH:
                pass
        except asyncio.CancelledError:
            raise
        except Exception:  # the database or Redis away: try again at the next poll
            log.exception("sla watcher")
        await asyncio.sleep(state.settings.sla_poll_s)
