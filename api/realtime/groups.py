"""Which groups a connection is in, and how each event changes that (pure: no I/O).

At connect (api/realtime/store.py): staff `AllAdmins`; a customer `Customer-{sub}` and
`Request-{id}` of their open requests; a technician `Technician-{sub}` and `Request-{id}`
of their open requests and of the Ringing requests rung to them. Then, per event, before
it is delivered:

- a customer joins `Request-{id}` of an event that names their `Customer-{sub}` group
  (a `new_service_request`, say);
- a technician joins `Request-{id}` when rung for it, or when the event names them as the
  request's technician (accept, assign); leaves it when the event names somebody else
  (another technician took it: they still get the event through `Technician-{sub}`, which
  the API adds for the other rung technicians, but not the winner's location);

and after it: a technician leaves `Request-{id}` when the request ends (Completed,
Canceled) or has no technician any more (ring timed out, unassigned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from api.events import ALL_ADMINS, customer_group, request_group, technician_group
from api.machine import TERMINAL
from api.principal import Principal, Role

RING_EVENT = "ring_notification_received"
REQUEST_PREFIX = "Request-"


class _Unknown:
    """The event does not say who the request's technician is (e.g. `LocationUpdated`)."""


UNKNOWN = _Unknown()


@dataclass(frozen=True, slots=True)
class RequestFacts:
    request_id: str | None
    technician: str | _Unknown | None
    status: str | None


def _view(payload: Any) -> dict[str, Any]:
    """The part of a payload describing the request, whichever shape the event has:
    ServiceRequestDetailedResponse, ServiceRequestBasicInfo, or a model wrapping one."""
    if not isinstance(payload, dict):
        return {}
    for key in ("serviceRequestInfo", "requestDetails"):
        inner = payload.get(key)
        if isinstance(inner, dict):
            return inner
    return payload


def request_facts(groups: frozenset[str], payload: Any) -> RequestFacts:
    view = _view(payload)
    named = [g[len(REQUEST_PREFIX) :] for g in groups if g.startswith(REQUEST_PREFIX)]
    request_id = named[0] if len(named) == 1 else None
    if request_id is None and isinstance(view.get("requestId"), str):
        request_id = view["requestId"]
    technician: str | _Unknown | None = UNKNOWN
    if "technicianId" in view:
        technician = view["technicianId"] if isinstance(view["technicianId"], str) else None
    elif "technician" in view:
        inner = view["technician"]
        found = inner.get("technicianId") if isinstance(inner, dict) else None
        technician = found if isinstance(found, str) else None
    status = view.get("requestStatus")
    return RequestFacts(request_id, technician, status if isinstance(status, str) else None)


def home_groups(principal: Principal) -> frozenset[str]:
    """The groups a principal is in whatever its requests."""
    if principal.is_staff:
        return frozenset({ALL_ADMINS})
    if principal.role is Role.CUSTOMER:
        return frozenset({customer_group(principal.subject)})
    return frozenset({technician_group(principal.subject)})


@dataclass(frozen=True, slots=True)
class Admission:
    during: frozenset[str]  # the connection's groups when the event is delivered
    deliver: bool
    after: frozenset[str]  # and once it is


def admit(
    principal: Principal,
    groups: frozenset[str],
    event: str,
    entry_groups: frozenset[str],
    facts: RequestFacts,
) -> Admission:
    """Whether a connection in `groups` gets this event, and its groups around it."""
    during = groups
    rid = facts.request_id
    joined = request_group(rid) if rid is not None else None
    if joined is not None and principal.role is Role.CUSTOMER:
        if customer_group(principal.subject) in entry_groups:
            during = groups | {joined}
    elif joined is not None and principal.role is Role.TECHNICIAN:
        me = principal.subject
        rung = event == RING_EVENT and technician_group(me) in entry_groups
        if rung or facts.technician == me:
            during = groups | {joined}
        elif isinstance(facts.technician, str):
            during = groups - {joined}
    deliver = not during.isdisjoint(entry_groups)
    after = during
    if joined is not None and principal.role is Role.TECHNICIAN and event != RING_EVENT:
        ended = facts.status in TERMINAL
        if ended or facts.technician is None:
            after = during - {joined}
    return Admission(during, deliver, after)
