"""The specification's real-time events (Part 3), built from a request's detailed shape
with their target groups, written to the outbox of the action's transaction (api/outbox.py)
on their way to `{prefix}dispatch`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from api.events import ALL_ADMINS, EventSink, customer_group, request_group, technician_group
from api.models.requests import ServiceRequestDetailedResponse
from api.store.requests import basic_info


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Notifier:
    """An event is part of the action it reports: a failure to write it fails the action's
    transaction (the outbox is in the same database, so it fails only when the action would)."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink

    async def _send(
        self,
        tenant: str,
        event: str,
        payload: Any,
        groups: list[str],
        event_id: UUID | None = None,
    ) -> None:
        await self.sink.publish(tenant, event, payload, groups, event_id=event_id)

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

    async def new_service_request(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        await self._send(tenant, "new_service_request", _json(d), self._groups(d))

    async def rings(
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
        await self._send(tenant, "ring_notification_received", payload, groups)

    async def status_changed(
        self, d: ServiceRequestDetailedResponse, tenant: str, extra_technicians: list[str]
    ) -> None:
        groups = self._groups(d) + [technician_group(t) for t in extra_technicians]
        await self._send(tenant, "request_status_changed", _json(basic_info(d)), groups)

    async def escalated(
        self, d: ServiceRequestDetailedResponse, tenant: str, previous: str, reason: str | None
    ) -> None:
        payload = {
            "serviceRequestInfo": _json(basic_info(d)),
            "previousPriority": previous,
            "priority": d.priority.value,
            "reason": reason,
        }
        await self._send(tenant, "request_escalated", payload, self._groups(d))

    async def sla_violated(
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
        await self._send(tenant, "sla_violated", payload, groups)

    async def accepted(
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
        await self._send(tenant, "request_accepted", payload, self._groups(d))

    async def assigned(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        await self._send(tenant, "request_assigned", _json(d), self._groups(d))

    async def canceled(
        self, d: ServiceRequestDetailedResponse, tenant: str, old_technician: str | None
    ) -> None:
        groups = self._groups(d)
        if old_technician and technician_group(old_technician) not in groups:
            groups.append(technician_group(old_technician))
        await self._send(tenant, "request_canceled", _json(d), groups)

    async def journey_started(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        name = f"{d.technician.first_name} {d.technician.last_name}" if d.technician else None
        payload = {
            "requestId": str(d.request_id),
            "technicianName": name,
            "message": "Technician has started journey to your location",
            "timestamp": _now(),
            "requestDetails": _json(d),
        }
        await self._send(tenant, "journey_started", payload, self._groups(d))

    async def arrived(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
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
        await self._send(tenant, "technician_arrived", payload, self._groups(d, admins=False))

    async def service_started(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        at = d.started_at.isoformat() if d.started_at else _now()
        payload = {**self._core(d), "serviceStartAt": at}
        await self._send(tenant, "service_started", payload, self._groups(d))

    async def service_completed(self, d: ServiceRequestDetailedResponse, tenant: str) -> None:
        at = d.completed_at.isoformat() if d.completed_at else _now()
        payload = {**self._core(d), "serviceCompletedAt": at}
        await self._send(tenant, "service_completed", payload, self._groups(d))

    async def queue_updated(
        self, tenant: str, technician_id: str, queue: list[dict[str, Any]]
    ) -> None:
        payload = {"technicianId": technician_id, "queue": queue}
        await self._send(
            tenant, "QueueUpdated", payload, [technician_group(technician_id), ALL_ADMINS]
        )

    async def queue_position_changed(
        self, tenant: str, customer_id: str, entry: dict[str, Any]
    ) -> None:
        groups = [customer_group(customer_id), request_group(str(entry["requestId"]))]
        await self._send(tenant, "QueuePositionChanged", entry, groups)

    async def location_updated(
        self, tenant: str, request_id: str, payload: dict[str, Any], event_id: UUID | None = None
    ) -> None:
        groups = [request_group(request_id)]
        await self._send(tenant, "LocationUpdated", payload, groups, event_id)
