"""Service requests in the database: who may see which, the detailed shape in one query,
the request as an action reads it (`read_view`), and the writes of the lifecycle (the new
request, a move applied under its version, queue positions)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from api.machine import (
    ACTIVE,
    QUEUED,
    TERMINAL,
    AvailabilityStatus,
    CallPriority,
    Move,
    RequestStatus,
    RequestView,
    TechnicianView,
)
from api.models.catalog import CustomerBasicInfo, TechnicianBasicInfo, VanInfo, VehicleBasicInfo
from api.models.requests import (
    RequestedServiceInfo,
    ServiceRequestBasicInfo,
    ServiceRequestDetailedResponse,
    UserBasicInfo,
)
from api.principal import Principal, Role

NOBODY = uuid.UUID(int=0)
"""A subject that is not a UUID matches no customer or technician."""


def states(members: Iterable[RequestStatus]) -> list[str]:
    """A set of states as a statement's `text[]` parameter."""
    return sorted(s.value for s in members)


QUEUED_STATES = states(QUEUED)
ACTIVE_STATES = states(ACTIVE)
TERMINAL_STATES = states(TERMINAL)
_QUEUED_LITERALS = ", ".join(f"'{s}'" for s in QUEUED_STATES)


def subject_id(principal: Principal) -> UUID:
    try:
        return UUID(principal.subject)
    except ValueError:
        return NOBODY


def scope(principal: Principal, args: list[Any], alias: str = "r") -> str:
    """A WHERE fragment limiting `servicerequests {alias}` to what the principal may read
    (api/personal.py says how much of it). Customers: their own requests. Technicians: the
    requests assigned to them and not finished, those ringing them now (the ring phase for
    them still open), and every Pending request of the tenant (after the ring anyone may
    accept). Staff: the tenant. Appends its parameters to `args`."""
    args.append(principal.tenant)
    clause = f"{alias}.tenant_id = ${len(args)}"
    if principal.role is Role.CUSTOMER:
        args.append(subject_id(principal))
        clause += f" AND {alias}.customerid = ${len(args)}"
    elif principal.role is Role.TECHNICIAN:
        args.append(subject_id(principal))
        n = len(args)
        clause += (
            f" AND (({alias}.currenttechnicianid = ${n}"
            f" AND {alias}.requeststatus IN ({_QUEUED_LITERALS}))"
            f" OR {alias}.requeststatus = '{RequestStatus.PENDING.value}'"
            f" OR ({alias}.requeststatus = '{RequestStatus.RINGING.value}'"
            f" AND EXISTS (SELECT 1 FROM technicianringlog l WHERE l.requestid = {alias}.requestid"
            f" AND l.technicianid = ${n} AND l.ringendedat IS NULL)))"
        )
    return clause


