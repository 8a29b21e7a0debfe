"""The request lifecycle (the specification's state tables): every action is one
transaction whose state change is a conditional UPDATE (state and version in the WHERE),
audited with who, old and new state; its events are written to the outbox in the same
transaction (built on its connection, so they see its writes) and relayed to the stream
right after the commit (api/outbox.py).

States: Ringing/Pending -> Assigned (accept, assign) -> EnRoute (start journey; arrival
records `arrivedat`) -> InProgress (start work) -> Completed; Canceled from any open
state; unassign sends Assigned/EnRoute back to Pending.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import asyncpg
from redis.exceptions import RedisError

from api import audit, engine, queue
from api.auth import Principal, Role
from api.errors import ApiError, conflict, not_found
from api.metrics import ACCEPTS, accept_outcome
from api.models.common import CallPriority
from api.models.requests import (
    CompleteServiceRequest,
    CreateServiceRequest,
    ServiceRequestDetailedResponse,
)
from api.notify import Notifier
from api.outbox import OutboxWriter
from api.state import ApiState
from api.store.requests import (
    ACTIVE_STATES,
    QUEUED_STATES,
    TERMINAL_STATES,
    load_detail,
    scope,
    subject_id,
)
from api.store.service_areas import AREA_AT

log = logging.getLogger("fixgate.api.lifecycle")

OPEN_STATES = ("Pending", "Ringing", "Assigned", "EnRoute", "InProgress")
TAKEN = "Request was taken by another technician"
ACCEPT_ATTEMPTS = 3
"""Tries of an accept whose request changed under it but is still open to accept."""


class Current:
    """The request as read at the start of an action (state and version for the WHERE)."""

    def __init__(self, row: asyncpg.Record) -> None:
        self.id: UUID = row["requestid"]
        self.state: str = row["requeststatus"]
        self.version: int = row["version"]
        self.technician: UUID | None = row["currenttechnicianid"]
        self.customer: UUID = row["customerid"]
        self.trip: str | None = row["tripid"]
        self.lat: float = row["lat"]
        self.lon: float = row["lon"]
        self.arrived = row["arrivedat"] is not None


_CURRENT_COLUMNS = (
    "r.requestid, r.requeststatus, r.version, r.currenttechnicianid, r.customerid, r.tripid,"
    " r.latitude::float8 AS lat, r.longitude::float8 AS lon, r.arrivedat"
)
"""What `Current` reads of the request."""


async def _current(conn: asyncpg.Connection, principal: Principal, request_id: UUID) -> Current:
    args: list[Any] = [request_id]
    where = scope(principal, args)
    row = await conn.fetchrow(
        f"SELECT {_CURRENT_COLUMNS} FROM servicerequests r WHERE r.requestid = $1 AND {where}",
        *args,
    )
    if row is None:
        raise not_found("Service request")
    return Current(row)


async def _transition(
    conn: asyncpg.Connection,
    tenant: str,
    cur: Current,
    new_state: str,
    sets: str = "",
    args: Sequence[Any] = (),
) -> bool:
    """The conditional UPDATE: applies only if nobody changed the request since `cur`."""
    extra = f", {sets}" if sets else ""
    status: str = await conn.execute(
        f"UPDATE servicerequests SET requeststatus = $4, version = version + 1,"
        f" updatedat = now(){extra}"
        " WHERE requestid = $1 AND tenant_id = $2 AND version = $3",
        cur.id,
        tenant,
        cur.version,
        new_state,
        *args,
    )
    return status == "UPDATE 1"


async def _refused(
    state: ApiState,
    principal: Principal,
    request_id: UUID,
    action: str,
    error: ApiError,
    old_state: str | None,
) -> None:
    """Audit a refused attempt (after the rollback of the attempt's transaction)."""
    if error.status not in (409, 422):
        return
    outcome = "conflict" if error.status == 409 else "refused"
    try:
        async with state.conn() as conn:
            await audit.record(
                conn,
                tenant=principal.tenant,
                request_id=request_id,
                action=action,
                actor=principal,
                old_state=old_state,
                new_state=old_state,
                outcome=outcome,
                detail=error.message,
            )
    except asyncpg.ForeignKeyViolationError:
        pass  # no such request: nothing to audit against


class Action:
    """One action on a request inside its transaction: the request as read at its start
    (`cur`), the move to a new state with its audit row, and the events it sends."""

    def __init__(self, conn: asyncpg.Connection, principal: Principal, cur: Current, name: str):
        self.conn = conn
        self.principal = principal
        self.tenant = principal.tenant
        self.cur = cur
        self.name = name
        self.notifier = Notifier(OutboxWriter(conn))

    async def move(
        self,
        new_state: str,
        sets: str = "",
        args: Sequence[Any] = (),
        *,
        detail: str | None = None,
    ) -> None:
        """The conditional UPDATE and its audit row; 409 when the request changed since
        it was read."""
        if not await _transition(self.conn, self.tenant, self.cur, new_state, sets, args):
            raise conflict(
                "Request changed meanwhile, try again", await _state_of(self.conn, self.cur.id)
            )
        await self.audit(new_state, detail)

    async def audit(self, new_state: str, detail: str | None = None) -> None:
        await audit.record(
            self.conn,
            tenant=self.tenant,
            request_id=self.cur.id,
            action=self.name,
            actor=self.principal,
            old_state=self.cur.state,
            new_state=new_state,
            detail=detail,
        )

    async def detail(self) -> ServiceRequestDetailedResponse:
        return await _detail(self.conn, self.tenant, self.cur.id)

    def require(self, doing: str, state: str, refusal: str) -> UUID:
        """The principal is the request's technician and the request is in `state` (409
        otherwise, `refusal` saying what the state must be); the technician's id."""
        technician_id = subject_id(self.principal)
        if self.cur.technician != technician_id:
            raise conflict(f"Only the assigned technician may {doing}", self.cur.state)
        if self.cur.state != state:
            raise conflict(refusal, self.cur.state)
        return technician_id


@contextlib.asynccontextmanager
async def _action(
    state: ApiState, principal: Principal, request_id: UUID, name: str
) -> AsyncIterator[Action]:
    """The action's transaction with the request read as the principal may see it (404
    otherwise); a refusal (409, 422) rolls it back and is audited after the rollback."""
    old: str | None = None
    try:
        async with state.tx() as conn:
            cur = await _current(conn, principal, request_id)
            old = cur.state
            yield Action(conn, principal, cur, name)
    except ApiError as e:
        await _refused(state, principal, request_id, name, e, old)
        raise


async def _state_of(conn: asyncpg.Connection, request_id: UUID) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT requeststatus FROM servicerequests WHERE requestid = $1", request_id
    )
    return found


