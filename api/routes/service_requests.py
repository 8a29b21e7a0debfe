"""Service requests: create, the actions of the lifecycle, and the read side."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import IntEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query

from api import lifecycle, queue
from api.auth import Principal, Role
from api.deps import CustomerDep, DbDep, PrincipalDep, StaffDep, StateDep, TechnicianDep, require
from api.errors import forbidden, not_found
from api.models.catalog import TechnicianBasicInfo
from api.models.common import Envelope, ServerPaginatedData, paginated
from api.models.requests import (
    AssignServiceRequestModel,
    CompleteServiceRequest,
    CreateServiceRequest,
    CreateServiceRequestResponse,
    EscalateServiceRequest,
    QueueInfo,
    QueueOrder,
    ServiceRequestAction,
    ServiceRequestDetailedResponse,
    ServiceRequestsFilter,
    ServiceRequestSummary,
    SubmitFeedback,
    TechnicianSuggestionsFilter,
    TechnicianSuggestionsResponse,
)
from api.models.tracking import (
    CustomerLocation,
    LocationBroadcastModel,
    NamedCustomer,
    NamedTechnician,
    NamedVan,
    RouteRequestInfo,
    ServiceRequestRouteInformation,
    TechnicianLocation,
)
from api.routes.catalog import done
from api.store.requests import (
    ACTIVE_STATES,
    QUEUED_STATES,
    basic_info,
    load_detail,
    load_details,
    scope,
    subject_id,
    technician_info,
)
from contracts import geodesy

router = APIRouter(tags=["service requests"])

TechOrCustomerDep = Annotated[Principal, Depends(require(Role.TECHNICIAN, Role.CUSTOMER))]


class ActionType(IntEnum):
    ACCEPT = 1
    REJECT = 2
    CANCEL = 3


class WorkAction(IntEnum):
    START = 1
    COMPLETE = 2


@router.post("/service-request")
async def create_request(
    body: CreateServiceRequest, state: StateDep, principal: CustomerDep
) -> Envelope[CreateServiceRequestResponse]:
    request_id, number = await lifecycle.create(state, principal, body)
    return Envelope[CreateServiceRequestResponse](
        status=200,
        message="Service request created successfully",
        data=CreateServiceRequestResponse(request_id=request_id, request_number=number),
    )


@router.put("/service-request/{requestId}/priority")
async def escalate_request(
    requestId: UUID, body: EscalateServiceRequest, state: StateDep, principal: StaffDep
) -> Envelope[None]:
    """Raise an open request's call priority (never lower it): 409 when it is not higher."""
    await lifecycle.escalate(state, principal, requestId, body.priority, body.reason)
    return done("Priority escalated")


@router.put("/service-request/{requestId}/{actionType}")
async def request_action(
    requestId: UUID,
    actionType: ActionType,
    state: StateDep,
    principal: PrincipalDep,
    body: Annotated[ServiceRequestAction | None, Body()] = None,
) -> Envelope[None]:
    """1 = Accept, 2 = Reject (technicians), 3 = Cancel (customer, technician or staff)."""
    reason = body.reason if body else None
    if actionType is ActionType.CANCEL:
        await lifecycle.cancel(state, principal, requestId, reason)
        return done("Service request canceled")
    if principal.role is not Role.TECHNICIAN:
        raise forbidden("Only technicians accept or reject")
    if actionType is ActionType.ACCEPT:
        where = (
            body.location_update.model_dump(by_alias=True)
            if body and body.location_update
            else None
        )
        await lifecycle.accept(state, principal, requestId, where)
        return done("Action completed successfully")
    await lifecycle.reject(state, principal, requestId, reason)
    return done("Action completed successfully")


@router.put("/service-request/{requestId}")
async def work_action(
    requestId: UUID,
    workAction: Annotated[WorkAction, Query()],
    state: StateDep,
    principal: TechnicianDep,
    body: Annotated[CompleteServiceRequest | None, Body()] = None,
) -> Envelope[dict[str, float] | None]:
    """1 = Start work, 2 = Complete (mileage, evidences, completed services)."""
    if workAction is WorkAction.START:
        await lifecycle.start_work(state, principal, requestId)
        return Envelope[dict[str, float] | None](status=200, message="Work started successfully")
    price = await lifecycle.complete(state, principal, requestId, body or CompleteServiceRequest())
    return Envelope[dict[str, float] | None](
        status=200, message="Work completed successfully", data={"totalPrice": price}
    )