_DETAIL = """
SELECT r.requestid, r.customerid, r.vehicleid, r.requestnumber, r.priority, r.servicescheduletype,
       r.locationpreference, r.requeststatus, r.requestedat, r.scheduledat, r.startedat,
       r.stoppedat, r.completedat, r.cancelledat, r.cancelledby, r.cancellationreason,
       r.latitude::float8 AS latitude, r.longitude::float8 AS longitude, r.location,
       r.description, r.estimatedprice::float8 AS estimatedprice,
       r.subtotal::float8 AS subtotal, r.paymentstatus, r.paymentmethod, r.rating,
       r.feedback, r.mileage, r.evidences, r.assignedat, r.journeystartedat, r.arrivedat,
       r.ringstarttime, r.ringendtime, r.queueposition, r.version, r.tripid,
       r.serviceareaid, sag.name AS serviceareaname, r.sladueat, r.slaviolatedat,
       c.userid AS c_userid, c.customercode, c.email AS c_email, c.firstname AS c_firstname,
       c.lastname AS c_lastname, c.phonenumber AS c_phonenumber,
       c.profileimageurl AS c_profileimageurl, c.gender, c.enabled AS c_enabled,
       v.vin, v.make, v.model, v.year, v.trim, v.vehicletype, v.bodytype,
       v.enabled AS v_enabled,
       t.technicianid, t.userid AS t_userid, t.techniciancode, t.availabilitystatus,
       t.firstname AS t_firstname, t.lastname AS t_lastname, t.email AS t_email,
       t.phonenumber AS t_phonenumber, t.profileimageurl AS t_profileimageurl,
       t.device_id, t.vanid AS t_vanid, t.enabled AS t_enabled,
       van.vanid, van.vannumber, van.registrationnumber, van.vin AS van_vin,
       van.make AS van_make, van.model AS van_model, van.year AS van_year,
       van.enabled AS van_enabled,
       ARRAY(SELECT ROW(rs.serviceid, s.servicecode, s.servicename, s.servicedescription,
                        rs.serviceprice::float8, rs.servicestatus, rs.reasonofrejection,
                        rs.durationminutes, rs.isadditional)
             FROM requestedservices rs JOIN servicemaster s ON s.serviceid = rs.serviceid
             WHERE rs.requestid = r.requestid
             ORDER BY rs.isadditional, s.servicecode) AS services{extra}
FROM servicerequests r
JOIN customermaster c ON c.customerid = r.customerid
JOIN customervehicles v ON v.customervehicleid = r.vehicleid
LEFT JOIN technicianmaster t ON t.technicianid = {technician}
LEFT JOIN vanmaster van ON van.vanid = coalesce(r.vanid, t.vanid)
LEFT JOIN serviceareas sa ON sa.serviceareaid = r.serviceareaid
LEFT JOIN geofences sag ON sag.id = sa.geofenceid
WHERE r.requestid = ANY($1::uuid[]) AND r.tenant_id = $2
"""
_DETAIL_NOW = _DETAIL.format(technician="r.currenttechnicianid", extra="")


def technician_info(row: asyncpg.Record | dict[str, Any]) -> TechnicianBasicInfo:
    return TechnicianBasicInfo(
        user_id=row["t_userid"],
        technician_id=row["technicianid"],
        technician_code=row["techniciancode"],
        availability_status=row["availabilitystatus"],
        first_name=row["t_firstname"],
        last_name=row["t_lastname"],
        email=row["t_email"],
        phone_number=row["t_phonenumber"],
        profile_image_url=row["t_profileimageurl"],
        device_id=row["device_id"],
        van_id=row["t_vanid"],
        enabled=row["t_enabled"],
    )


def customer_info(row: asyncpg.Record) -> CustomerBasicInfo:
    return CustomerBasicInfo(
        user_id=row["c_userid"],
        customer_id=row["customerid"],
        customer_code=row["customercode"],
        email=row["c_email"],
        first_name=row["c_firstname"],
        last_name=row["c_lastname"],
        phone_number=row["c_phonenumber"],
        profile_image_url=row["c_profileimageurl"],
        gender=row["gender"],
        enabled=row["c_enabled"],
    )


def _service(fields: tuple[Any, ...]) -> RequestedServiceInfo:
    """One of the detail query's `services` (its ROW, in that order)."""
    (service_id, code, name, description, price, status, rejection, minutes, additional) = fields
    return RequestedServiceInfo(
        service_id=service_id,
        service_code=code,
        service_name=name,
        service_description=description,
        service_price=price,
        service_status=status,
        reason_of_rejection=rejection,
        duration_minutes=minutes,
        is_additional=additional,
    )