async def _set_availability(
    conn: asyncpg.Connection, technician_id: UUID, status: str, only_from: Sequence[str] = ()
) -> None:
    if only_from:
        await conn.execute(
            "UPDATE technicianmaster SET availabilitystatus = $2, updatedat = now(),"
            " version = version + 1 WHERE technicianid = $1 AND availabilitystatus = ANY($3)",
            technician_id,
            status,
            list(only_from),
        )
    else:
        await conn.execute(
            "UPDATE technicianmaster SET availabilitystatus = $2, updatedat = now(),"
            " version = version + 1 WHERE technicianid = $1",
            technician_id,
            status,
        )


async def _detail(
    conn: asyncpg.Connection, tenant: str, request_id: UUID
) -> ServiceRequestDetailedResponse:
    """The request as the action's transaction leaves it: what its events report."""
    detail = await load_detail(conn, tenant, request_id)
    if detail is None:  # the transaction holds the request: it cannot be missing
        raise not_found("Service request")
    return detail


async def publish_queue(
    state: ApiState, conn: asyncpg.Connection, tenant: str, technician_id: UUID | None
) -> None:
    """QueueUpdated to the technician, QueuePositionChanged to each queued customer, into
    the outbox of the transaction of `conn`."""
    if technician_id is None:
        return
    notifier = Notifier(OutboxWriter(conn))
    try:
        items = await queue.entries(conn, state.redis, state.settings, tenant, technician_id)
    except (RedisError, OSError):
        # Redis away (the queue's one database read came first and the transaction is
        # intact): the action stands without its queue events.
        log.exception("queue of technician %s", technician_id)
        return
    await notifier.queue_updated(tenant, str(technician_id), items)
    for item in items:
        await notifier.queue_position_changed(tenant, item["customerId"], item)


