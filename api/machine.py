"""The service request's lifecycle as a table, and the one function that reads it.

Pure: no database, no Redis, no clock (`now` is an argument), no logging. A reader can
hold `TABLE` next to the specification's state tables (seed 004, "Request Lifecycle &
State Transitions"): for each action, the states it may start from, the state it leads
to, who may take it, what it announces and what becomes of the technician. `decide` takes
an attempt, the request as read and the principal, and returns either the `Move` (the new
state, the columns it changes, the events it announces, its audit row) or the `Refusal`
(403, 404 or 409 with the current state). api/lifecycle.py is the shell that reads, asks
`decide`, and writes what it says through api/store/.

Like h11's `_state.py`, legality lives in one place: no action checks a state of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from api.principal import STAFF_ROLES, Principal, Role


class RequestStatus(StrEnum):
    """The one spelling of a request's state (the specification's `RequestStatus`).
    `Stopped` and `Accepted` are in the specification's enum but no action leads there
    (an accepted request is `Assigned`); they stay so filters naming them are valid."""

    PENDING = "Pending"
    ASSIGNED = "Assigned"
    EN_ROUTE = "EnRoute"
    IN_PROGRESS = "InProgress"
    STOPPED = "Stopped"
    COMPLETED = "Completed"
    CANCELED = "Canceled"
    ACCEPTED = "Accepted"
    RINGING = "Ringing"


class AvailabilityStatus(StrEnum):
    """A technician's availability (the specification's `TechnicianAvailabilityStatus`)."""

    AVAILABLE = "Available"
    EN_ROUTE = "EnRoute"
    SERVICING = "Servicing"
    OFFLINE = "Offline"
    ON_BREAK = "OnBreak"


class CallPriority(StrEnum):
    """Seed 000's call priorities, lowest first; stored as their rank (`rank`)."""

    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"
    CRITICAL = "Critical"

    @property
    def rank(self) -> int:
        return list(CallPriority).index(self)

    @classmethod
    def of_rank(cls, rank: int) -> CallPriority:
        return list(cls)[rank]


S = RequestStatus
LIFECYCLE_ORDER = (S.PENDING, S.RINGING, S.ASSIGNED, S.EN_ROUTE, S.IN_PROGRESS, S.COMPLETED,
                   S.CANCELED, S.STOPPED, S.ACCEPTED)  # fmt: skip
"""The states in the order a request goes through them (for people reading the table)."""
RINGABLE = frozenset({S.PENDING, S.RINGING})
"""Open to the ring's technicians: accepted, rejected or assigned from here."""
QUEUED = frozenset({S.ASSIGNED, S.EN_ROUTE, S.IN_PROGRESS})
"""A technician's queue: requests assigned to them and not finished."""
ACTIVE = frozenset({S.EN_ROUTE, S.IN_PROGRESS})
"""Under way: the technician is driving to it or working on it."""
TERMINAL = frozenset({S.COMPLETED, S.CANCELED})
OPEN = RINGABLE | QUEUED
BEFORE_ARRIVAL = frozenset({S.PENDING, S.RINGING, S.ASSIGNED, S.EN_ROUTE})
"""Where a service area's response-time SLA can still be missed (and arrival not yet)."""


class Action(StrEnum):
    """What can happen to a request; the value is its name in the audit trail."""

    CREATE = "create"
    RING = "ring"
    RING_TIMEOUT = "ring_timeout"
    ACCEPT = "accept"
    REJECT = "reject"
    ASSIGN = "assign"
    UNASSIGN = "unassign"
    CANCEL = "cancel"
    START_JOURNEY = "start_journey"
    ARRIVE = "arrived"
    START_WORK = "start_work"
    COMPLETE = "complete"
    FEEDBACK = "feedback"
    ESCALATE = "escalate"
    REORDER = "reorder"
    SLA_VIOLATION = "sla_violation"


class Party(StrEnum):
    """Who may take an action, relative to the request."""

    STAFF = "staff"  # admin or dispatcher of the tenant
    OWN_CUSTOMER = "its customer"
    TECHNICIAN = "a technician it rings (or any, once Pending)"
    ASSIGNED_TECHNICIAN = "its technician"
    SYSTEM = "fixgate"  # the ring, the SLA watcher, the engine's arrival


