"""The audit trail: every action on a request, allowed or refused, with who, when, old
and new state (`dispatchaudit`)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from api.auth import Principal

SYSTEM = "system"
COLUMNS = (
    "tenant_id, requestid, action, actorrole, actorsubject, oldstate, newstate, outcome, detail"
)
"""An audit row's columns, in `record`'s order (an action may insert its row in a statement
of its own writes: the accept does)."""


async def record(
    conn: asyncpg.Connection,
    *,
    tenant: str,
    request_id: UUID | None,
    action: str,
    actor: Principal | None,
    old_state: str | None,
    new_state: str | None,
    outcome: str = "ok",
    detail: str | None = None,
) -> None:
    await conn.execute(
        f"INSERT INTO dispatchaudit ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        tenant,
        request_id,
        action,
        actor.role.value if actor else SYSTEM,
        actor.subject if actor else SYSTEM,
        old_state,
        new_state,
        outcome,
        detail,
    )