# ---- create ------------------------------------------------------------------------------


_INSERT_REQUEST = """
WITH area AS (
{area}
)
INSERT INTO servicerequests (tenant_id, requestnumber, customerid, vehicleid,
    servicescheduletype, locationpreference, scheduledat, latitude, longitude,
    location, description, estimatedprice, requeststatus, ringstarttime,
    maxringradius, priority, serviceareaid, sladueat)
SELECT $1, 'REQ-' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD') || '-'
           || lpad(nextval('servicerequests_number_seq')::text, 6, '0'),
       $2::uuid, $3::uuid, $4::text, $5::text, $6::timestamptz, $7::float8, $8::float8,
       $9::text, $10::text, $11::numeric, $12::varchar,
       CASE WHEN $12::varchar = 'Ringing' THEN now() END, $13::integer, $14::smallint,
       area.serviceareaid,
       coalesce($6::timestamptz, now())
           + make_interval(mins => area.responsetimeslaminutes)
FROM (SELECT) one LEFT JOIN area ON true
RETURNING requestid, requestnumber
""".format(area=AREA_AT.format(tenant="$1", lat="$7::float8", lon="$8::float8"))
"""The request, in the service area that holds its location (if any) with its SLA due time:
the requested or scheduled time plus the area's response time."""


async def create(
    state: ApiState, principal: Principal, body: CreateServiceRequest
) -> tuple[UUID, str]:
    tenant = principal.tenant
    customer_id = subject_id(principal)
    async with state.tx() as conn:
        vehicle_ok = await conn.fetchval(
            "SELECT true FROM customervehicles v JOIN customermaster c USING (customerid)"
            " WHERE v.customervehicleid = $1 AND v.customerid = $2 AND v.tenant_id = $3"
            " AND v.enabled AND c.enabled",
            body.vehicle_id,
            customer_id,
            tenant,
        )
        if not vehicle_ok:
            raise ApiError(422, "vehicleId: no such vehicle of yours")
        services = await conn.fetch(
            "SELECT serviceid, serviceprice, durationminutes FROM servicemaster"
            " WHERE serviceid = ANY($1::uuid[]) AND tenant_id = $2 AND enabled",
            body.services,
            tenant,
        )
        if len(services) != len(body.services):
            raise ApiError(422, "services: unknown or disabled service")
        on_demand = body.service_schedule_type.value == "OnDemand"
        status = "Ringing" if on_demand else "Pending"
        row = await conn.fetchrow(
            _INSERT_REQUEST,
            tenant,
            customer_id,
            body.vehicle_id,
            body.service_schedule_type.value,
            body.location_preference.value,
            body.scheduled_at,
            body.latitude,
            body.longitude,
            body.location,
            body.description,
            sum(s["serviceprice"] for s in services),
            status,
            round(state.settings.ring_radii_miles[-1]),
            body.priority.rank,
        )
        assert row is not None  # INSERT ... RETURNING returns the row
        request_id: UUID = row["requestid"]
        number: str = row["requestnumber"]
        await conn.executemany(
            "INSERT INTO requestedservices (tenant_id, requestid, serviceid, serviceprice,"
            " durationminutes) VALUES ($1, $2, $3, $4, $5)",
            [
                (tenant, request_id, s["serviceid"], s["serviceprice"], s["durationminutes"])
                for s in services
            ],
        )
        # The ring's schedule: OnDemand now, Scheduled ahead of its time.
        if on_demand:
            await conn.execute(
                "INSERT INTO ringschedule (requestid, tenant_id) VALUES ($1, $2)",
                request_id,
                tenant,
            )
        else:
            await conn.execute(
                "INSERT INTO ringschedule (requestid, tenant_id, dueat)"
                " VALUES ($1, $2, $3::timestamptz - make_interval(secs => $4::float8))",
                request_id,
                tenant,
                body.scheduled_at,
                state.settings.scheduled_ring_lead_s,
            )
        await audit.record(
            conn,
            tenant=tenant,
            request_id=request_id,
            action="create",
            actor=principal,
            old_state=None,
            new_state=status,
        )
        notifier = Notifier(OutboxWriter(conn))
        await notifier.new_service_request(await _detail(conn, tenant, request_id), tenant)
    state.ring_wakeup.set()
    return request_id, number