PARTY_ROLES: dict[Party, frozenset[Role]] = {
    Party.STAFF: STAFF_ROLES,
    Party.OWN_CUSTOMER: frozenset({Role.CUSTOMER}),
    Party.TECHNICIAN: frozenset({Role.TECHNICIAN}),
    Party.ASSIGNED_TECHNICIAN: frozenset({Role.TECHNICIAN}),
    Party.SYSTEM: frozenset(),
}


class Event(StrEnum):
    """The real-time events an action announces (seed 004 Part 3), as they are named."""

    NEW_SERVICE_REQUEST = "new_service_request"
    RING_NOTIFICATION = "ring_notification_received"
    STATUS_CHANGED = "request_status_changed"
    ACCEPTED = "request_accepted"
    ASSIGNED = "request_assigned"
    CANCELED = "request_canceled"
    JOURNEY_STARTED = "journey_started"
    ARRIVED = "technician_arrived"
    SERVICE_STARTED = "service_started"
    SERVICE_COMPLETED = "service_completed"
    ESCALATED = "request_escalated"
    SLA_VIOLATED = "sla_violated"
    QUEUE_UPDATED = "QueueUpdated"
    QUEUE_POSITION_CHANGED = "QueuePositionChanged"
    LOCATION_UPDATED = "LocationUpdated"


@dataclass(frozen=True, slots=True)
class TechnicianChange:
    """What becomes of the technician's availability (the specification's third column)."""

    to: AvailabilityStatus
    only_from: frozenset[AvailabilityStatus] = frozenset()
    """Only when the technician is in one of these now (empty: whatever they are)."""
    only_if_active: bool = False
    """Only when the request was under way for them (a cancel of a queued job frees
    nobody: they are still on the one under way)."""


FREED = TechnicianChange(
    AvailabilityStatus.AVAILABLE,
    frozenset({AvailabilityStatus.EN_ROUTE, AvailabilityStatus.SERVICING}),
    only_if_active=True,
)


@dataclass(frozen=True, slots=True)
class Rule:
    sources: frozenset[RequestStatus]
    """The states the action may start from (empty: there is no request yet)."""
    target: RequestStatus | None
    """The state it leads to; None: the state stays."""
    parties: frozenset[Party]
    refusal: str
    """The 409's message when the request is in another state."""
    announces: tuple[Event, ...] = ()
    technician: TechnicianChange | None = None
    requeues: bool = False
    """Its technician's queue changes: QueueUpdated and QueuePositionChanged follow."""
    refusal_when_ended: str | None = None
    """The 409's message when the request is Completed or Canceled, with `{state}`."""
    doing: str = ""
    """For "Only the assigned technician may {doing}"."""


_STAFF = frozenset({Party.STAFF})
_SYSTEM = frozenset({Party.SYSTEM})
_ASSIGNED = frozenset({Party.ASSIGNED_TECHNICIAN})
_QUEUE = (Event.QUEUE_UPDATED, Event.QUEUE_POSITION_CHANGED)

