"""Dispatch events for the real-time layer: one entry per event on the Redis stream
`{prefix}dispatch`, with the specification's event name, payload and target groups.

Entry fields: `id` (uuid), `event` (name), `tenant`, `groups` (JSON list: `Request-{id}`,
`AllAdmins`, `Technician-{id}`, `Customer-{id}`), `payload` (JSON, camelCase), `at` (ISO).
Actions announce their events into their unit of work, written to the outbox in their own
transaction; the relay puts them on the stream (api/outbox.py).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

MAX_STREAM_ENTRIES = 100_000
"""The stream feeds live consumers and replays to reconnecting ones, it is not history (the
audit table is): trim it by length as well as by age (the replay window)."""
DEFAULT_RETENTION_S = 600.0


def request_group(request_id: str) -> str:
    return f"Request-{request_id}"


def technician_group(technician_id: str) -> str:
    return f"Technician-{technician_id}"


def customer_group(customer_id: str) -> str:
    return f"Customer-{customer_id}"


ALL_ADMINS = "AllAdmins"


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_json(value: Any) -> str:
    """A payload or group list as the stream carries it (datetimes ISO, uuids as text)."""
    return json.dumps(value, default=_default)