# ---- accept / reject ---------------------------------------------------------------------


_ACCEPT = f"""
WITH queued AS (
    SELECT count(*) AS n FROM servicerequests
    WHERE tenant_id = $1 AND currenttechnicianid = $3 AND requeststatus = ANY($7::text[])
), won AS (
    UPDATE servicerequests SET requeststatus = 'Assigned', version = version + 1,
        updatedat = now(), currenttechnicianid = $3, assignedat = now(),
        queueposition = (SELECT n FROM queued) + 1,
        ringendtime = coalesce(ringendtime, now())
    WHERE requestid = $2 AND tenant_id = $1 AND version = $8
      AND (SELECT n FROM queued) < $9
    RETURNING requestid
), accepted AS (
    INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action)
    SELECT $1, $2, $3, 'ACCEPTED' FROM won
), ended AS (
    UPDATE technicianringlog SET ringendedat = now(), updatedat = now()
    WHERE requestid = $2 AND ringendedat IS NULL AND EXISTS (SELECT FROM won)
    RETURNING technicianid
), unscheduled AS (
    DELETE FROM ringschedule WHERE requestid = $2 AND EXISTS (SELECT FROM won)
), audited AS (
    INSERT INTO dispatchaudit ({audit.COLUMNS})
    SELECT $1, $2, 'accept', $4, $5, $6, 'Assigned', 'ok', NULL FROM won
)
SELECT (SELECT n FROM queued) AS queued, EXISTS (SELECT FROM won) AS won,
       ARRAY(SELECT technicianid FROM ended WHERE technicianid <> $3) AS rung
"""
"""The accept's decision and writes in one statement, run after the technician's row is
locked (so its snapshot sees every accept of theirs that committed before): the queue
count, the conditional update (version and queue limit in the WHERE), and only if it won
the ACCEPTED row, the end of every open ring, the ring's schedule gone and the audit; the
others rung still hear that it was taken."""


async def accept(
    state: ApiState, principal: Principal, request_id: UUID, location: dict[str, Any] | None
) -> None:
    tenant, technician_id = principal.tenant, subject_id(principal)
    limit = state.settings.queue_limit
    old: str | None = None
    try:
        async with state.tx() as conn:
            # The request and this technician's row, locked: that serializes their own
            # accepts, so two requests cannot both take the last queue slot. NO KEY
            # UPDATE: it does not wait for the ring phases of other requests, whose
            # ring-log rows hold KEY SHARE locks on the technician (their foreign key).
            args: list[Any] = [request_id, technician_id]
            where = scope(principal, args)
            row = await conn.fetchrow(
                f"SELECT {_CURRENT_COLUMNS}, t.availabilitystatus"
                " FROM servicerequests r LEFT JOIN LATERAL ("
                "   SELECT availabilitystatus FROM technicianmaster"
                "   WHERE technicianid = $2 AND tenant_id = r.tenant_id AND enabled"
                "   FOR NO KEY UPDATE) t ON true"
                f" WHERE r.requestid = $1 AND {where}",
                *args,
            )
            if row is None:
                raise not_found("Service request")
            cur = Current(row)
            old = cur.state
            if row["availabilitystatus"] is None:
                raise not_found("Technician")
            if cur.state not in ("Ringing", "Pending"):
                raise conflict(TAKEN if cur.state in OPEN_STATES else
                               f"Request is {cur.state}", cur.state)  # fmt: skip
            if row["availabilitystatus"] == "Offline":
                raise conflict("You are Offline: set your availability first", cur.state)
            version = cur.version
            for _ in range(ACCEPT_ATTEMPTS):
                outcome = await conn.fetchrow(
                    _ACCEPT,
                    tenant,
                    request_id,
                    technician_id,
                    principal.role.value,
                    principal.subject,
                    old,
                    list(QUEUED_STATES),
                    version,
                    limit,
                )
                assert outcome is not None  # the final SELECT returns one row
                if outcome["won"]:
                    break
                if outcome["queued"] >= limit:
                    raise conflict(f"Your queue is full ({outcome['queued']} of {limit})", old)
                # Changed since the read: taken, or only moved on (the ring's timeout to
                # Pending, an escalation) and still there to accept.
                now = await conn.fetchrow(
                    "SELECT requeststatus, version FROM servicerequests WHERE requestid = $1",
                    request_id,
                )
                if now is None or now["requeststatus"] not in ("Ringing", "Pending"):
                    raise conflict(TAKEN, now["requeststatus"] if now else None)
                old, version = now["requeststatus"], now["version"]
            else:
                raise conflict(TAKEN, await _state_of(conn, request_id))
            rung = [str(t) for t in outcome["rung"]]
            detail = await _detail(conn, tenant, request_id)
            notifier = Notifier(OutboxWriter(conn))
            await notifier.accepted(detail, tenant, location)
            await notifier.status_changed(detail, tenant, rung)
            await publish_queue(state, conn, tenant, technician_id)
    except ApiError as e:
        ACCEPTS.labels(accept_outcome(e.status)).inc()
        await _refused(state, principal, request_id, "accept", e, old)
        raise
    ACCEPTS.labels("ok").inc()


