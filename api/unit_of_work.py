"""One action's unit of work: its connection, the events it announces and its audit rows,
travelling together in one object that the action fills and its commit drains.

Like aioquic's event queue that the caller empties, nothing goes anywhere behind the
action's back: `announce` and `record` only append here. `unit_of_work` opens the
transaction and, when the action returns, writes the audit rows and the events (the
outbox) in one statement before the COMMIT, then hands the committed events to the relay
(api/outbox.py), which puts them on the stream after the response, in commit order. An
action refused with a 409 or a 422 rolls back; its attempt is then audited on its own
(outcome `conflict` or `refused`), whichever action it was.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from api.errors import ApiError, conflict, forbidden, invalid, not_found
from api.events import to_json
from api.machine import Action, Audit, Refusal, RequestStatus
from api.principal import Principal
from api.store import outbox as outbox_store

if TYPE_CHECKING:
    from api.state import ApiState

SYSTEM = "system"
"""The actor of fixgate's own actions (the ring, the SLA watcher, the engine's arrival)."""


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event as the outbox row and the stream entry carry it (JSON as text)."""

    tenant: str
    event: str
    groups: str
    payload: str
    event_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class AuditRow:
    """A `dispatchaudit` row, in the table's column order (api/store/outbox.py)."""

    tenant: str
    request_id: uuid.UUID | None
    action: str
    actor_role: str
    actor_subject: str
    old: str | None
    new: str | None
    outcome: str
    detail: str | None


@dataclass(frozen=True, slots=True)
class Attempted:
    """What a refusal of the action is audited against: the request and its state as read."""

    request_id: uuid.UUID | None
    action: Action
    state: RequestStatus | None


@dataclass(slots=True)
class UnitOfWork:
    conn: asyncpg.Connection
    tenant: str
    actor: Principal | None
    events: list[OutboxEvent] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)
    attempted: Attempted | None = None
    """Set once the action has read its request: a refusal is audited against it."""

    def announce(
        self,
        event: str,
        payload: Any,
        groups: list[str],
        *,
        tenant: str | None = None,
        event_id: uuid.UUID | None = None,
    ) -> None:
        """An event, written with the action (`tenant`: of a batch across tenants, such as
        the SLA watcher's)."""
        self.events.append(
            OutboxEvent(tenant or self.tenant, str(event), to_json(groups), to_json(payload),
                        event_id or uuid.uuid4())
        )  # fmt: skip

    def record(
        self, request_id: uuid.UUID | None, audit: Audit, *, tenant: str | None = None
    ) -> None:
        """The audit row of a move (or of a refusal, with its outcome)."""
        role = self.actor.role.value if self.actor else SYSTEM
        subject = self.actor.subject if self.actor else SYSTEM
        self.audits.append(
            AuditRow(tenant or self.tenant, request_id, audit.action.value, role, subject,
                     audit.old.value if audit.old else None,
                     audit.new.value if audit.new else None, audit.outcome, audit.detail)
        )  # fmt: skip

    def attempt(
        self, request_id: uuid.UUID | None, action: Action, state: RequestStatus | None
    ) -> None:
        self.attempted = Attempted(request_id, action, state)

    def refusal_audit(self, error: ApiError) -> AuditRow | None:
        """The audit row of a refused attempt (409: conflict, 422: refused), if any."""
        if self.attempted is None or error.status not in (409, 422):
            return None
        state = self.attempted.state
        outcome = "conflict" if error.status == 409 else "refused"
        audit = Audit(self.attempted.action, state, state, outcome, error.message)
        self.record(self.attempted.request_id, audit)
        return self.audits.pop()


def refused(refusal: Refusal) -> ApiError:
    """The API's answer to a refusal of the lifecycle."""
    if refusal.status == 404:
        return not_found(refusal.message.removesuffix(" not found"))
    if refusal.status == 403:
        return forbidden(refusal.message)
    if refusal.status == 422:
        field, _, message = refusal.message.partition(": ")
        return invalid(field, message)
    return conflict(refusal.message, refusal.state.value if refusal.state else None)


@contextlib.asynccontextmanager
async def unit_of_work(
    state: ApiState, tenant: str = "", actor: Principal | None = None
) -> AsyncIterator[UnitOfWork]:
    """The action's transaction: on return its audit rows and events are written with it,
    and after the COMMIT the events go to the relay; a 409 or 422 rolls it back and audits
    the attempt (api/store/outbox.py writes both)."""
    async with state.conn() as conn:
        uow = UnitOfWork(conn, tenant, actor)
        try:
            async with conn.transaction():
                yield uow
                committed = await outbox_store.write(conn, uow.audits, uow.events)
        except ApiError as e:
            row = uow.refusal_audit(e)
            if row is not None:
                await outbox_store.audit_refusal(conn, row)
            raise
    state.committed(committed)
