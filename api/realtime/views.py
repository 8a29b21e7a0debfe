"""What each connection sees of an event: staff the event as published; a customer or a
technician the same event with what they may not see taken out (api/personal.py), so
one event published once reaches each reader as that reader may see it."""

from __future__ import annotations

import json

from api.machine import RequestStatus
from api.personal import Sight, redact
from api.principal import Principal, Role
from api.realtime.groups import RequestFacts
from api.realtime.protocol import Entry, message

LOCATION_UPDATED = "LocationUpdated"
"""Sent only while a trip is driven (the engine's trip updates): the customer's to see."""


def seen_as(principal: Principal, event: str, facts: RequestFacts) -> tuple[Sight, bool]:
    """(how the principal sees the event's request, whether with the technician's position)."""
    if principal.is_staff:
        return Sight.WHOLE, True
    if principal.role is Role.CUSTOMER:
        on_the_way = facts.status == RequestStatus.EN_ROUTE.value or event == LOCATION_UPDATED
        return Sight.CUSTOMER, on_the_way
    if isinstance(facts.technician, str) and facts.technician == principal.subject:
        return Sight.WHOLE, True
    return Sight.DECIDING, False


def text_for(entry: Entry, sight: Sight, tracking: bool) -> str:
    """The message as `sight` sees it (the entry's own text when nothing is taken out)."""
    if sight is Sight.WHOLE and tracking:
        return entry.text
    payload = redact(entry.payload, sight, tracking=tracking)
    return message(entry.event, entry.id, json.dumps(payload))