_REJECT = f"""
WITH rejected AS (
    INSERT INTO technicianengagementdetails (tenant_id, requestid, technicianid, action, reason)
    VALUES ($1, $2, $3, 'REJECTED', $4)
), ended AS (
    UPDATE technicianringlog SET ringendedat = now(), updatedat = now()
    WHERE requestid = $2 AND technicianid = $3 AND ringendedat IS NULL
), moved AS (
    UPDATE ringschedule SET dueat = now()
    WHERE requestid = $2 AND $5::text = 'Ringing'
      AND NOT EXISTS (SELECT FROM technicianringlog WHERE requestid = $2
                      AND ringendedat IS NULL AND technicianid <> $3)
), audited AS (
    INSERT INTO dispatchaudit ({audit.COLUMNS})
    VALUES ($1, $2, 'reject', $6, $7, $5, $5, 'ok', $4)
)
SELECT
"""
"""The reject's writes in one statement: the REJECTED row, the technician's ring ended,
the audit, and when everyone rung so far has said no (no other ring of the request still
open), the ring moved on now instead of at its phase's end."""


async def reject(
    state: ApiState, principal: Principal, request_id: UUID, reason: str | None
) -> None:
    async with _action(state, principal, request_id, "reject") as act:
        if act.cur.state not in ("Ringing", "Pending"):
            raise conflict("Only a ringing or pending request can be rejected", act.cur.state)
        await act.conn.execute(
            _REJECT,
            act.tenant,
            request_id,
            subject_id(principal),
            reason,
            act.cur.state,
            principal.role.value,
            principal.subject,
        )
    state.ring_wakeup.set()


# ---- cancel / assign / unassign ----------------------------------------------------------


async def cancel(
    state: ApiState, principal: Principal, request_id: UUID, reason: str | None
) -> None:
    async with _action(state, principal, request_id, "cancel") as act:
        cur, conn = act.cur, act.conn
        if principal.role is Role.TECHNICIAN and cur.technician != subject_id(principal):
            raise conflict("Only the assigned technician may cancel", cur.state)
        if cur.state in TERMINAL_STATES:
            raise conflict(f"Request is already {cur.state}", cur.state)
        await act.move(
            "Canceled",
            "cancelledat = now(), cancelledby = $5, cancellationreason = $6,"
            " queueposition = NULL, ringendtime = coalesce(ringendtime, now())",
            (principal.actor, reason),
            detail=reason,
        )
        await _leave_queue(conn, act.tenant, cur)
        await conn.execute("DELETE FROM ringschedule WHERE requestid = $1", request_id)
        await conn.execute(
            "UPDATE technicianringlog SET ringendedat = now(), updatedat = now()"
            " WHERE requestid = $1 AND ringendedat IS NULL",
            request_id,
        )
        if principal.role is Role.TECHNICIAN:
            await conn.execute(
                "INSERT INTO technicianengagementdetails (tenant_id, requestid,"
                " technicianid, action, reason) VALUES ($1, $2, $3, 'CANCELED', $4)",
                act.tenant,
                request_id,
                cur.technician,
                reason,
            )
        await act.notifier.canceled(
            await act.detail(), act.tenant, str(cur.technician) if cur.technician else None
        )
        await publish_queue(state, conn, act.tenant, cur.technician)