TABLE: dict[Action, Rule] = {
    # Creation and assignment (seed 004 table 1).
    Action.CREATE: Rule(
        frozenset(), S.RINGING, frozenset({Party.OWN_CUSTOMER, Party.STAFF}), "",
        (Event.NEW_SERVICE_REQUEST,),
    ),  # a Scheduled request is created Pending instead (`Attempt.scheduled`); staff
        # take a call for a named customer (`Attempt.customer`)
    Action.RING: Rule(
        frozenset({S.PENDING, S.RINGING}), S.RINGING, _SYSTEM, "Only a ringing request rings",
        (Event.RING_NOTIFICATION,),
    ),  # from Pending: the first phase of a Scheduled request, at its time
    Action.RING_TIMEOUT: Rule(
        frozenset({S.RINGING}), S.PENDING, _SYSTEM, "Only a ringing request times out",
        (Event.STATUS_CHANGED,),
    ),
    Action.ACCEPT: Rule(
        RINGABLE, S.ASSIGNED, frozenset({Party.TECHNICIAN}),
        "Request was taken by another technician",
        (Event.ACCEPTED, Event.STATUS_CHANGED, *_QUEUE), requeues=True,
        refusal_when_ended="Request is {state}",
    ),
    Action.REJECT: Rule(
        RINGABLE, None, frozenset({Party.TECHNICIAN}),
        "Only a ringing or pending request can be rejected",
    ),
    Action.ASSIGN: Rule(
        RINGABLE, S.ASSIGNED, _STAFF, "Only a pending or ringing request can be assigned",
        (Event.ASSIGNED, Event.STATUS_CHANGED, *_QUEUE), requeues=True,
    ),
    # Execution (seed 004 table 2).
    Action.START_JOURNEY: Rule(
        frozenset({S.ASSIGNED}), S.EN_ROUTE, _ASSIGNED,
        "Only an assigned request can start its journey",
        (Event.JOURNEY_STARTED, *_QUEUE), TechnicianChange(AvailabilityStatus.EN_ROUTE),
        requeues=True, doing="start the journey",
    ),
    Action.ARRIVE: Rule(
        frozenset({S.EN_ROUTE}), None, _SYSTEM, "Only a technician on the way arrives",
        (Event.ARRIVED,),
    ),
    Action.START_WORK: Rule(
        frozenset({S.EN_ROUTE}), S.IN_PROGRESS, _ASSIGNED,
        "Work starts after the journey (EnRoute)",
        (Event.SERVICE_STARTED,), TechnicianChange(AvailabilityStatus.SERVICING),
        doing="start the work",
    ),
    Action.COMPLETE: Rule(
        frozenset({S.IN_PROGRESS}), S.COMPLETED, _ASSIGNED,
        "Only work in progress can be completed",
        (Event.SERVICE_COMPLETED, *_QUEUE), TechnicianChange(AvailabilityStatus.AVAILABLE),
        requeues=True, doing="complete",
    ),
    Action.FEEDBACK: Rule(
        frozenset({S.COMPLETED}), None, frozenset({Party.OWN_CUSTOMER}),
        "Feedback comes after completion",
    ),
    # Exceptions (seed 004 table 3) and the dispatcher's levers (seed 000).
    Action.CANCEL: Rule(
        OPEN, S.CANCELED, frozenset({Party.OWN_CUSTOMER, Party.ASSIGNED_TECHNICIAN, Party.STAFF}),
        "Request is already {state}", (Event.CANCELED, *_QUEUE), FREED, requeues=True,
        refusal_when_ended="Request is already {state}", doing="cancel",
    ),
    Action.UNASSIGN: Rule(
        frozenset({S.ASSIGNED, S.EN_ROUTE}), S.PENDING, _STAFF,
        "Only an assigned or en-route request can be unassigned",
        (Event.STATUS_CHANGED, *_QUEUE), FREED, requeues=True,
    ),
    Action.ESCALATE: Rule(
        OPEN, None, _STAFF, "Request is already {state}", (Event.ESCALATED,),
        refusal_when_ended="Request is already {state}",
    ),
    Action.REORDER: Rule(
        QUEUED, None, _STAFF, "Only a queued request has a place in a queue", _QUEUE,
        requeues=True,
    ),
    Action.SLA_VIOLATION: Rule(
        BEFORE_ARRIVAL, None, _SYSTEM, "Only a request nobody reached yet misses its SLA",
        (Event.SLA_VIOLATED, Event.ESCALATED),
    ),
}  # fmt: skip


# ---- what an action is given, and what it is told ---------------------------------------


@dataclass(frozen=True, slots=True)
class RequestView:
    """The request as an action reads it (one row, in the tenant of the principal)."""

    id: UUID
    status: RequestStatus
    version: int
    customer: UUID
    technician: UUID | None = None
    rung: bool = False
    """The acting technician was rung for it (its ring log has them)."""
    number: str = ""
    priority: int = 0
    ring_ended_at: datetime | None = None
    arrived_at: datetime | None = None
    trip: str | None = None
    rated: bool = False
    sla_violated: bool = False
    lat: float = 0.0  # where it is (the trip's destination)
    lon: float = 0.0