@router.post("/service-request/feedback/{requestId}")
async def submit_feedback(
    requestId: UUID, body: SubmitFeedback, state: StateDep, principal: CustomerDep
) -> Envelope[None]:
    await lifecycle.feedback(state, principal, requestId, body.rating, body.feedback)
    return done("Feedback submitted successfully")


@router.post("/service-request/assign")
async def assign_request(
    body: AssignServiceRequestModel, state: StateDep, principal: StaffDep
) -> Envelope[None]:
    await lifecycle.assign(state, principal, body.request_id, body.technician_id, body.scheduled_at)
    return done("Service request assigned successfully to technician")


@router.post("/service-request/{requestId}/unassign")
async def unassign_request(requestId: UUID, state: StateDep, principal: StaffDep) -> Envelope[None]:
    await lifecycle.unassign(state, principal, requestId)
    return done("Service request unassigned: back to Pending")


@router.put("/technician/{technicianId}/queue")
async def reorder_queue(
    technicianId: UUID, body: QueueOrder, state: StateDep, principal: StaffDep
) -> Envelope[None]:
    await lifecycle.reorder(state, principal, technicianId, body.request_ids)
    return done("Queue reordered")


@router.post("/service-request/{requestId}/start-journey")
async def start_journey(
    requestId: UUID, state: StateDep, principal: TechnicianDep
) -> Envelope[None]:
    await lifecycle.start_journey(state, principal, requestId)
    return done("Journey started successfully")


# ---- read side ---------------------------------------------------------------------------


@router.get("/service-requests")
async def list_requests(
    db: DbDep, principal: PrincipalDep, filters: Annotated[ServiceRequestsFilter, Query()]
) -> ServerPaginatedData[ServiceRequestDetailedResponse]:
    args: list[Any] = []
    clauses = [scope(principal, args)]
    for value, column in (
        (filters.request_status, "requeststatus"),
        (filters.payment_status, "paymentstatus"),
        (filters.service_schedule_type, "servicescheduletype"),
        (filters.location_preference, "locationpreference"),
    ):
        if value is not None:
            args.append(value.value)
            clauses.append(f"r.{column} = ${len(args)}")
    if filters.priority is not None:
        args.append(filters.priority.rank)
        clauses.append(f"r.priority = ${len(args)}")
    if filters.service_area_id is not None:
        args.append(filters.service_area_id)
        clauses.append(f"r.serviceareaid = ${len(args)}")
    if filters.from_date is not None:
        args.append(filters.from_date)
        clauses.append(f"r.requestedat >= ${len(args)}")
    if filters.to_date is not None:
        args.append(filters.to_date)
        clauses.append(f"r.requestedat <= ${len(args)}")
    if filters.action is not None:
        args.append(filters.action.value)
        mine = ""
        if principal.role is Role.TECHNICIAN:
            args.append(subject_id(principal))
            mine = f" AND e.technicianid = ${len(args)}"
        clauses.append(
            "EXISTS (SELECT 1 FROM technicianengagementdetails e WHERE e.requestid = r.requestid"
            f" AND e.action = ${len(args) - (1 if mine else 0)}{mine})"
        )
    where = " AND ".join(clauses)
    total = await db.fetchval(f"SELECT count(*) FROM servicerequests r WHERE {where}", *args)
    ids = [
        row["requestid"]
        for row in await db.fetch(
            f"SELECT r.requestid FROM servicerequests r WHERE {where}"
            f" ORDER BY r.requestedat DESC, r.requestid"
            f" LIMIT {filters.rows_per_page} OFFSET {filters.offset}",
            *args,
        )
    ]
    return paginated(await load_details(db, principal.tenant, ids), total, filters)


async def _visible_detail(
    db: DbDep, principal: Principal, request_id: UUID
) -> ServiceRequestDetailedResponse:
    args: list[Any] = [request_id]
    where = scope(principal, args)
    if not await db.fetchval(
        f"SELECT true FROM servicerequests r WHERE r.requestid = $1 AND {where}", *args
    ):
        raise not_found("Service request")
    detail = await load_detail(db, principal.tenant, request_id)
    if detail is None:
        raise not_found("Service request")
    return detail