async def _leave_queue(conn: asyncpg.Connection, tenant: str, cur: Current) -> None:
    """The request left its technician's queue: free them if they were on it, cancel the
    engine's trip, renumber the rest."""
    if cur.technician is None:
        return
    if cur.state in ACTIVE_STATES:
        await _set_availability(conn, cur.technician, "Available", ("EnRoute", "Servicing"))
    if cur.trip is not None:
        await engine.cancel_trip(conn, cur.trip, tenant=tenant)
    await queue.renumber(conn, tenant, cur.technician)


async def assign(
    state: ApiState,
    principal: Principal,
    request_id: UUID,
    technician_id: UUID,
    scheduled_at: Any,
) -> None:
    async with _action(state, principal, request_id, "assign") as act:
        cur, conn, tenant = act.cur, act.conn, act.tenant
        tech = await conn.fetchrow(
            "SELECT availabilitystatus FROM technicianmaster WHERE technicianid = $1"
            " AND tenant_id = $2 AND enabled FOR NO KEY UPDATE",
            technician_id,
            tenant,
        )
        if tech is None:
            raise not_found("Technician")
        if cur.state not in ("Pending", "Ringing"):
            raise conflict("Only a pending or ringing request can be assigned", cur.state)
        queued = await conn.fetchval(
            "SELECT count(*) FROM servicerequests WHERE tenant_id = $1"
            " AND currenttechnicianid = $2 AND requeststatus = ANY($3::text[])",
            tenant,
            technician_id,
            list(QUEUED_STATES),
        )
        if queued >= state.settings.queue_limit:
            raise conflict(f"The technician's queue is full ({queued})", cur.state)
        await act.move(
            "Assigned",
            "currenttechnicianid = $5, assignedat = now(), queueposition = $6,"
            " ringendtime = coalesce(ringendtime, now()),"
            " scheduledat = coalesce($7, scheduledat)",
            (technician_id, queued + 1, scheduled_at),
            detail=f"technician {technician_id}",
        )
        await conn.execute("DELETE FROM ringschedule WHERE requestid = $1", request_id)
        await conn.execute(
            "UPDATE technicianringlog SET ringendedat = now(), updatedat = now()"
            " WHERE requestid = $1 AND ringendedat IS NULL",
            request_id,
        )
        detail = await act.detail()
        await act.notifier.assigned(detail, tenant)
        await act.notifier.status_changed(detail, tenant, [])
        await publish_queue(state, conn, tenant, technician_id)


