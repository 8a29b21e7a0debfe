"""The specification's real-time events (Part 3), built from a request's detailed shape
with their target groups, into the action's unit of work (api/unit_of_work.py), whose
commit writes them to the outbox on their way to `{prefix}dispatch`. `announce` sends what
a move of the lifecycle says it announces (api/machine.py's table), in the table's order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from api.events import ALL_ADMINS, customer_group, request_group, technician_group
from api.machine import Event, Move
from api.models.requests import ServiceRequestDetailedResponse
from api.store.requests import basic_info
from api.unit_of_work import UnitOfWork


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Notifier:
    """The events' payloads and groups, announced into a unit of work: an event is part of
    the action it reports, written with it or not at all."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def _send(
        self,
        tenant: str,
        event: str,
        payload: Any,
        groups: list[str],
        event_id: UUID | None = None,
    ) -> None:
        self.uow.announce(event, payload, groups, tenant=tenant, event_id=event_id)

    def _groups(self, d: ServiceRequestDetailedResponse, *, admins: bool = True) -> list[str]:
        groups = [request_group(str(d.request_id)), customer_group(str(d.customer_id))]
        if d.technician is not None:
            groups.append(technician_group(str(d.technician.technician_id)))
        if admins:
            groups.append(ALL_ADMINS)
        return groups

    def _core(self, d: ServiceRequestDetailedResponse) -> dict[str, Any]:
        payload = _json(d)
        return {
            "serviceRequestInfo": _json(basic_info(d)),
            "technicianInfo": payload["technician"],
            "customerInfo": payload["customer"],
        }

    def new_service_request(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        self._send(tenant, Event.NEW_SERVICE_REQUEST, _json(d), self._groups(d))

    def rings(
        self,
        d: ServiceRequestDetailedResponse,
        tenant: str,
        technician_ids: list[str],
        max_miles: float,
        timeout_s: float,
        started_at: datetime,
    ) -> None:
        """`ring_notification_received` to the technicians rung in one phase: one event
        (its payload is the same for each) addressed to each of them."""
        payload = {
            "serviceRequestInfo": _json(basic_info(d)),
            "customerInfo": _json(d.customer),
            "customerLocation": {"latitude": d.latitude, "longitude": d.longitude},
            "maxDistanceInMiles": max_miles,
            "ringTimeoutSeconds": timeout_s,
            "ringStartedAt": started_at.isoformat(),
        }
        groups = [technician_group(t) for t in technician_ids]
        self._send(tenant, Event.RING_NOTIFICATION, payload, groups)

    def status_changed(
        self, d: ServiceRequestDetailedResponse, tenant: str, extra_technicians: list[str]
    ) -> None:
        groups = self._groups(d) + [technician_group(t) for t in extra_technicians]
        self._send(tenant, Event.STATUS_CHANGED, _json(basic_info(d)), groups)

    def escalated(
        self, d: ServiceRequestDetailedResponse, tenant: str, previous: str, reason: str | None
    ) -> None:
        payload = {
            "serviceRequestInfo": _json(basic_info(d)),
            "previousPriority": previous,
            "priority": d.priority.value,
            "reason": reason,
        }
        self._send(tenant, Event.ESCALATED, payload, self._groups(d))

    def sla_violated(
        self, d: ServiceRequestDetailedResponse, tenant: str, target_minutes: int
    ) -> None:
        """The area's response time passed with nobody there: to the staff and to the
        technician on it (who should hurry); the customer sees the escalation instead."""
        groups = [ALL_ADMINS]
        if d.technician is not None:
            groups.append(technician_group(str(d.technician.technician_id)))
        payload = {
            "serviceRequestInfo": _json(basic_info(d)),
            "serviceAreaId": str(d.service_area_id) if d.service_area_id else None,
            "serviceAreaName": d.service_area_name,
            "violationType": "ArrivalTime",
            "targetMinutes": target_minutes,
            "slaDueAt": d.sla_due_at.isoformat() if d.sla_due_at else None,
            "priority": d.priority.value,
        }
        self._send(tenant, Event.SLA_VIOLATED, payload, groups)

    def accepted(
        self, d: ServiceRequestDetailedResponse, tenant: str, location: dict[str, Any] | None
    ) -> None:
        payload = {
            **self._core(d),
            "vanInfo": _json(d.van) if d.van else None,
            "technicianLocation": location,
            "distanceInMeter": None,
            "etaInSec": None,
            "encodedPolyline": None,
            "polylineVersion": None,
        }
        self._send(tenant, Event.ACCEPTED, payload, self._groups(d))

    def assigned(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        self._send(tenant, Event.ASSIGNED, _json(d), self._groups(d))

    def canceled(
        self, d: ServiceRequestDetailedResponse, tenant: str, old_technician: str | None
    ) -> None:
        groups = self._groups(d)
        if old_technician and technician_group(old_technician) not in groups:
            groups.append(technician_group(old_technician))
        self._send(tenant, Event.CANCELED, _json(d), groups)

    def journey_started(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        name = f"{d.technician.first_name} {d.technician.last_name}" if d.technician else None
        payload = {
            "requestId": str(d.request_id),
            "technicianName": name,
            "message": "Technician has started journey to your location",
            "timestamp": _now(),
            "requestDetails": _json(d),
        }
        self._send(tenant, Event.JOURNEY_STARTED, payload, self._groups(d))

    def arrived(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        t = d.technician
        payload = {
            "requestId": str(d.request_id),
            "technicianName": f"{t.first_name} {t.last_name}" if t else None,
            "firstName": t.first_name if t else None,
            "lastName": t.last_name if t else None,
            "technicianCode": t.technician_code if t else None,
            "message": "Technician has arrived at your location",
            "timestamp": (d.arrived_at.isoformat() if d.arrived_at else _now()),
        }
        self._send(tenant, Event.ARRIVED, payload, self._groups(d, admins=False))

    def service_started(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        at = d.started_at.isoformat() if d.started_at else _now()
        payload = {**self._core(d), "serviceStartAt": at}
        self._send(tenant, Event.SERVICE_STARTED, payload, self._groups(d))

    def service_completed(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        at = d.completed_at.isoformat() if d.completed_at else _now()
        payload = {**self._core(d), "serviceCompletedAt": at}
        self._send(tenant, Event.SERVICE_COMPLETED, payload, self._groups(d))

    def queue_updated(self, tenant: str, technician_id: str, queue: list[dict[str, Any]]) -> None:
        payload = {"technicianId": technician_id, "queue": queue}
        self._send(
            tenant, Event.QUEUE_UPDATED, payload, [technician_group(technician_id), ALL_ADMINS]
        )

    def queue_position_changed(self, tenant: str, customer_id: str, entry: dict[str, Any]) -> None:
        groups = [customer_group(customer_id), request_group(str(entry["requestId"]))]
        self._send(tenant, Event.QUEUE_POSITION_CHANGED, entry, groups)

    def location_updated(
        self, tenant: str, request_id: str, payload: dict[str, Any], event_id: UUID | None = None
    ) -> None:
        groups = [request_group(request_id)]
        self._send(tenant, Event.LOCATION_UPDATED, payload, groups, event_id)


def announce(
    uow: UnitOfWork,
    move: Move,
    detail: ServiceRequestDetailedResponse,
    *,
    location: dict[str, Any] | None = None,
    also_technicians: list[str] | None = None,
    old_technician: str | None = None,
    previous_priority: str | None = None,
    reason: str | None = None,
    target_minutes: int = 0,
) -> None:
    """The events `move` announces about `detail` (the request as the move leaves it), in
    the table's order, but the queue's (api/lifecycle.py `publish_queue`) and the ring's
    (api/ring.py), which need more than the request."""
    notifier, tenant = Notifier(uow), uow.tenant
    for event in move.announces:
        if event is Event.NEW_SERVICE_REQUEST:
            notifier.new_service_request(detail, tenant)
        elif event is Event.ACCEPTED:
            notifier.accepted(detail, tenant, location)
        elif event is Event.ASSIGNED:
            notifier.assigned(detail, tenant)
        elif event is Event.STATUS_CHANGED:
            notifier.status_changed(detail, tenant, also_technicians or [])
        elif event is Event.CANCELED:
            notifier.canceled(detail, tenant, old_technician)
        elif event is Event.JOURNEY_STARTED:
            notifier.journey_started(detail, tenant)
        elif event is Event.ARRIVED:
            notifier.arrived(detail, tenant)
        elif event is Event.SERVICE_STARTED:
            notifier.service_started(detail, tenant)
        elif event is Event.SERVICE_COMPLETED:
            notifier.service_completed(detail, tenant)
        elif event is Event.ESCALATED:
            assert previous_priority is not None, "an escalation says what it was"
            notifier.escalated(detail, tenant, previous_priority, reason)
        elif event is Event.SLA_VIOLATED:
            notifier.sla_violated(detail, tenant, target_minutes)