@router.get("/service-request/initial-data")
async def initial_data(
    state: StateDep, db: DbDep, principal: TechOrCustomerDep
) -> Envelope[LocationBroadcastModel]:
    """Technician: the request at queue position 1; customer: their open request."""
    me = subject_id(principal)
    if principal.role is Role.TECHNICIAN:
        request_id = await db.fetchval(
            "SELECT requestid FROM servicerequests WHERE tenant_id = $1"
            " AND currenttechnicianid = $2 AND requeststatus = ANY($3::text[])"
            " ORDER BY queueposition NULLS LAST, assignedat LIMIT 1",
            principal.tenant,
            me,
            list(QUEUED_STATES),
        )
    else:
        request_id = await db.fetchval(
            "SELECT requestid FROM servicerequests WHERE tenant_id = $1 AND customerid = $2"
            " AND requeststatus NOT IN ('Completed', 'Canceled')"
            " ORDER BY requestedat DESC LIMIT 1",
            principal.tenant,
            me,
        )
    if request_id is None:
        raise not_found("Open service request")
    detail = await _visible_detail(db, principal, request_id)
    route = await queue.latest_route(state.redis, state.settings.redis_prefix, str(request_id))
    location = await _technician_location(state, detail)
    counts = await _job_counts(db, principal.tenant, detail.technician.technician_id) if (
        detail.technician
    ) else (None, None)  # fmt: skip
    data = LocationBroadcastModel(
        service_request_info=basic_info(detail),
        technician_info=detail.technician,
        customer_info=detail.customer,
        van_info=detail.van,
        technician_location=location,
        distance_in_meter=_int(route, "distance_m"),
        eta_in_sec=_int(route, "eta_s"),
        encoded_polyline=route.get("polyline") if route else None,
        polyline_version=_int(route, "polyline_version"),
        completed_jobs=counts[0],
        queued_jobs=counts[1],
    )
    return Envelope[LocationBroadcastModel](
        status=200, message="Initial data retrieved successfully", data=data
    )


@router.get("/service-request/{requestId}")
async def get_request(
    requestId: UUID, db: DbDep, principal: PrincipalDep
) -> Envelope[ServiceRequestDetailedResponse]:
    detail = await _visible_detail(db, principal, requestId)
    return Envelope[ServiceRequestDetailedResponse](status=200, message="OK", data=detail)


@router.get("/technician/current-request")
async def current_request(
    db: DbDep, principal: TechnicianDep
) -> Envelope[ServiceRequestDetailedResponse]:
    request_id = await db.fetchval(
        "SELECT requestid FROM servicerequests WHERE tenant_id = $1 AND currenttechnicianid = $2"
        " AND requeststatus = ANY($3::text[])"
        " ORDER BY requeststatus = ANY($4::text[]) DESC, queueposition NULLS LAST, assignedat"
        " LIMIT 1",
        principal.tenant,
        subject_id(principal),
        list(QUEUED_STATES),
        list(ACTIVE_STATES),
    )
    if request_id is None:
        raise not_found("Current request")
    detail = await _visible_detail(db, principal, request_id)
    return Envelope[ServiceRequestDetailedResponse](status=200, message="OK", data=detail)


