"""The events' JSON Schema, generated from `geofence.events` (docs/events.schema.json).

    python -m devtools.event_schema  (writes docs/events.schema.json)

A unit test checks that the file equals what this prints, so the Structs and the
documented contract cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec

from geofence.events import AnyEvent

UTC_TIME_PATTERN: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
TIME_FIELDS: Final = ("fix_time", "detected_at")


def _utc_time(node: dict[str, Any]) -> dict[str, Any]:
    if node.get("type") == "string":
        return {"type": "string", "format": "date-time", "pattern": UTC_TIME_PATTERN}
    if "anyOf" in node:
        return {"anyOf": [_utc_time(n) for n in node["anyOf"]]}
    return node


def build() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(AnyEvent)
    for definition in schema["$defs"].values():
        props = definition["properties"]
        for name in TIME_FIELDS:
            if name in props:
                props[name] = _utc_time(props[name])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fixgate engine event",
        "description": "One entry of the {prefix}events Redis stream (field `event`). "
        "Consumers must ignore properties they do not know: the schema grows only by "
        "optional fields.",
        **schema,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"
