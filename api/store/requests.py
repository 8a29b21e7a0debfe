"""Reading service requests: who may see which, and the detailed shape in one query."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from api.auth import Principal, Role
from api.models.catalog import CustomerBasicInfo, TechnicianBasicInfo, VanInfo, VehicleBasicInfo
from api.models.common import CallPriority
from api.models.requests import (
    RequestedServiceInfo,
    ServiceRequestBasicInfo,
    ServiceRequestDetailedResponse,
    UserBasicInfo,
)

NOBODY = uuid.UUID(int=0)
"""A subject that is not a UUID matches no customer or technician."""

QUEUED_STATES = ("Assigned", "EnRoute", "InProgress")
"""A technician's queue: requests assigned to them and not finished."""
ACTIVE_STATES = ("EnRoute", "InProgress")
TERMINAL_STATES = ("Completed", "Canceled")


def subject_id(principal: Principal) -> UUID:
    try:
        return UUID(principal.subject)
    except ValueError:
        return NOBODY


def scope(principal: Principal, args: list[Any], alias: str = "r") -> str:
    """A WHERE fragment limiting `servicerequests {alias}` to what the principal may see.

    Customers: their own requests. Technicians: requests rung to or assigned to them, and
    every Pending request of the tenant (after the ring, anyone may accept). Staff: the
    tenant. Appends its parameters to `args`."""
    args.append(principal.tenant)
    clause = f"{alias}.tenant_id = ${len(args)}"
    if principal.role is Role.CUSTOMER:
        args.append(subject_id(principal))
        clause += f" AND {alias}.customerid = ${len(args)}"
    elif principal.role is Role.TECHNICIAN:
        args.append(subject_id(principal))
        n = len(args)
        clause += (
            f" AND ({alias}.currenttechnicianid = ${n} OR {alias}.requeststatus = 'Pending'"
            f" OR EXISTS (SELECT 1 FROM technicianringlog l"
            f" WHERE l.requestid = {alias}.requestid AND l.technicianid = ${n}))"
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
             ORDER BY rs.isadditional, s.servicecode) AS services
FROM servicerequests r
JOIN customermaster c ON c.customerid = r.customerid
JOIN customervehicles v ON v.customervehicleid = r.vehicleid
LEFT JOIN technicianmaster t ON t.technicianid = r.currenttechnicianid
LEFT JOIN vanmaster van ON van.vanid = coalesce(r.vanid, t.vanid)
LEFT JOIN serviceareas sa ON sa.serviceareaid = r.serviceareaid
LEFT JOIN geofences sag ON sag.id = sa.geofenceid
WHERE r.requestid = ANY($1::uuid[]) AND r.tenant_id = $2
"""


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


def _detail(row: asyncpg.Record) -> ServiceRequestDetailedResponse:
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
    rows = {r["requestid"]: r for r in await conn.fetch(_DETAIL, ids, tenant)}
    return [_detail(rows[i]) for i in ids if i in rows]


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
