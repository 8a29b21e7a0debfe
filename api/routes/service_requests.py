"""Service requests: create, the actions of the lifecycle, and the read side."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from enum import IntEnum
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import Body, Depends, Query
from pydantic import BaseModel

from api import lifecycle, limits, personal, queue
from api.deps import DbDep, PrincipalDep, StaffDep, StateDep, TechnicianDep, may, require
from api.errors import forbidden, not_found
from api.guard import guarded_router
from api.machine import Action, RequestStatus
from api.models.catalog import TechnicianBasicInfo
from api.models.common import Envelope, IsoDate, ServerPaginatedData, paginated
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
from api.principal import Principal, Role
from api.routes.catalog import done
from api.store import requests, technicians
from api.store.requests import basic_info, load_details, scope, subject_id, technician_info
from contracts.geodesy import haversine_m

router = guarded_router(tags=["service requests"])

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
    body: CreateServiceRequest,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.CREATE))],
) -> Envelope[CreateServiceRequestResponse]:
    await limits.per_minute(
        state.redis, state.settings.redis_prefix, "create", principal,
        state.settings.create_requests_per_min, "new requests",
    )  # fmt: skip
    request_id, number = await lifecycle.create(state, principal, body)
    return Envelope[CreateServiceRequestResponse](
        status=200,
        message="Service request created successfully",
        data=CreateServiceRequestResponse(request_id=request_id, request_number=number),
    )


@router.put("/service-request/{requestId:uuid}/priority")
async def escalate_request(
    requestId: UUID,
    body: EscalateServiceRequest,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.ESCALATE))],
) -> Envelope[None]:
    """Raise an open request's call priority (never lower it): 409 when it is not higher."""
    await lifecycle.escalate(state, principal, requestId, body.priority, body.reason)
    return done("Priority escalated")


@router.put("/service-request/{requestId:uuid}/{actionType:int}")
async def request_action(
    requestId: UUID,
    actionType: ActionType,
    state: StateDep,
    principal: PrincipalDep,
    body: Annotated[ServiceRequestAction | None, Body()] = None,
) -> Envelope[None]:
    """1 = Accept, 2 = Reject (technicians), 3 = Cancel (customer, technician or staff);
    who may is the lifecycle's table (api/machine.py)."""
    reason = body.reason if body else None
    if actionType is ActionType.CANCEL:
        await lifecycle.cancel(state, principal, requestId, reason)
        return done("Service request canceled")
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


@router.put("/service-request/{requestId:uuid}")
async def work_action(
    requestId: UUID,
    workAction: Annotated[WorkAction, Query()],
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.START_WORK))],
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


@router.post("/service-request/feedback/{requestId:uuid}")
async def submit_feedback(
    requestId: UUID,
    body: SubmitFeedback,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.FEEDBACK))],
) -> Envelope[None]:
    await lifecycle.feedback(state, principal, requestId, body.rating, body.feedback)
    return done("Feedback submitted successfully")


@router.post("/service-request/assign")
async def assign_request(
    body: AssignServiceRequestModel,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.ASSIGN))],
) -> Envelope[None]:
    await lifecycle.assign(state, principal, body.request_id, body.technician_id, body.scheduled_at)
    return done("Service request assigned successfully to technician")


@router.post("/service-request/{requestId:uuid}/unassign")
async def unassign_request(
    requestId: UUID, state: StateDep, principal: Annotated[Principal, Depends(may(Action.UNASSIGN))]
) -> Envelope[None]:
    await lifecycle.unassign(state, principal, requestId)
    return done("Service request unassigned: back to Pending")


@router.put("/technician/{technicianId:uuid}/queue")
async def reorder_queue(
    technicianId: UUID,
    body: QueueOrder,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.REORDER))],
) -> Envelope[None]:
    await lifecycle.reorder(state, principal, technicianId, body.request_ids)
    return done("Queue reordered")


