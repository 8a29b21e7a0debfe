"""The request lifecycle's shell: each action reads its request, asks `api.machine.decide`
what may happen (the table of the specification's states), and writes what it says
through api/store/ in one unit of work (api/unit_of_work.py): the state change under the
version it read (a conditional UPDATE), its audit row and its events commit together, and
a refusal (409, 422) is audited after the rollback. No action checks a state of its own.

The accept and the reject are the race a ring starts: each is one statement that commits
on its own (api/store/rings.py), so a winner holds the request's row lock for the time
that statement runs, and a loser learns "taken" from the same statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from redis.exceptions import RedisError

from api import engine, queue
from api.errors import ApiError, conflict, not_found
from api.events import technician_group
from api.machine import (
    RINGABLE,
    TABLE,
    Action,
    Attempt,
    CallPriority,
    Event,
    Move,
    Refusal,
    RequestStatus,
    RequestView,
    decide,
)
from api.metrics import ACCEPTS, accept_outcome
from api.models.requests import (
    CompleteServiceRequest,
    CreateServiceRequest,
    ServiceRequestDetailedResponse,
)
from api.notify import Notifier, announce
from api.principal import Principal, Role
from api.state import ApiState
from api.store import outbox as outbox_store
from api.store import requests, rings, technicians
from api.store.requests import QueuedRequest, load_detail, subject_id
from api.unit_of_work import UnitOfWork, refused, unit_of_work

log = logging.getLogger("fixgate.api.lifecycle")

TAKEN = TABLE[Action.ACCEPT].refusal
ACCEPT_ATTEMPTS = 3
"""Tries of an accept whose request changed under it but is still open to accept."""
ARRIVAL_ATTEMPTS = 3
"""Tries of recording an arrival whose request changed under it (an escalation, say)."""


def _now() -> datetime:
    return datetime.now(UTC)


# ---- the shell's steps, the same for every action -------------------------------------------


async def _read(
    uow: UnitOfWork, request_id: UUID, action: Action, *, lock: str = ""
) -> RequestView | None:
    """The request as the action reads it; a refusal from here on is audited against it."""
    view = await requests.read_view(uow.conn, uow.tenant, request_id, uow.actor, lock=lock)
    uow.attempt(request_id, action, view.status if view else None)
    return view


@contextlib.asynccontextmanager
async def _acting(
    state: ApiState, principal: Principal, request_id: UUID, action: Action
) -> AsyncIterator[tuple[UnitOfWork, RequestView | None]]:
    """An action's unit of work and its request as read (None: not found)."""
    async with unit_of_work(state, principal.tenant, principal) as uow:
        yield uow, await _read(uow, request_id, action)


def _decide(attempt: Attempt, view: RequestView | None, principal: Principal | None) -> Move:
    """The move `decide` allows, or its refusal raised."""
    decision = decide(attempt, view, principal, _now())
    if isinstance(decision, Refusal):
        raise refused(decision)
    return decision


def _allowed(
    attempt: Attempt, view: RequestView | None, principal: Principal | None
) -> tuple[Move, RequestView]:
    """The move of an action on a request that was found, and the request as read."""
    move = _decide(attempt, view, principal)
    if view is None:  # pragma: no cover (decide answers 404 for a request not found)
        raise not_found("Service request")
    return move, view


async def _apply(uow: UnitOfWork, view: RequestView, move: Move) -> None:
    """The move's state change under the version read (409 when the request changed since),
    its audit row, and what becomes of the technician."""
    if not await requests.apply(uow.conn, uow.tenant, view, move):
        now = await requests.state_of(uow.conn, view.id)
        raise conflict("Request changed meanwhile, try again", now.value if now else None)
    uow.record(view.id, move.audit)
    if move.technician is not None and move.technician_id is not None:
        await technicians.change(uow.conn, move.technician_id, move.technician)


async def _detail(uow: UnitOfWork, request_id: UUID) -> ServiceRequestDetailedResponse:
    """The request as the action's transaction leaves it: what its events report."""
    detail = await load_detail(uow.conn, uow.tenant, request_id)
    if detail is None:  # the transaction holds the request: it cannot be missing
        raise not_found("Service request")
    return detail


async def publish_queue(state: ApiState, uow: UnitOfWork, technician_id: UUID | None) -> None:
    """QueueUpdated to the technician, QueuePositionChanged to each queued customer."""
    if technician_id is None:
        return
    device, queued = await queue.read(uow.conn, uow.tenant, technician_id)
    await _announce_queue(state, uow, technician_id, device, queued)