def detail_of(row: asyncpg.Record) -> ServiceRequestDetailedResponse:
    cancelled_by = None
    if row["cancelledby"]:
        role, _, subject = row["cancelledby"].partition(":")
        cancelled_by = UserBasicInfo(role=role, subject=subject)
    duration = None
    if row["startedat"] and row["completedat"]:
        duration = (row["completedat"] - row["startedat"]).total_seconds()
    van = None
    if row["vanid"] is not None:
        van = VanInfo(
            van_id=row["vanid"],
            van_number=row["vannumber"],
            registration_number=row["registrationnumber"],
            vin=row["van_vin"],
            make=row["van_make"],
            model=row["van_model"],
            year=row["van_year"],
            enabled=row["van_enabled"],
        )
    return ServiceRequestDetailedResponse(
        request_id=row["requestid"],
        customer_id=row["customerid"],
        vehicle_id=row["vehicleid"],
        request_number=row["requestnumber"],
        priority=CallPriority.of_rank(row["priority"]),
        service_schedule_type=row["servicescheduletype"],
        location_preference=row["locationpreference"],
        request_status=row["requeststatus"],
        requested_at=row["requestedat"],
        scheduled_at=row["scheduledat"],
        started_at=row["startedat"],
        stopped_at=row["stoppedat"],
        completed_at=row["completedat"],
        duration=duration,
        cancelled_at=row["cancelledat"],
        cancelled_by=cancelled_by,
        cancellation_reason=row["cancellationreason"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        location=row["location"],
        description=row["description"],
        estimated_price=row["estimatedprice"],
        payment_status=row["paymentstatus"],
        payment_method=row["paymentmethod"],
        subtotal=row["subtotal"],
        rating=row["rating"],
        feedback=row["feedback"],
        mileage=row["mileage"],
        evidences=list(row["evidences"]) if row["evidences"] is not None else None,
        assigned_at=row["assignedat"],
        journey_started_at=row["journeystartedat"],
        arrived_at=row["arrivedat"],
        ring_start_time=row["ringstarttime"],
        ring_end_time=row["ringendtime"],
        queue_position=row["queueposition"],
        service_area_id=row["serviceareaid"],
        service_area_name=row["serviceareaname"],
        sla_due_at=row["sladueat"],
        sla_violated_at=row["slaviolatedat"],
        version=row["version"],
        customer=customer_info(row),
        vehicle=VehicleBasicInfo(
            vehicle_id=row["vehicleid"],
            customer_id=row["customerid"],
            vin=row["vin"],
            make=row["make"],
            model=row["model"],
            year=row["year"],
            trim=row["trim"],
            vehicle_type=row["vehicletype"],
            body_type=row["bodytype"],
            enabled=row["v_enabled"],
        ),
        van=van,
        technician=technician_info(row) if row["technicianid"] is not None else None,
        services=[_service(fields) for fields in row["services"]],
    )


async def load_details(
    conn: asyncpg.Connection, tenant: str, ids: list[UUID]
) -> list[ServiceRequestDetailedResponse]:
    """The detailed shapes of these requests of the tenant, in the order of `ids`."""
    if not ids:
        return []
    rows = {r["requestid"]: r for r in await conn.fetch(_DETAIL_NOW, ids, tenant)}
    return [detail_of(rows[i]) for i in ids if i in rows]


async def load_detail(
    conn: asyncpg.Connection, tenant: str, request_id: UUID
) -> ServiceRequestDetailedResponse | None:
    found = await load_details(conn, tenant, [request_id])
    return found[0] if found else None


def basic_info(detail: ServiceRequestDetailedResponse) -> ServiceRequestBasicInfo:
    return ServiceRequestBasicInfo(
        request_id=detail.request_id,
        request_number=detail.request_number,
        customer_id=detail.customer_id,
        technician_id=detail.technician.technician_id if detail.technician else None,
        request_status=detail.request_status,
        latitude=detail.latitude,
        longitude=detail.longitude,
        location=detail.location,
        requested_at=detail.requested_at,
    )


async def visible(conn: asyncpg.Connection, principal: Principal, request_id: UUID) -> bool:
    args: list[Any] = [request_id]
    where = scope(principal, args)
    found: bool | None = await conn.fetchval(
        f"SELECT true FROM servicerequests r WHERE r.requestid = $1 AND {where}", *args
    )
    return bool(found)


async def visible_detail(
    conn: asyncpg.Connection, principal: Principal, request_id: UUID
) -> ServiceRequestDetailedResponse | None:
    """The request's detailed shape if the principal may see it (one query)."""
    args: list[Any] = [request_id, principal.tenant]
    where = scope(principal, args)
    row = await conn.fetchrow(f"{_DETAIL_NOW} AND {where}", [request_id], *args[1:])
    return detail_of(row) if row is not None else None


# ---- the request as an action reads it -----------------------------------------------------

VIEW_COLUMNS = """
r.requestid, r.requeststatus, r.version, r.customerid, r.currenttechnicianid,
r.requestnumber, r.priority, r.ringendtime, r.arrivedat, r.tripid,
r.rating IS NOT NULL AS rated, r.slaviolatedat IS NOT NULL AS slaviolated,
r.latitude::float8 AS lat, r.longitude::float8 AS lon
"""
"""What `view_of` reads of a request (with `rung`: whether the acting technician was rung)."""

_RUNG = (
    "EXISTS (SELECT 1 FROM technicianringlog l"
    " WHERE l.requestid = r.requestid AND l.technicianid = $3) AS rung"
)


def view_of(row: asyncpg.Record) -> RequestView:
    return RequestView(
        id=row["requestid"],
        status=RequestStatus(row["requeststatus"]),
        version=row["version"],
        customer=row["customerid"],
        technician=row["currenttechnicianid"],
        rung=row["rung"],
        number=row["requestnumber"],
        priority=row["priority"],
        ring_ended_at=row["ringendtime"],
        arrived_at=row["arrivedat"],
        trip=row["tripid"],
        rated=row["rated"],
        sla_violated=row["slaviolated"],
        lat=row["lat"],
        lon=row["lon"],
    )


def acting_technician(principal: Principal | None) -> UUID:
    """The technician whose ring the view's `rung` looks for (nobody but a technician)."""
    if principal is None or principal.role is not Role.TECHNICIAN:
        return NOBODY
    return subject_id(principal)


async def read_view(
    conn: asyncpg.Connection,
    tenant: str,
    request_id: UUID,
    principal: Principal | None,
    *,
    lock: str = "",
) -> RequestView | None:
    """The request as an action reads it, in the tenant (who may see it is for
    `api.machine.decide`); `lock`: a row lock such as `FOR SHARE`."""
    row = await conn.fetchrow(
        f"SELECT {VIEW_COLUMNS}, {_RUNG} FROM servicerequests r"
        f" WHERE r.requestid = $1 AND r.tenant_id = $2 {lock}",
        request_id,
        tenant,
        acting_technician(principal),
    )
    return view_of(row) if row is not None else None


async def state_of(conn: asyncpg.Connection, request_id: UUID) -> RequestStatus | None:
    found: str | None = await conn.fetchval(
        "SELECT requeststatus FROM servicerequests WHERE requestid = $1", request_id
    )
    return RequestStatus(found) if found is not None else None


async def service_minutes(conn: asyncpg.Connection, request_id: UUID) -> float:
    """The durations of the request's services (what the engine's trip serves there)."""
    minutes = await conn.fetchval(
        "SELECT coalesce(sum(durationminutes), 0) FROM requestedservices WHERE requestid = $1",
        request_id,
    )
    return float(minutes)


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """A request in a technician's queue, as its ETA needs it."""

    request_id: UUID
    customer_id: UUID
    status: RequestStatus
    started_at: datetime | None
    lat: float
    lon: float
    minutes: float
    """The durations of its services not rejected."""

    @classmethod
    def of(cls, row: asyncpg.Record | Mapping[str, Any]) -> QueuedRequest:
        return cls(
            row["requestid"], row["customerid"], RequestStatus(row["requeststatus"]),
            row["startedat"], row["lat"], row["lon"], float(row["minutes"]),
        )  # fmt: skip


# ---- the accept's one read ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AcceptRead:
    """What an accept needs before its one statement, from one query: the request, the
    technician, the request's detail as if theirs (their info, their van), their queue."""

    view: RequestView
    technician: TechnicianView | None
    detail: ServiceRequestDetailedResponse
    device: str | None
    queue: list[QueuedRequest]
    minutes: float
    """The durations of the request's services (its place in their queue's ETAs)."""


_ACCEPT_READ = _DETAIL.format(
    technician="$3::uuid",
    extra=f""",
       r.currenttechnicianid, r.rating IS NOT NULL AS rated,
       r.slaviolatedat IS NOT NULL AS slaviolated, {_RUNG},
       r.latitude::float8 AS lat, r.longitude::float8 AS lon,
       t.availabilitystatus AS t_availability,
       coalesce((SELECT sum(durationminutes) FROM requestedservices rs
                 WHERE rs.requestid = r.requestid AND rs.servicestatus <> 'Rejected'), 0)::float8
           AS minutes,
       ARRAY(SELECT ROW(q.requestid, q.customerid, q.requeststatus, q.startedat,
                        q.latitude::float8, q.longitude::float8,
                        coalesce((SELECT sum(durationminutes) FROM requestedservices qs
                                  WHERE qs.requestid = q.requestid
                                    AND qs.servicestatus <> 'Rejected'), 0)::float8)
             FROM servicerequests q
             WHERE q.tenant_id = r.tenant_id AND q.currenttechnicianid = $3
               AND q.requeststatus = ANY($4::text[])
             ORDER BY q.queueposition NULLS LAST, q.assignedat, q.requestid) AS queue""",
)


async def accept_read(
    conn: asyncpg.Connection, tenant: str, request_id: UUID, technician_id: UUID
) -> AcceptRead | None:
    """The request and the accepting technician as the accept reads them (one query)."""
    row = await conn.fetchrow(_ACCEPT_READ, [request_id], tenant, technician_id, QUEUED_STATES)
    if row is None:
        return None
    view = view_of(row)
    queued = [QueuedRequest(i, c, RequestStatus(s), at, lat, lon, m)
              for i, c, s, at, lat, lon, m in row["queue"]]  # fmt: skip
    technician = None
    if row["technicianid"] is not None and row["t_enabled"]:
        technician = TechnicianView(
            technician_id, AvailabilityStatus(row["t_availability"]), len(queued)
        )
    detail = detail_of(row)
    return AcceptRead(view, technician, detail, row["device_id"], queued, row["minutes"])


# ---- writes ---------------------------------------------------------------------------------

WRITABLE = frozenset(
    {
        "currenttechnicianid", "assignedat", "queueposition", "ringstarttime", "ringendtime",
        "scheduledat", "tripid", "journeystartedat", "arrivedat", "startedat", "completedat",
        "mileage", "evidences", "subtotal", "cancelledat", "cancelledby", "cancellationreason",
        "rating", "feedback", "feedbackat", "priority", "slaviolatedat",
    }
)  # fmt: skip
"""The columns a move may set (api/machine.py names them; nothing else reaches SQL)."""


async def apply(conn: asyncpg.Connection, tenant: str, request: RequestView, move: Move) -> bool:
    """The move's conditional UPDATE: applies only if nobody changed the request since it
    was read (its version); the version goes up by one."""
    args: list[Any] = [request.id, tenant, request.version, move.new.value]
    sets = ["requeststatus = $4", "version = version + 1", "updatedat = now()"]
    for column, value in move.changes.items():
        if column not in WRITABLE:
            raise ValueError(f"a move may not set {column}")
        args.append(value)
        sets.append(f"{column} = ${len(args)}")
    status: str = await conn.execute(
        f"UPDATE servicerequests SET {', '.join(sets)}"
        " WHERE requestid = $1 AND tenant_id = $2 AND version = $3",
        *args,
    )
    return status == "UPDATE 1"


async def set_positions(conn: asyncpg.Connection, order: list[UUID]) -> None:
    """Queue positions 1..n in this order (not a state change: versions stay)."""
    await conn.execute(
        "UPDATE servicerequests r SET queueposition = o.n, updatedat = now()"
        " FROM unnest($1::uuid[]) WITH ORDINALITY AS o(requestid, n)"
        " WHERE r.requestid = o.requestid",
        order,
    )


async def renumber(conn: asyncpg.Connection, tenant: str, technician_id: UUID) -> None:
    """Positions 1..n over the technician's queued requests, keeping their order; requests
    that left the queue lose their position. Not a state change: versions stay."""
    await conn.execute(
        """
        UPDATE servicerequests r SET queueposition = q.rn
        FROM (SELECT requestid, row_number() OVER (
                  ORDER BY queueposition NULLS LAST, assignedat, requestid) AS rn
              FROM servicerequests
              WHERE tenant_id = $1 AND currenttechnicianid = $2
                AND requeststatus = ANY($3::text[])) q
        WHERE r.requestid = q.requestid AND r.queueposition IS DISTINCT FROM q.rn
        """,
        tenant,
        technician_id,
        QUEUED_STATES,
    )


# ---- a technician's queue ---------------------------------------------------------------------

QUEUE_ROW = """
SELECT r.requestid, r.customerid, r.requeststatus, r.queueposition, r.startedat,
       r.assignedat, r.latitude::float8 AS lat, r.longitude::float8 AS lon,
       coalesce((SELECT sum(durationminutes) FROM requestedservices rs
                 WHERE rs.requestid = r.requestid
                   AND rs.servicestatus <> 'Rejected'), 0)::float8 AS minutes
FROM servicerequests r
"""
"""A queued request as the queue's ETAs need it (api/queue.py)."""
QUEUE_ORDER = "ORDER BY r.queueposition NULLS LAST, r.assignedat, r.requestid"


async def queue_of(
    conn: asyncpg.Connection, tenant: str, technician_id: UUID
) -> tuple[str | None, list[asyncpg.Record]]:
    """(the technician's device, their queued requests in order) in one round trip."""
    found = await conn.fetch(
        f"""
        SELECT t.device_id, q.*
        FROM technicianmaster t
        LEFT JOIN LATERAL (
            {QUEUE_ROW}
            WHERE r.tenant_id = $1 AND r.currenttechnicianid = t.technicianid
              AND r.requeststatus = ANY($3::text[])
        ) q ON true
        WHERE t.technicianid = $2
        ORDER BY q.queueposition NULLS LAST, q.assignedat, q.requestid
        """,
        tenant,
        technician_id,
        QUEUED_STATES,
    )
    device_id = found[0]["device_id"] if found else None
    return device_id, [row for row in found if row["requestid"] is not None]


async def open_request_of(
    conn: asyncpg.Connection, principal: Principal, *, first: bool = False
) -> UUID | None:
    """A technician's request at the head of their queue (`first`: the one under way
    first), or a customer's newest open request."""
    me = subject_id(principal)
    if principal.role is Role.TECHNICIAN:
        under_way_first = "requeststatus = ANY($4::text[]) DESC, " if first else ""
        found: UUID | None = await conn.fetchval(
            "SELECT requestid FROM servicerequests WHERE tenant_id = $1"
            " AND currenttechnicianid = $2 AND requeststatus = ANY($3::text[])"
            f" ORDER BY {under_way_first}queueposition NULLS LAST, assignedat LIMIT 1",
            principal.tenant,
            me,
            QUEUED_STATES,
            *([ACTIVE_STATES] if first else []),
        )
        return found
    found = await conn.fetchval(
        "SELECT requestid FROM servicerequests WHERE tenant_id = $1 AND customerid = $2"
        " AND NOT requeststatus = ANY($3::text[]) ORDER BY requestedat DESC LIMIT 1",
        principal.tenant,
        me,
        TERMINAL_STATES,
    )
    return found


# ---- creation and completion ------------------------------------------------------------------


async def requested_services(conn: asyncpg.Connection, request_id: UUID) -> dict[UUID, Decimal]:
    """The services the request was made for (not those added at completion), by price."""
    rows = await conn.fetch(
        "SELECT serviceid, serviceprice AS price FROM requestedservices"
        " WHERE requestid = $1 AND NOT isadditional",
        request_id,
    )
    return {r["serviceid"]: r["price"] for r in rows}


async def catalog_services(
    conn: asyncpg.Connection, tenant: str, ids: list[UUID]
) -> list[asyncpg.Record]:
    """The tenant's enabled services of these ids (price, duration)."""
    return list(
        await conn.fetch(
            "SELECT serviceid, serviceprice, durationminutes FROM servicemaster"
            " WHERE serviceid = ANY($1::uuid[]) AND tenant_id = $2 AND enabled",
            ids,
            tenant,
        )
    )


async def add_services(
    conn: asyncpg.Connection,
    tenant: str,
    request_id: UUID,
    services: list[asyncpg.Record],
    *,
    additional: bool = False,
) -> None:
    """Services of a request: those it was made for, or those added at completion (done)."""
    await conn.execute(
        "INSERT INTO requestedservices (tenant_id, requestid, serviceid, serviceprice,"
        " durationminutes, servicestatus, isadditional)"
        " SELECT $1, $2, s, p, d, CASE WHEN $6 THEN 'Completed' ELSE 'Pending' END, $6"
        " FROM unnest($3::uuid[], $4::numeric[], $5::integer[]) AS u(s, p, d)",
        tenant,
        request_id,
        [s["serviceid"] for s in services],
        [s["serviceprice"] for s in services],
        [s["durationminutes"] for s in services],
        additional,
    )


async def mark_services(conn: asyncpg.Connection, request_id: UUID, done: list[UUID]) -> None:
    """The request's own services: done ones Completed, the rest Rejected (not performed)."""
    await conn.execute(
        "UPDATE requestedservices SET servicestatus = CASE WHEN serviceid = ANY($2::uuid[])"
        " THEN 'Completed' ELSE 'Rejected' END, reasonofrejection = CASE WHEN"
        " serviceid = ANY($2::uuid[]) THEN NULL ELSE 'Not performed' END"
        " WHERE requestid = $1 AND NOT isadditional",
        request_id,
        done,
    )


async def open_requests_of(conn: asyncpg.Connection, tenant: str, customer_id: UUID) -> int:
    """How many requests the customer has open, their row locked for this transaction (two
    creations of theirs count one after the other)."""
    await conn.execute(
        "SELECT 1 FROM customermaster WHERE customerid = $1 AND tenant_id = $2 FOR UPDATE",
        customer_id,
        tenant,
    )
    found: int = await conn.fetchval(
        "SELECT count(*) FROM servicerequests WHERE tenant_id = $1 AND customerid = $2"
        " AND NOT requeststatus = ANY($3::text[])",
        tenant,
        customer_id,
        TERMINAL_STATES,
    )
    return found


async def customer_enabled(conn: asyncpg.Connection, tenant: str, customer_id: UUID) -> bool:
    """The customer is the tenant's and enabled (staff create requests for them)."""
    found: bool | None = await conn.fetchval(
        "SELECT enabled FROM customermaster WHERE customerid = $1 AND tenant_id = $2",
        customer_id,
        tenant,
    )
    return bool(found)


async def vehicle_of_customer(
    conn: asyncpg.Connection, tenant: str, customer_id: UUID, vehicle_id: UUID
) -> bool:
    """The vehicle is the customer's, and both are enabled."""
    found: bool | None = await conn.fetchval(
        "SELECT true FROM customervehicles v JOIN customermaster c USING (customerid)"
        " WHERE v.customervehicleid = $1 AND v.customerid = $2 AND v.tenant_id = $3"
        " AND v.enabled AND c.enabled",
        vehicle_id,
        customer_id,
        tenant,
    )
    return bool(found)


_INSERT = """
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
       $9::text, $10::text, $11::numeric, $12::varchar, $13::timestamptz, $14::integer,
       $15::smallint, area.serviceareaid,
       coalesce($6::timestamptz, now())
           + make_interval(mins => area.responsetimeslaminutes)
FROM (SELECT) one LEFT JOIN area ON true
RETURNING requestid, requestnumber
"""
"""The request, in the service area that holds its location (if any) with its SLA due time:
the requested or scheduled time plus the area's response time."""


async def insert(
    conn: asyncpg.Connection,
    tenant: str,
    customer_id: UUID,
    values: dict[str, Any],
    move: Move,
    *,
    price: float,
    max_ring_miles: int,
) -> tuple[UUID, str]:
    """A new request as `move` (the creation) says; (its id, its number)."""
    from api.store.service_areas import AREA_AT

    statement = _INSERT.format(area=AREA_AT.format(tenant="$1", lat="$7::float8", lon="$8::float8"))
    row = await conn.fetchrow(
        statement,
        tenant,
        customer_id,
        values["vehicle_id"],
        values["service_schedule_type"],
        values["location_preference"],
        values["scheduled_at"],
        values["latitude"],
        values["longitude"],
        values["location"],
        values["description"],
        price,
        move.new.value,
        move.changes["ringstarttime"],
        max_ring_miles,
        values["priority"],
    )
    assert row is not None  # INSERT ... RETURNING returns the row
    return row["requestid"], row["requestnumber"]