@router.post("/service-request/{requestId:uuid}/start-journey")
async def start_journey(
    requestId: UUID,
    state: StateDep,
    principal: Annotated[Principal, Depends(may(Action.START_JOURNEY))],
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
    found = await load_details(db, principal.tenant, ids)
    return paginated([as_seen(principal, d, d) for d in found], total, filters)


def _sight(principal: Principal, detail: ServiceRequestDetailedResponse) -> personal.Sight:
    """How the principal sees a request the scope let them read (ringing: it rings them)."""
    return personal.sight(
        principal,
        status=detail.request_status,
        technician=detail.technician.technician_id if detail.technician else None,
        customer=detail.customer_id,
        ringing_them=detail.request_status is RequestStatus.RINGING,
    )


def _tracks(principal: Principal, detail: ServiceRequestDetailedResponse) -> bool:
    return personal.may_track(
        principal,
        status=detail.request_status,
        technician=detail.technician.technician_id if detail.technician else None,
        customer=detail.customer_id,
        arrived=detail.arrived_at is not None,
    )


M = TypeVar("M", bound=BaseModel)


def as_seen(principal: Principal, detail: ServiceRequestDetailedResponse, model: M) -> M:
    """`model` (about `detail`'s request) as the principal may see it (api/personal.py)."""
    seen, tracking = _sight(principal, detail), _tracks(principal, detail)
    if seen is personal.Sight.WHOLE and tracking:
        return model
    data = personal.redact(model.model_dump(mode="json", by_alias=True), seen, tracking=tracking)
    return type(model).model_validate(data)


async def _visible_detail(
    db: DbDep, principal: Principal, request_id: UUID
) -> ServiceRequestDetailedResponse:
    """The request as the principal may see it (404 when they may not see it at all)."""
    detail = await requests.visible_detail(db, principal, request_id)
    if detail is None or _sight(principal, detail) is personal.Sight.NONE:
        raise not_found("Service request")
    return detail


@router.get("/service-request/initial-data")
async def initial_data(
    state: StateDep, db: DbDep, principal: TechOrCustomerDep
) -> Envelope[LocationBroadcastModel]:
    """Technician: the request at queue position 1; customer: their open request."""
    request_id = await requests.open_request_of(db, principal)
    if request_id is None:
        raise not_found("Open service request")
    detail = await _visible_detail(db, principal, request_id)
    route = await queue.latest_route(state.redis, state.settings.redis_prefix, str(request_id))
    location = await _technician_location(state, detail)
    counts: tuple[int | None, int | None] = (None, None)
    if detail.technician is not None:
        counts = await technicians.job_counts(db, principal.tenant, detail.technician.technician_id)
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
        status=200, message="Initial data retrieved successfully",
        data=as_seen(principal, detail, data),
    )  # fmt: skip


@router.get("/service-request/{requestId:uuid}")
async def get_request(
    requestId: UUID, db: DbDep, principal: PrincipalDep
) -> Envelope[ServiceRequestDetailedResponse]:
    detail = await _visible_detail(db, principal, requestId)
    return Envelope[ServiceRequestDetailedResponse](
        status=200, message="OK", data=as_seen(principal, detail, detail)
    )


@router.get("/technician/current-request")
async def current_request(
    db: DbDep, principal: TechnicianDep
) -> Envelope[ServiceRequestDetailedResponse]:
    request_id = await requests.open_request_of(db, principal, first=True)
    if request_id is None:
        raise not_found("Current request")
    detail = await _visible_detail(db, principal, request_id)
    return Envelope[ServiceRequestDetailedResponse](status=200, message="OK", data=detail)


@router.get("/service-request/{technicianId:uuid}/scheduled-requests")
async def scheduled_requests(
    technicianId: UUID,
    db: DbDep,
    principal: PrincipalDep,
    day: Annotated[IsoDate | None, Query(alias="date")] = None,
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


@router.get("/service-request/{requestId:uuid}/route-info")
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
    return Envelope[ServiceRequestRouteInformation](
        status=200, message="OK", data=as_seen(principal, detail, data)
    )


@router.get("/service-request/{requestId:uuid}/queue")
async def queue_position(
    requestId: UUID, state: StateDep, db: DbDep, principal: PrincipalDep
) -> Envelope[QueueInfo]:
    """Where the request stands in its technician's queue (FIFO) and its ETA window."""
    detail = await _visible_detail(db, principal, requestId)
    if detail.technician is None:
        data = QueueInfo(request_id=requestId, queue_length=0)
        return Envelope[QueueInfo](status=200, message="Not assigned yet", data=data)
    technician_id = detail.technician.technician_id
    device, queued = await queue.read(db, principal.tenant, technician_id)
    items = await queue.entries(state.redis, state.settings, technician_id, device, queued)
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
    """One statement for the page of technicians with their job counts, and one Redis round
    trip for their live positions (when distances are asked for)."""
    total, rows = await technicians.suggestions(
        db, tenant, filters.search_keyword, filters.rows_per_page, filters.offset
    )
    positions: list[dict[str, Any] | None] = [None] * len(rows)
    if near is not None:
        positions = await queue.live_positions(
            state.redis, state.keys, [row["device_id"] for row in rows]
        )
    items = []
    for row, where_now in zip(rows, positions, strict=True):
        eta_min: int | None = None
        meters: int | None = None
        if near is not None and where_now is not None:
            m = haversine_m(where_now["latitude"], where_now["longitude"], near[0], near[1])
            meters = round(m)
            eta_min = round(m / state.settings.fallback_speed_mps / 60)
        items.append(
            TechnicianSuggestionsResponse(
                technician_info=technician_info(row),
                eta=eta_min,
                distance_in_meter=meters,
                job_completed_today=int(row["completed"]),
                job_queue_today=int(row["queued"]),
            )
        )
    return paginated(items, total, filters)


@router.get("/service-request/{requestId:uuid}/technician-suggestions")
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