async def _announce_queue(
    state: ApiState,
    uow: UnitOfWork,
    technician_id: UUID,
    device: str | None,
    queued: list[QueuedRequest],
    ahead: queue.LiveRead | None = None,
) -> None:
    try:
        items = await queue.entries(
            state.redis, state.settings, technician_id, device, queued, ahead=ahead
        )
    except (RedisError, OSError):
        # Redis away (the queue's database read came first and the transaction is intact):
        # the action stands without its queue events.
        log.exception("queue of technician %s", technician_id)
        return
    notifier = Notifier(uow)
    notifier.queue_updated(uow.tenant, str(technician_id), items)
    for item in items:
        notifier.queue_position_changed(uow.tenant, item["customerId"], item)


async def _leave_queue(uow: UnitOfWork, view: RequestView) -> None:
    """The request left its technician's queue: cancel the engine's trip, renumber the rest
    (the technician's availability is the move's)."""
    if view.technician is None:
        return
    if view.trip is not None:
        await engine.cancel_trip(uow.conn, view.trip, tenant=uow.tenant)
    await requests.renumber(uow.conn, uow.tenant, view.technician)


# ---- create ----------------------------------------------------------------------------------


async def create(
    state: ApiState, principal: Principal, body: CreateServiceRequest
) -> tuple[UUID, str]:
    scheduled = body.service_schedule_type.value == "Scheduled"
    async with unit_of_work(state, principal.tenant, principal) as uow:
        uow.attempt(None, Action.CREATE, None)
        attempt = Attempt(Action.CREATE, scheduled=scheduled, customer=body.customer_id)
        move = _decide(attempt, None, principal)
        conn, tenant = uow.conn, uow.tenant
        if principal.is_staff:  # taking a call: the customer named, of this tenant, enabled
            assert body.customer_id is not None  # decide refused staff without one
            customer_id = body.customer_id
            if not await requests.customer_enabled(conn, tenant, customer_id):
                raise not_found("Customer")
        else:  # the customer's own path keeps its bound
            customer_id = subject_id(principal)
            limit = state.settings.customer_open_requests_max
            if (open_now := await requests.open_requests_of(conn, tenant, customer_id)) >= limit:
                raise conflict(
                    f"You have {open_now} open requests: at most {limit} at once"
                    " (FIXGATE_CUSTOMER_OPEN_REQUESTS_MAX)"
                )
        if not await requests.vehicle_of_customer(conn, tenant, customer_id, body.vehicle_id):
            whose = "of this customer" if principal.is_staff else "of yours"
            raise ApiError(422, f"vehicleId: no such vehicle {whose}")
        services = await requests.catalog_services(conn, tenant, body.services)
        if len(services) != len(body.services):
            raise ApiError(422, "services: unknown or disabled service")
        values = {
            "vehicle_id": body.vehicle_id,
            "service_schedule_type": body.service_schedule_type.value,
            "location_preference": body.location_preference.value,
            "scheduled_at": body.scheduled_at,
            "latitude": body.latitude,
            "longitude": body.longitude,
            "location": body.location,
            "description": body.description,
            "priority": body.priority.rank,
        }
        request_id, number = await requests.insert(
            conn, tenant, customer_id, values, move,
            price=sum(float(s["serviceprice"]) for s in services),
            max_ring_miles=round(state.settings.ring_radii_miles[-1]),
        )  # fmt: skip
        await requests.add_services(conn, tenant, request_id, services)
        # The ring's schedule: OnDemand now, Scheduled ahead of its time.
        due = None
        if scheduled and body.scheduled_at is not None:
            due = body.scheduled_at - timedelta(seconds=state.settings.scheduled_ring_lead_s)
        await rings.schedule(conn, tenant, request_id, due)
        uow.record(request_id, move.audit)
        announce(uow, move, await _detail(uow, request_id))
    state.ring_wakeup.set()
    return request_id, number


# ---- accept / reject: the race a ring starts -----------------------------------------------


async def accept(
    state: ApiState, principal: Principal, request_id: UUID, location: dict[str, Any] | None
) -> None:
    """Take a ringing (or pending) request: one statement decides between the technicians
    racing for it (api/store/rings.py `accept`). A request that only moved on meanwhile
    (the ring timed out to Pending, an escalation) is read and tried again."""
    try:
        for _ in range(ACCEPT_ATTEMPTS):
            if await _try_accept(state, principal, request_id, location):
                ACCEPTS.labels("ok").inc()
                return
        raise conflict(TAKEN)
    except ApiError as e:
        ACCEPTS.labels(accept_outcome(e.status)).inc()
        raise


