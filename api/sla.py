"""The response-time SLA of service areas (seed 000): a request made inside an area is due a
technician by its `sladueat`. When that passes with nobody there (no arrival recorded, not
yet at work) and the request still open, the watcher records one violation
(`slaviolations`), raises the request's call priority one step (seed 000's automated
escalation; Critical stays Critical), audits it and tells the staff: `sla_violated` to the
admins and the request's technician, `request_escalated` to the request's groups.

Every API process polls (`FIXGATE_SLA_POLL_S`); due requests are taken with `FOR UPDATE
SKIP LOCKED` and violated (api/machine.py's `sla_violation`) in one unit of work with their
audit and events, so each is violated exactly once across processes and restarts. The arrival fills in the
violation's actual minutes (api/lifecycle.py `arrived`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from uuid import UUID

from api.machine import BEFORE_ARRIVAL, Action, Attempt, CallPriority, Move, decide
from api.metrics import SLA_VIOLATIONS
from api.notify import announce
from api.state import ApiState
from api.store import requests, service_areas
from api.store.requests import load_detail, states
from api.unit_of_work import unit_of_work

log = logging.getLogger("fixgate.api.sla")

BATCH = 50
"""Most requests one transaction marks: a backlog (after an outage) goes in short steps."""


async def run_due(state: ApiState) -> list[UUID]:
    """Violate the requests now past their SLA (one batch), with their audit and events."""
    async with unit_of_work(state) as uow:
        rows = await service_areas.take_overdue(uow.conn, states(BEFORE_ARRIVAL), BATCH)
        violated = []
        for row in rows:
            tenant: str = row["tenant_id"]
            view = requests.view_of(row)
            attempt = Attempt(Action.SLA_VIOLATION, target_minutes=row["target"])
            move = decide(attempt, view, None, datetime.now(UTC))
            # Locked by this transaction since it was read: it cannot have moved.
            if not isinstance(move, Move) or not await requests.apply(uow.conn, tenant, view, move):
                continue
            await service_areas.record_violation(
                uow.conn, tenant, view.id, row["serviceareaid"], row["target"]
            )
            uow.record(view.id, move.audit, tenant=tenant)
            detail = await load_detail(uow.conn, tenant, view.id)
            assert detail is not None  # held by this transaction
            uow.tenant = tenant
            before = CallPriority.of_rank(view.priority)
            reason = f"response-time SLA of {row['target']} min passed"
            announce(uow, move, detail, target_minutes=row["target"],
                     previous_priority=before.value, reason=reason)  # fmt: skip
            violated.append(view.id)
    SLA_VIOLATIONS.inc(len(violated))
    return violated


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