@router.get("/service-request/{technicianId}/scheduled-requests")
async def scheduled_requests(
    technicianId: UUID,
    db: DbDep,
    principal: PrincipalDep,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> Envelope[list[ServiceRequestSummary]]:
    """A technician's requests scheduled on a day (UTC; default today): staff or themselves."""
    if principal.role is Role.TECHNICIAN and subject_id(principal) != technicianId:
        raise not_found("Technician")
    if principal.role is Role.CUSTOMER:
        raise forbidden()
    if not await db.fetchval(
        "SELECT true FROM technicianmaster WHERE technicianid = $1 AND tenant_id = $2",
        technicianId,
        principal.tenant,
    ):
        raise not_found("Technician")
    start = datetime.combine(day or datetime.now(UTC).date(), time.min)  # naive UTC
    rows = await db.fetch(
        """
        SELECT r.requestid, r.requestnumber, r.customerid, r.currenttechnicianid,
               r.requeststatus, r.latitude::float8 AS lat, r.longitude::float8 AS lon,
               r.location, r.requestedat, r.scheduledat,
               (SELECT sum(durationminutes) FROM requestedservices rs
                WHERE rs.requestid = r.requestid)::int AS minutes
        FROM servicerequests r
        WHERE r.tenant_id = $1 AND r.currenttechnicianid = $2
          AND r.scheduledat >= $3::timestamp AT TIME ZONE 'UTC'
          AND r.scheduledat < $4::timestamp AT TIME ZONE 'UTC'
          AND r.requeststatus NOT IN ('Canceled')
        ORDER BY r.scheduledat
        """,
        principal.tenant,
        technicianId,
        start,
        start + timedelta(days=1),
    )
    data = [
        ServiceRequestSummary(
            request_id=r["requestid"],
            request_number=r["requestnumber"],
            customer_id=r["customerid"],
            technician_id=r["currenttechnicianid"],
            request_status=r["requeststatus"],
            latitude=r["lat"],
            longitude=r["lon"],
            location=r["location"],
            requested_at=r["requestedat"],
            scheduled_at=r["scheduledat"],
            estimated_duration=r["minutes"],
        )
        for r in rows
    ]
    return Envelope[list[ServiceRequestSummary]](status=200, message="OK", data=data)


def _int(route: dict[str, Any] | None, key: str) -> int | None:
    if not route or route.get(key) is None:
        return None
    return round(float(route[key]))


async def _technician_location(
    state: StateDep, detail: ServiceRequestDetailedResponse
) -> TechnicianLocation | None:
    if detail.technician is None:
        return None
    where = await queue.live_position(state.redis, state.keys, detail.technician.device_id)
    if where is None:
        return None
    return TechnicianLocation(
        latitude=where["latitude"],
        longitude=where["longitude"],
        heading=where["heading"],
        speed=where["speed"],
        accuracy=where["accuracy"],
        updated_at=where["updatedAt"],
    )


async def _job_counts(db: DbDep, tenant: str, technician_id: UUID) -> tuple[int, int]:
    """(completed today, queued now) of a technician; today is the UTC day."""
    row = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE requeststatus = 'Completed'"
        "   AND completedat >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
        "   AS completed,"
        " count(*) FILTER (WHERE requeststatus = ANY($3::text[])) AS queued"
        " FROM servicerequests WHERE tenant_id = $1 AND currenttechnicianid = $2",
        tenant,
        technician_id,
        list(QUEUED_STATES),
    )
    assert row is not None  # an aggregate always answers one row
    return int(row["completed"]), int(row["queued"])


@router.get("/service-request/{requestId}/route-info")
async def route_info(
    requestId: UUID, state: StateDep, db: DbDep, principal: PrincipalDep
) -> Envelope[ServiceRequestRouteInformation]:
    detail = await _visible_detail(db, principal, requestId)
    route = await queue.latest_route(state.redis, state.settings.redis_prefix, str(requestId))
    t = detail.technician
    data = ServiceRequestRouteInformation(
        service_request_info=RouteRequestInfo(
            request_id=detail.request_id, status=detail.request_status
        ),
        technician_info=NamedTechnician(
            technician_id=t.technician_id, name=f"{t.first_name} {t.last_name}".strip()
        )
        if t
        else None,
        customer_info=NamedCustomer(
            customer_id=detail.customer_id,
            name=f"{detail.customer.first_name} {detail.customer.last_name}".strip(),
        ),
        van_info=NamedVan(van_id=detail.van.van_id, registration=detail.van.registration_number)
        if detail.van
        else None,
        customer_location=CustomerLocation(latitude=detail.latitude, longitude=detail.longitude),
        technician_location=await _technician_location(state, detail),
        distance_in_meter=_int(route, "distance_m"),
        eta_in_sec=_int(route, "eta_s"),
        encoded_polyline=route.get("polyline") if route else None,
        polyline_version=_int(route, "polyline_version"),
        calculation_strategy=route.get("calculation") if route else None,
    )
    return Envelope[ServiceRequestRouteInformation](status=200, message="OK", data=data)