async def _try_accept(
    state: ApiState, principal: Principal, request_id: UUID, location: dict[str, Any] | None
) -> bool:
    me = subject_id(principal)
    limit = state.settings.queue_limit
    async with state.conn() as conn:
        uow = UnitOfWork(conn, principal.tenant, principal)
        try:
            read, ahead = await _accept_reads(state, conn, principal.tenant, request_id, me)
            view = read.view if read is not None else None
            uow.attempt(request_id, Action.ACCEPT, view.status if view else None)
            technician = read.technician if read is not None else None
            attempt = Attempt(Action.ACCEPT, technician=technician, queue_limit=limit)
            move, view = _allowed(attempt, view, principal)
            assert read is not None  # decide found the request in it
            now = move.changes["assignedat"]
            detail = read.detail.model_copy(
                update={
                    "request_status": RequestStatus.ASSIGNED,
                    "version": view.version + 1,
                    "assigned_at": now,
                    "queue_position": move.changes["queueposition"],
                    "ring_end_time": move.changes["ringendtime"],
                }
            )
            announce(uow, move, detail, location=location)
            mine = QueuedRequest(
                request_id, view.customer, RequestStatus.ASSIGNED, None, view.lat, view.lon,
                read.minutes,
            )  # fmt: skip
            await _announce_queue(state, uow, me, read.device, [*read.queue, mine], ahead)
            uow.record(request_id, move.audit)
            rung_event = next(
                (n for n, e in enumerate(uow.events) if e.event == Event.STATUS_CHANGED), None
            )
            outcome = await rings.accept(
                conn, uow, view, move, queue_limit=limit, rung_event=rung_event,
                technician_group=technician_group(""),
            )  # fmt: skip
            if outcome["outcome"] == "won":
                state.committed(rings.accepted_rows(uow, outcome))
                return True
            if outcome["outcome"] == "gone":
                raise not_found("Technician")
            if outcome["outcome"] == "full":
                queued = outcome["queued"]
                raise conflict(f"Your queue is full ({queued} of {limit})", view.status.value)
            current = outcome["state"]
            if current is None or RequestStatus(current) not in RINGABLE:
                raise conflict(TAKEN, current)
            return False  # moved on but still open to accept: read it again
        except ApiError as e:
            audit = uow.refusal_audit(e)
            if audit is not None:
                await outbox_store.audit_refusal(conn, audit)
            raise


async def _accept_reads(
    state: ApiState, conn: asyncpg.Connection, tenant: str, request_id: UUID, me: UUID
) -> tuple[requests.AcceptRead | None, queue.LiveRead | None]:
    """The accept's read, and meanwhile (not after it) the live position of the device the
    technician had at their last accept, which the queue's ETAs start from: one round trip
    of waiting instead of two. `entries` uses it only if the read finds the same device."""
    device = state.technician_devices.get(me)
    if device is None:
        read = await requests.accept_read(conn, tenant, request_id, me)
        ahead = None
    else:
        read, found = await asyncio.gather(
            requests.accept_read(conn, tenant, request_id, me),
            queue.read_live(state.redis, state.keys, device),
            return_exceptions=True,
        )
        if isinstance(read, BaseException):
            raise read
        # Redis away: `entries` reads it again, and says so if it still cannot.
        ahead = None if isinstance(found, BaseException) else found
    if read is not None and read.device is not None:
        state.remember_device(me, read.device)
    return read, ahead


async def reject(
    state: ApiState, principal: Principal, request_id: UUID, reason: str | None
) -> None:
    """Say no to a ring: one statement (api/store/rings.py `reject`); when everyone rung
    has said no, the ring moves on at once."""
    async with state.conn() as conn:
        uow = UnitOfWork(conn, principal.tenant, principal)
        try:
            view = await _read(uow, request_id, Action.REJECT)
            move, view = _allowed(Attempt(Action.REJECT, reason=reason), view, principal)
            uow.record(request_id, move.audit)
            if not await rings.reject(conn, uow, view, subject_id(principal)):
                now = await requests.state_of(conn, request_id)
                raise conflict(TABLE[Action.REJECT].refusal, now.value if now else None)
        except ApiError as e:
            audit = uow.refusal_audit(e)
            if audit is not None:
                await outbox_store.audit_refusal(conn, audit)
            raise
    state.ring_wakeup.set()