async def unassign(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _action(state, principal, request_id, "unassign") as act:
        cur = act.cur
        if cur.state not in ("Assigned", "EnRoute"):
            raise conflict("Only an assigned or en-route request can be unassigned", cur.state)
        await act.move(
            "Pending",
            "currenttechnicianid = NULL, queueposition = NULL, tripid = NULL,"
            " journeystartedat = NULL, arrivedat = NULL,"
            " ringendtime = coalesce(ringendtime, now())",
            detail=f"technician {cur.technician}",
        )
        await _leave_queue(act.conn, act.tenant, cur)
        extra = [str(cur.technician)] if cur.technician else []
        await act.notifier.status_changed(await act.detail(), act.tenant, extra)
        await publish_queue(state, act.conn, act.tenant, cur.technician)


async def reorder(
    state: ApiState, principal: Principal, technician_id: UUID, order: list[UUID]
) -> None:
    tenant = principal.tenant
    async with state.tx() as conn:
        tech = await conn.fetchval(
            "SELECT true FROM technicianmaster WHERE technicianid = $1 AND tenant_id = $2"
            " FOR NO KEY UPDATE",
            technician_id,
            tenant,
        )
        if not tech:
            raise not_found("Technician")
        rows = await conn.fetch(
            "SELECT requestid, requeststatus FROM servicerequests WHERE tenant_id = $1"
            " AND currenttechnicianid = $2 AND requeststatus = ANY($3::text[])",
            tenant,
            technician_id,
            list(QUEUED_STATES),
        )
        states = {r["requestid"]: r["requeststatus"] for r in rows}
        if set(order) != set(states) or len(order) != len(states):
            raise ApiError(422, "requestIds: must list exactly the technician's queued requests")
        active = [i for i in order if states[i] in ACTIVE_STATES]
        if (active and order[0] != active[0]) or len(active) > 1:
            raise ApiError(422, "requestIds: the request under way must stay first")
        await conn.executemany(
            "UPDATE servicerequests SET queueposition = $2, updatedat = now() WHERE requestid = $1",
            [(rid, pos) for pos, rid in enumerate(order, start=1)],
        )
        for rid in order:
            await audit.record(
                conn,
                tenant=tenant,
                request_id=rid,
                action="reorder",
                actor=principal,
                old_state=states[rid],
                new_state=states[rid],
                detail=f"position {order.index(rid) + 1}",
            )
        await publish_queue(state, conn, tenant, technician_id)


# ---- the journey and the work ------------------------------------------------------------


async def start_journey(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _action(state, principal, request_id, "start_journey") as act:
        cur, conn, tenant = act.cur, act.conn, act.tenant
        technician_id = act.require(
            "start the journey", "Assigned", "Only an assigned request can start its journey"
        )
        busy = await conn.fetchval(
            "SELECT requestnumber FROM servicerequests WHERE tenant_id = $1"
            " AND currenttechnicianid = $2 AND requeststatus = ANY($3::text[])"
            " AND requestid <> $4 LIMIT 1",
            tenant,
            technician_id,
            list(ACTIVE_STATES),
            request_id,
        )
        if busy:
            raise conflict(f"Finish {busy} first", cur.state)
        device_id: str | None = await conn.fetchval(
            "SELECT device_id FROM technicianmaster WHERE technicianid = $1", technician_id
        )
        service_minutes = await conn.fetchval(
            "SELECT coalesce(sum(durationminutes), 0) FROM requestedservices WHERE requestid = $1",
            request_id,
        )
        trip_id = None
        if device_id is not None:
            trip_id = await engine.start_trip(
                conn,
                tenant=tenant,
                device=device_id,
                lat=cur.lat,
                lon=cur.lon,
                service_s=float(service_minutes) * 60.0,
                ref=str(request_id),
            )
        await act.move(
            "EnRoute", "journeystartedat = now(), tripid = $5", (trip_id,), detail=f"trip {trip_id}"
        )
        await _set_availability(conn, technician_id, "EnRoute")
        await act.notifier.journey_started(await act.detail(), tenant)
        await publish_queue(state, conn, tenant, technician_id)


async def start_work(state: ApiState, principal: Principal, request_id: UUID) -> None:
    async with _action(state, principal, request_id, "start_work") as act:
        technician_id = act.require(
            "start the work", "EnRoute", "Work starts after the journey (EnRoute)"
        )
        await act.move("InProgress", "startedat = now(), arrivedat = coalesce(arrivedat, now())")
        await _set_availability(act.conn, technician_id, "Servicing")
        await act.notifier.service_started(await act.detail(), act.tenant)


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
    async with _action(state, principal, request_id, "complete") as act:
        cur, conn, tenant = act.cur, act.conn, act.tenant
        technician_id = act.require(
            "complete", "InProgress", "Only work in progress can be completed"
        )
        requested = {
            r["serviceid"]
            for r in await conn.fetch(
                "SELECT serviceid FROM requestedservices WHERE requestid = $1", request_id
            )
        }
        done = set(body.completed_services)
        if not done <= requested:
            raise ApiError(422, "completedServices: a service this request does not have")
        additional = [
            s for s in dict.fromkeys(body.additional_services or []) if s not in requested
        ]
        if additional:
            found = await conn.fetch(
                "SELECT serviceid, serviceprice, durationminutes FROM servicemaster"
                " WHERE serviceid = ANY($1::uuid[]) AND tenant_id = $2 AND enabled",
                additional,
                tenant,
            )
            if len(found) != len(additional):
                raise ApiError(422, "additionalServices: unknown or disabled service")
            await conn.executemany(
                "INSERT INTO requestedservices (tenant_id, requestid, serviceid,"
                " serviceprice, durationminutes, servicestatus, isadditional)"
                " VALUES ($1, $2, $3, $4, $5, 'Completed', true)",
                [
                    (tenant, request_id, f["serviceid"], f["serviceprice"], f["durationminutes"])
                    for f in found
                ],
            )
        await conn.execute(
            "UPDATE requestedservices SET servicestatus = CASE WHEN serviceid = ANY($2::uuid[])"
            " THEN 'Completed' ELSE 'Rejected' END, reasonofrejection = CASE WHEN"
            " serviceid = ANY($2::uuid[]) THEN NULL ELSE 'Not performed' END"
            " WHERE requestid = $1 AND NOT isadditional",
            request_id,
            list(done),
        )
        price = await conn.fetchval(
            "SELECT coalesce(sum(serviceprice), 0)::float8 FROM requestedservices"
            " WHERE requestid = $1 AND servicestatus = 'Completed'",
            request_id,
        )
        await act.move(
            "Completed",
            "completedat = now(), mileage = $5, evidences = $6, subtotal = $7,"
            " queueposition = NULL",
            (body.mileage, body.evidences, price),
            detail=f"price {price:.2f}",
        )
        await _set_availability(conn, technician_id, "Available")
        if cur.trip is not None:
            await engine.cancel_trip(conn, cur.trip, tenant=tenant)
        await queue.renumber(conn, tenant, technician_id)
        await act.notifier.service_completed(await act.detail(), tenant)
        await publish_queue(state, conn, tenant, technician_id)
    return float(price)


async def feedback(
    state: ApiState, principal: Principal, request_id: UUID, rating: int, text: str | None
) -> None:
    async with _action(state, principal, request_id, "feedback") as act:
        cur = act.cur
        if cur.state != "Completed":
            raise conflict("Feedback comes after completion", cur.state)
        status = await act.conn.execute(
            "UPDATE servicerequests SET rating = $3, feedback = $4, feedbackat = now(),"
            " version = version + 1, updatedat = now()"
            " WHERE requestid = $1 AND tenant_id = $2 AND rating IS NULL",
            request_id,
            act.tenant,
            rating,
            text,
        )
        if status != "UPDATE 1":
            raise conflict("Feedback was already given", cur.state)
        await act.audit(cur.state, f"rating {rating}")


# ---- escalation ---------------------------------------------------------------------------


async def escalate(
    state: ApiState,
    principal: Principal,
    request_id: UUID,
    priority: CallPriority,
    reason: str | None,
) -> None:
    """Raise an open request's call priority (seed 000: only ever upwards); audited, and
    `request_escalated` to the request's groups."""
    async with _action(state, principal, request_id, "escalate") as act:
        cur, conn = act.cur, act.conn
        if cur.state in TERMINAL_STATES:
            raise conflict(f"Request is already {cur.state}", cur.state)
        rank: int = await conn.fetchval(
            "SELECT priority FROM servicerequests WHERE requestid = $1 FOR NO KEY UPDATE",
            request_id,
        )
        previous = CallPriority.of_rank(rank)
        if priority.rank <= rank:
            raise conflict(
                f"Can only escalate to a higher priority (it is {previous.value})", cur.state
            )
        await conn.execute(
            "UPDATE servicerequests SET priority = $2, version = version + 1,"
            " updatedat = now() WHERE requestid = $1",
            request_id,
            priority.rank,
        )
        detail = f"priority {previous.value} -> {priority.value}"
        await act.audit(cur.state, f"{detail}: {reason}" if reason else detail)
        await act.notifier.escalated(await act.detail(), act.tenant, previous.value, reason)


# ---- arrival (engine event) ---------------------------------------------------------------


async def arrived(state: ApiState, tenant: str, request_id: UUID) -> bool:
    """The engine says the technician reached the request: record when (once)."""
    async with state.tx() as conn:
        row = await conn.fetchrow(
            "UPDATE servicerequests SET arrivedat = now(), version = version + 1,"
            " updatedat = now() WHERE requestid = $1 AND tenant_id = $2"
            " AND requeststatus = 'EnRoute' AND arrivedat IS NULL RETURNING requeststatus",
            request_id,
            tenant,
        )
        if row is None:
            return False
        await audit.record(
            conn,
            tenant=tenant,
            request_id=request_id,
            action="arrived",
            actor=None,
            old_state="EnRoute",
            new_state="EnRoute",
        )
        await Notifier(OutboxWriter(conn)).arrived(await _detail(conn, tenant, request_id), tenant)
    return True