@dataclass(frozen=True, slots=True)
class TechnicianView:
    """The technician an action is for (the accepting one, or the one assigned)."""

    id: UUID
    availability: AvailabilityStatus
    queued: int
    """Requests in their queue now (Assigned, EnRoute, InProgress)."""
    busy_with: str | None = None
    """The number of another request of theirs under way, if any."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """An action with what it carries (only the fields its action uses are read)."""

    action: Action
    technician: TechnicianView | None = None
    queue_limit: int = 5
    reason: str | None = None
    scheduled: bool = False  # create: a Scheduled request
    customer: UUID | None = None  # create: whom it is for (staff name the customer)
    scheduled_at: datetime | None = None  # assign: a new time for it
    priority: int | None = None  # escalate: the new rank
    rating: int | None = None  # feedback
    feedback: str | None = None
    mileage: float | None = None  # complete
    evidences: tuple[str, ...] = ()
    price: float | None = None  # complete: the completed services' sum
    position: int | None = None  # reorder: the new queue position
    note: str | None = None  # ring: what the phase did, for the audit
    target_minutes: int | None = None  # sla_violation: the area's response time


@dataclass(frozen=True, slots=True)
class Audit:
    """One row of the audit trail (`dispatchaudit`)."""

    action: Action
    old: RequestStatus | None
    new: RequestStatus | None
    outcome: str = "ok"  # ok, conflict (409), refused (422)
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Move:
    """An allowed action: what the shell writes, announces and audits."""

    action: Action
    old: RequestStatus | None
    new: RequestStatus
    changes: dict[str, Any]
    """The request's columns it sets besides status and version (values, not SQL)."""
    announces: tuple[Event, ...]
    audit: Audit
    technician: TechnicianChange | None = None
    technician_id: UUID | None = None
    """Whose availability `technician` changes, and whose queue events follow."""
    requeues: bool = False

    def with_changes(self, **more: Any) -> Move:
        """The same move setting more columns (what only the writing shell knows, such as
        the engine's trip id)."""
        return replace(self, changes={**self.changes, **more})

    def with_audit_detail(self, detail: str) -> Move:
        """The same move, its audit row saying what only the writing shell knows."""
        return replace(self, audit=replace(self.audit, detail=detail))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused action: the HTTP status, a message a person can act on, the state."""

    status: int  # 403, 404, 409, or 422 (an attempt that lacks what it needs)
    message: str
    state: RequestStatus | None = None
    audited: bool = field(default=False)
    """A 409 on a request that exists goes to the audit trail (outcome `conflict`)."""


Decision = Move | Refusal


# ---- the one function ---------------------------------------------------------------------


def may_see(request: RequestView, principal: Principal) -> bool:
    """Whether the principal may see the request at all (404 otherwise, like a missing one).
    Staff: the tenant's; customers: their own; technicians: rung to them, assigned to
    them, or Pending (after the ring anyone may accept)."""
    if principal.is_staff:
        return True
    if principal.role is Role.CUSTOMER:
        return str(request.customer) == principal.subject
    mine = request.technician is not None and str(request.technician) == principal.subject
    return mine or request.rung or request.status is S.PENDING


def roles_of(action: Action) -> frozenset[Role]:
    """The roles that may take an action through the API (none: only fixgate itself)."""
    rule = TABLE[action]
    return frozenset(role for party in rule.parties for role in PARTY_ROLES[party])


def _conflict(message: str, state: RequestStatus) -> Refusal:
    return Refusal(409, message, state, audited=True)


def decide(
    attempt: Attempt, request: RequestView | None, principal: Principal | None, now: datetime
) -> Decision:
    """The move of an attempt on a request as read, or why not. `principal` None: fixgate
    itself (the ring, the SLA watcher, the engine's arrival). `request` None: none found
    in the tenant (or, for `create`, none yet)."""
    action = attempt.action
    rule = TABLE[action]
    if principal is None:
        if Party.SYSTEM not in rule.parties:
            raise ValueError(f"{action} needs a principal")
    elif principal.role not in roles_of(action):
        allowed = ", ".join(sorted(r.value for r in roles_of(action)))
        return Refusal(403, f"Only {allowed} may do this (you are {principal.role.value})")
    if action is Action.CREATE:
        return _create(attempt, principal, now)
    if request is None or (principal is not None and not may_see(request, principal)):
        return Refusal(404, "Service request not found")
    state = request.status
    if (
        principal is not None
        and principal.role is Role.TECHNICIAN
        and Party.TECHNICIAN not in rule.parties
        and not _is_assigned(request, principal)
    ):
        return _conflict(f"Only the assigned technician may {rule.doing}", state)
    if state not in rule.sources:
        ended = rule.refusal_when_ended if state in TERMINAL else None
        return _conflict((ended or rule.refusal).format(state=state.value), state)
    return _MOVES[action](attempt, request, principal, now, rule)


def _is_assigned(request: RequestView, principal: Principal) -> bool:
    return request.technician is not None and str(request.technician) == principal.subject


def _move(
    rule: Rule,
    attempt: Attempt,
    request: RequestView,
    changes: dict[str, Any],
    *,
    detail: str | None = None,
    technician_id: UUID | None = None,
) -> Move:
    new = rule.target or request.status
    technician = rule.technician
    if technician is not None and technician.only_if_active and request.status not in ACTIVE:
        technician = None
    return Move(
        action=attempt.action,
        old=request.status,
        new=new,
        changes=changes,
        announces=rule.announces,
        audit=Audit(attempt.action, request.status, new, detail=detail),
        technician=technician,
        technician_id=technician_id if technician_id is not None else request.technician,
        requeues=rule.requeues,
    )


def _create(attempt: Attempt, principal: Principal | None, now: datetime) -> Decision:
    """A customer creates for themselves; staff (taking a call) for the customer they name,
    whose being of the tenant the shell checks (404 otherwise, like any other's)."""
    assert principal is not None, "a request is created by someone"
    if principal.is_staff and attempt.customer is None:
        return Refusal(422, "customerId: staff create a request for a named customer")
    if not principal.is_staff and attempt.customer not in (None, _subject(principal)):
        return Refusal(403, "A customer creates requests for themselves only")
    rule = TABLE[Action.CREATE]
    new = S.PENDING if attempt.scheduled else S.RINGING
    changes: dict[str, Any] = {"ringstarttime": None if attempt.scheduled else now}
    detail = f"for customer {attempt.customer}" if principal.is_staff else None
    audit = Audit(Action.CREATE, None, new, detail=detail)
    return Move(Action.CREATE, None, new, changes, rule.announces, audit)


def _subject(principal: Principal) -> UUID | None:
    try:
        return UUID(principal.subject)
    except ValueError:
        return None


def _ring_end(request: RequestView, now: datetime) -> datetime:
    return request.ring_ended_at or now


Mover = Callable[[Attempt, RequestView, Principal | None, datetime, Rule], Decision]
"""How an allowed action becomes its move: the columns it sets, its action's own checks."""


def _ring(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    changes: dict[str, Any] = {"ringstarttime": now} if r.status is S.PENDING else {}
    return _move(rule, a, r, changes, detail=a.note)


def _ring_timeout(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    return _move(rule, a, r, {"ringendtime": now})


def _queue_room(a: Attempt, state: RequestStatus, mine: bool) -> Refusal | None:
    """The technician's queue has room (the specification's queue limit)."""
    tech = a.technician
    assert tech is not None, "accept and assign carry their technician"
    if tech.queued < a.queue_limit:
        return None
    if mine:
        return _conflict(f"Your queue is full ({tech.queued} of {a.queue_limit})", state)
    return _conflict(f"The technician's queue is full ({tech.queued})", state)


def _accept(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    tech = a.technician
    if tech is None:
        return Refusal(404, "Technician not found")
    if tech.availability is AvailabilityStatus.OFFLINE:
        return _conflict("You are Offline: set your availability first", r.status)
    full = _queue_room(a, r.status, mine=True)
    if full is not None:
        return full
    changes = {
        "currenttechnicianid": tech.id,
        "assignedat": now,
        "queueposition": tech.queued + 1,
        "ringendtime": _ring_end(r, now),
    }
    return _move(rule, a, r, changes, technician_id=tech.id)


def _reject(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    return _move(rule, a, r, {}, detail=a.reason)


def _assign(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    tech = a.technician
    if tech is None:
        return Refusal(404, "Technician not found")
    full = _queue_room(a, r.status, mine=False)
    if full is not None:
        return full
    changes: dict[str, Any] = {
        "currenttechnicianid": tech.id,
        "assignedat": now,
        "queueposition": tech.queued + 1,
        "ringendtime": _ring_end(r, now),
    }
    if a.scheduled_at is not None:
        changes["scheduledat"] = a.scheduled_at
    return _move(rule, a, r, changes, detail=f"technician {tech.id}", technician_id=tech.id)


def _unassign(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    changes = {
        "currenttechnicianid": None,
        "queueposition": None,
        "tripid": None,
        "journeystartedat": None,
        "arrivedat": None,
        "ringendtime": _ring_end(r, now),
    }
    return _move(rule, a, r, changes, detail=f"technician {r.technician}")


def _cancel(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    assert p is not None, "a cancel has a principal"
    changes = {
        "cancelledat": now,
        "cancelledby": p.actor,
        "cancellationreason": a.reason,
        "queueposition": None,
        "ringendtime": _ring_end(r, now),
    }
    return _move(rule, a, r, changes, detail=a.reason)


def _start_journey(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    busy = a.technician.busy_with if a.technician is not None else None
    if busy:
        return _conflict(f"Finish {busy} first", r.status)
    return _move(rule, a, r, {"journeystartedat": now})


def _arrive(a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule) -> Decision:
    if r.arrived_at is not None:
        return Refusal(409, "The arrival is recorded already", r.status)
    return _move(rule, a, r, {"arrivedat": now})


def _start_work(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    return _move(rule, a, r, {"startedat": now, "arrivedat": r.arrived_at or now})


def _complete(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    price = a.price or 0.0
    changes = {
        "completedat": now,
        "mileage": a.mileage,
        "evidences": list(a.evidences),
        "subtotal": price,
        "queueposition": None,
    }
    return _move(rule, a, r, changes, detail=f"price {price:.2f}")


def _feedback(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    if r.rated:
        return _conflict("Feedback was already given", r.status)
    changes = {"rating": a.rating, "feedback": a.feedback, "feedbackat": now}
    return _move(rule, a, r, changes, detail=f"rating {a.rating}")


def _escalate(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    assert a.priority is not None, "an escalation names its priority"
    before, after = CallPriority.of_rank(r.priority), CallPriority.of_rank(a.priority)
    if a.priority <= r.priority:
        return _conflict(f"Can only escalate to a higher priority (it is {before.value})", r.status)
    detail = f"priority {before.value} -> {after.value}"
    return _move(rule, a, r, {"priority": a.priority}, detail=f"{detail}: {a.reason}" if a.reason
                 else detail)  # fmt: skip


def _reorder(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    return _move(rule, a, r, {"queueposition": a.position}, detail=f"position {a.position}")


def _sla_violation(
    a: Attempt, r: RequestView, p: Principal | None, now: datetime, rule: Rule
) -> Decision:
    if r.sla_violated or r.arrived_at is not None:
        return Refusal(409, "Its SLA was met or missed already", r.status)
    raised = min(r.priority + 1, CallPriority.CRITICAL.rank)
    before, after = CallPriority.of_rank(r.priority), CallPriority.of_rank(raised)
    detail = f"nobody there {a.target_minutes} min after the request"
    if after is before:  # Critical stays Critical: no escalation to announce
        move = _move(rule, a, r, {"slaviolatedat": now}, detail=detail)
        return replace(move, announces=(Event.SLA_VIOLATED,))
    detail += f"; priority {before.value} -> {after.value}"
    return _move(rule, a, r, {"slaviolatedat": now, "priority": raised}, detail=detail)


_MOVES: dict[Action, Mover] = {
    Action.RING: _ring,
    Action.RING_TIMEOUT: _ring_timeout,
    Action.ACCEPT: _accept,
    Action.REJECT: _reject,
    Action.ASSIGN: _assign,
    Action.UNASSIGN: _unassign,
    Action.CANCEL: _cancel,
    Action.START_JOURNEY: _start_journey,
    Action.ARRIVE: _arrive,
    Action.START_WORK: _start_work,
    Action.COMPLETE: _complete,
    Action.FEEDBACK: _feedback,
    Action.ESCALATE: _escalate,
    Action.REORDER: _reorder,
    Action.SLA_VIOLATION: _sla_violation,
}


# ---- the table as a reader sees it -------------------------------------------------------


def table_rows() -> list[tuple[str, str, str, str, str, str]]:
    """(action, from, to, who, technician, announces) per action, as docs/dispatch.md
    shows them (a test keeps the two the same)."""
    rows = []
    for action, rule in TABLE.items():
        sources = ", ".join(s.value for s in LIFECYCLE_ORDER if s in rule.sources) or "(none)"
        target = rule.target.value if rule.target else "(stays)"
        if action is Action.CREATE:
            target = "Ringing (OnDemand), Pending (Scheduled)"
        who = ", ".join(p.value for p in Party if p in rule.parties)
        tech = "-"
        if rule.technician is not None:
            t = rule.technician
            tech = t.to.value
            if t.only_from:
                tech += " (from " + ", ".join(
                    s.value for s in AvailabilityStatus if s in t.only_from
                )
                tech += ", if it was under way)" if t.only_if_active else ")"
        announces = ", ".join(e.value for e in rule.announces) or "-"
        rows.append((action.value, sources, target, who, tech, announces))
    return rows