# ---- the dispatcher's levers ------------------------------------------------------------------


async def cancel(
    state: ApiState, principal: Principal, request_id: UUID, reason: str | None
) -> None:
    async with _acting(state, principal, request_id, Action.CANCEL) as (uow, view):
        move, view = _allowed(Attempt(Action.CANCEL, reason=reason), view, principal)
        # The schedule's row before the request's, in a ring phase's order (no deadlock).
        await rings.unschedule(uow.conn, request_id)
        await _apply(uow, view, move)
        await _leave_queue(uow, view)
        await rings.end_open(uow.conn, request_id)
        if principal.role is Role.TECHNICIAN and view.technician is not None:
            await rings.engage(
                uow.conn, uow.tenant, request_id, view.technician, "CANCELED", reason
            )
        old = str(view.technician) if view.technician else None
        announce(uow, move, await _detail(uow, request_id), old_technician=old)
        await publish_queue(state, uow, view.technician)


async def assign(
    state: ApiState,
    principal: Principal,
    request_id: UUID,
    technician_id: UUID,
    scheduled_at: datetime | None,
) -> None:
    async with _acting(state, principal, request_id, Action.ASSIGN) as (uow, view):
        technician = None
        if await technicians.lock(uow.conn, uow.tenant, technician_id):
            # After the lock: the queue counted sees every assignment of theirs before.
            technician = await technicians.view(uow.conn, uow.tenant, technician_id)
        attempt = Attempt(
            Action.ASSIGN, technician=technician, queue_limit=state.settings.queue_limit,
            scheduled_at=scheduled_at,
        )  # fmt: skip
        move, view = _allowed(attempt, view, principal)
        await rings.unschedule(uow.conn, request_id)  # before the request's row, as above
        await _apply(uow, view, move)
        await rings.end_open(uow.conn, request_id)
        announce(uow, move, await _detail(uow, request_id))
        await publish_queue(state, uow, technician_id)


