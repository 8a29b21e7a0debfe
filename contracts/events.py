"""The engine's events on their streams: the engine writes, the API and the tools read.

Each shard has its stream (`contracts.keys.Keys.events`); an entry has one field, `event`,
a JSON object tagged by `type` (the Structs of `geofence.events`, described in
docs/events.md and docs/events.schema.json). Order holds per device (a device's events are
all in its shard's stream, committed in fix order); across shards there is none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

FIELD: Final = "event"
FIELD_BYTES: Final = FIELD.encode()
GEOFENCE_PREFIX: Final = "geofence_"
"""The `type` of every geofence event starts so (enter, exit, dwell, crossed)."""
TRIP_ARRIVED: Final = "trip_arrived"
TRIP_UPDATE: Final = "trip_update"
MAX_ENTRIES: Final = 1_000_000
"""Approximate cap of all events streams together: live consumers, not an archive (about a
day of a 10,000-device fleet's geofence and trip traffic); each shard keeps its share."""


def raw_event(fields: Mapping[Any, Any]) -> bytes | str | None:
    """The event's JSON text of one stream entry (fields as redis-py returns them)."""
    raw = fields.get(FIELD_BYTES, fields.get(FIELD))
    return raw if isinstance(raw, bytes | str) else None


def read(fields: Mapping[Any, Any]) -> dict[str, Any] | None:
    """The event of one stream entry as a JSON object; None when absent or unreadable."""
    raw = raw_event(fields)
    if raw is None:
        return None
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