@router.get("/service-request/{requestId}/queue")
async def queue_position(
    requestId: UUID, state: StateDep, db: DbDep, principal: PrincipalDep
) -> Envelope[QueueInfo]:
    """Where the request stands in its technician's queue (FIFO) and its ETA window."""
    detail = await _visible_detail(db, principal, requestId)
    if detail.technician is None:
        data = QueueInfo(request_id=requestId, queue_length=0)
        return Envelope[QueueInfo](status=200, message="Not assigned yet", data=data)
    items = await queue.entries(
        db, state.redis, state.settings, principal.tenant, detail.technician.technician_id
    )
    mine = next((i for i in items if i["requestId"] == str(requestId)), None)
    data = QueueInfo(
        request_id=requestId,
        technician_id=detail.technician.technician_id,
        queue_position=mine["queuePosition"] if mine else None,
        queue_length=len(items),
        eta_seconds=mine["etaSeconds"] if mine else None,
        eta_window_start=mine["etaWindowStart"] if mine else None,
        eta_window_end=mine["etaWindowEnd"] if mine else None,
    )
    return Envelope[QueueInfo](status=200, message="OK", data=data)


async def _suggestions(
    state: StateDep,
    db: DbDep,
    tenant: str,
    filters: TechnicianSuggestionsFilter,
    near: tuple[float, float] | None,
) -> ServerPaginatedData[TechnicianSuggestionsResponse]:
    args: list[Any] = [tenant]
    where = "t.tenant_id = $1 AND t.enabled"
    if filters.search_keyword:
        args.append(f"%{filters.search_keyword}%")
        n = len(args)
        where += (
            f" AND (t.techniciancode ILIKE ${n} OR t.firstname ILIKE ${n}"
            f" OR t.lastname ILIKE ${n} OR t.email ILIKE ${n})"
        )
    total = await db.fetchval(f"SELECT count(*) FROM technicianmaster t WHERE {where}", *args)
    rows = await db.fetch(
        f"""
        SELECT t.technicianid, t.userid AS t_userid, t.techniciancode, t.availabilitystatus,
               t.firstname AS t_firstname, t.lastname AS t_lastname, t.email AS t_email,
               t.phonenumber AS t_phonenumber, t.profileimageurl AS t_profileimageurl,
               t.device_id, t.vanid AS t_vanid, t.enabled AS t_enabled
        FROM technicianmaster t WHERE {where}
        ORDER BY t.availabilitystatus = 'Available' DESC, t.techniciancode
        LIMIT {filters.rows_per_page} OFFSET {filters.offset}
        """,
        *args,
    )
    items = []
    for row in rows:
        completed, queued = await _job_counts(db, tenant, row["technicianid"])
        eta_min: int | None = None
        meters: int | None = None
        if near is not None:
            where_now = await queue.live_position(state.redis, state.keys, row["device_id"])
            if where_now is not None:
                m = geodesy.haversine_m(
                    where_now["latitude"], where_now["longitude"], near[0], near[1]
                )
                meters = round(m)
                eta_min = round(m / state.settings.fallback_speed_mps / 60)
        items.append(
            TechnicianSuggestionsResponse(
                technician_info=technician_info(row),
                eta=eta_min,
                distance_in_meter=meters,
                job_completed_today=completed,
                job_queue_today=queued,
            )
        )
    return paginated(items, total, filters)


@router.get("/service-request/{requestId}/technician-suggestions")
async def request_suggestions(
    requestId: UUID,
    state: StateDep,
    db: DbDep,
    principal: StaffDep,
    filters: Annotated[TechnicianSuggestionsFilter, Query()],
) -> ServerPaginatedData[TechnicianSuggestionsResponse]:
    """Technicians for this request: ETA (minutes, straight line at the fallback speed),
    jobs completed today and queued."""
    detail = await _visible_detail(db, principal, requestId)
    return await _suggestions(
        state, db, principal.tenant, filters, (detail.latitude, detail.longitude)
    )


@router.get("/technician-suggestions")
async def suggestions(
    state: StateDep,
    db: DbDep,
    principal: StaffDep,
    filters: Annotated[TechnicianSuggestionsFilter, Query()],
) -> ServerPaginatedData[TechnicianBasicInfo]:
    found = await _suggestions(state, db, principal.tenant, filters, None)
    page = paginated([s.technician_info for s in found.data], found.total_number, filters)
    return page