async def unassign(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _acting(state, principal, request_id, Action.UNASSIGN) as (uow, view):
        move, view = _allowed(Attempt(Action.UNASSIGN), view, principal)
        await _apply(uow, view, move)
        await _leave_queue(uow, view)
        also = [str(view.technician)] if view.technician else []
        announce(uow, move, await _detail(uow, request_id), also_technicians=also)
        await publish_queue(state, uow, view.technician)


async def reorder(
    state: ApiState, principal: Principal, technician_id: UUID, order: list[UUID]
) -> None:
    async with unit_of_work(state, principal.tenant, principal) as uow:
        uow.attempt(None, Action.REORDER, None)
        if not await technicians.lock(uow.conn, uow.tenant, technician_id):
            raise not_found("Technician")
        device, queued = await queue.read(uow.conn, uow.tenant, technician_id)
        by_id = {q.request_id: q for q in queued}
        if set(order) != set(by_id) or len(order) != len(by_id):
            raise ApiError(422, "requestIds: must list exactly the technician's queued requests")
        active = [i for i in order if by_id[i].status in (RequestStatus.EN_ROUTE,
                                                            RequestStatus.IN_PROGRESS)]  # fmt: skip
        if (active and order[0] != active[0]) or len(active) > 1:
            raise ApiError(422, "requestIds: the request under way must stay first")
        for position, request_id in enumerate(order, start=1):
            q = by_id[request_id]
            view = RequestView(request_id, q.status, 0, q.customer_id, technician_id)
            move = _decide(Attempt(Action.REORDER, position=position), view, principal)
            uow.record(request_id, move.audit)
        await requests.set_positions(uow.conn, order)
        ordered = [by_id[i] for i in order]
        await _announce_queue(state, uow, technician_id, device, ordered)


async def escalate(
    state: ApiState,
    principal: Principal,
    request_id: UUID,
    priority: CallPriority,
    reason: str | None,
) -> None:
    """Raise an open request's call priority (seed 000: only ever upwards)."""
    async with _acting(state, principal, request_id, Action.ESCALATE) as (uow, view):
        attempt = Attempt(Action.ESCALATE, priority=priority.rank, reason=reason)
        move, view = _allowed(attempt, view, principal)
        await _apply(uow, view, move)
        previous = CallPriority.of_rank(view.priority).value
        announce(uow, move, await _detail(uow, request_id), previous_priority=previous,
                 reason=reason)  # fmt: skip


# ---- the journey and the work ------------------------------------------------------------------


async def start_journey(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _acting(state, principal, request_id, Action.START_JOURNEY) as (uow, view):
        me = subject_id(principal)
        technician = await technicians.view(uow.conn, uow.tenant, me, besides=request_id)
        move, view = _allowed(Attempt(Action.START_JOURNEY, technician=technician), view, principal)
        device = await technicians.device_of(uow.conn, me)
        trip = None
        if device is not None:
            minutes = await requests.service_minutes(uow.conn, request_id)
            trip = await engine.start_trip(
                uow.conn, tenant=uow.tenant, device=device, lat=view.lat, lon=view.lon,
                service_s=minutes * 60.0, ref=str(request_id),
            )  # fmt: skip
        move = move.with_changes(tripid=trip).with_audit_detail(f"trip {trip}")
        await _apply(uow, view, move)
        announce(uow, move, await _detail(uow, request_id))
        await publish_queue(state, uow, me)


async def start_work(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _acting(state, principal, request_id, Action.START_WORK) as (uow, view):
        move, view = _allowed(Attempt(Action.START_WORK), view, principal)
        await _apply(uow, view, move)
        announce(uow, move, await _detail(uow, request_id))


async def complete(
    state: ApiState, principal: Principal, request_id: UUID, body: CompleteServiceRequest
) -> float:
    """Complete the work; the price is the sum of the completed services."""
    if body.mileage is None:
        raise ApiError(400, "mileage: required to complete")
    if not body.evidences or not all(e.strip() for e in body.evidences):
        raise ApiError(400, "evidences: at least one evidence is required to complete")
    if not body.completed_services:
        raise ApiError(400, "completedServices: at least one completed service is required")
    async with unit_of_work(state, principal.tenant, principal) as uow:
        conn, tenant = uow.conn, uow.tenant
        view = await _read(uow, request_id, Action.COMPLETE)
        _, view = _allowed(Attempt(Action.COMPLETE), view, principal)  # before what they did
        requested = await requests.requested_services(conn, request_id)
        done = list(dict.fromkeys(body.completed_services))
        if not set(done) <= requested.keys():
            raise ApiError(422, "completedServices: a service this request does not have")
        additional = [
            s for s in dict.fromkeys(body.additional_services or []) if s not in requested
        ]
        found = await requests.catalog_services(conn, tenant, additional) if additional else []
        if len(found) != len(additional):
            raise ApiError(422, "additionalServices: unknown or disabled service")
        if found:
            await requests.add_services(conn, tenant, request_id, found, additional=True)
        await requests.mark_services(conn, request_id, done)
        # In the database's decimals: a price is money, not a float's nearest.
        total = sum((requested[s] for s in done), Decimal(0))
        price = float(total + sum((f["serviceprice"] for f in found), Decimal(0)))
        attempt = Attempt(Action.COMPLETE, mileage=body.mileage, evidences=tuple(body.evidences),
                          price=price)  # fmt: skip
        move = _decide(attempt, view, principal)
        await _apply(uow, view, move)
        await _leave_queue(uow, view)
        announce(uow, move, await _detail(uow, request_id))
        await publish_queue(state, uow, view.technician)
    return float(price)


async def feedback(
    state: ApiState, principal: Principal, request_id: UUID, rating: int, text: str | None
) -> None:
    async with _acting(state, principal, request_id, Action.FEEDBACK) as (uow, view):
        move, view = _allowed(
            Attempt(Action.FEEDBACK, rating=rating, feedback=text), view, principal
        )
        await _apply(uow, view, move)


# ---- arrival (the engine's event) ---------------------------------------------------------------


async def arrived(state: ApiState, tenant: str, request_id: UUID) -> bool:
    """The engine says the technician reached the request: record when (once)."""
    for _ in range(ARRIVAL_ATTEMPTS):
        async with unit_of_work(state, tenant) as uow:
            view = await _read(uow, request_id, Action.ARRIVE)
            decision = decide(Attempt(Action.ARRIVE), view, None, _now())
            if isinstance(decision, Refusal) or view is None:
                return False  # not on the way (any more), or arrived already
            if await requests.apply(uow.conn, tenant, view, decision):
                uow.record(request_id, decision.audit)
                announce(uow, decision, await _detail(uow, request_id))
                return True
    return False
