"""What travels on `/ws`: the close codes, stream ids, and one dispatch-stream entry as
routed (parsed once per process, its message text built once for every client)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Close codes (4000-4999 are the application's, RFC 6455 7.4.2); docs/realtime.md.
CLOSE_BAD_REQUEST = 4400
"""A malformed query parameter (`last_event_id`)."""
CLOSE_UNAUTHORIZED = 4401
"""No token, or a token that is invalid or expired."""
CLOSE_TOO_SLOW = 4408
"""The client did not read fast enough: its send queue filled up."""
CLOSE_GOING_AWAY = 1001
"""The API process is shutting down: reconnect (to another one) with `last_event_id`."""
CLOSE_UNAVAILABLE = 1013
"""Redis or the database did not answer while connecting: try again later."""

StreamId = tuple[int, int]
"""A Redis stream id `ms-seq` as numbers, so ids compare in stream order."""


def parse_stream_id(text: str) -> StreamId:
    """`1700000000000-3` -> (1700000000000, 3); ValueError when it is not an id."""
    ms, sep, seq = text.partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a stream id: {text!r}")
    return int(ms), int(seq) if sep else 0


def format_stream_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def message(event: str, event_id: str | None, data_json: str) -> str:
    """`{"event": ..., "id": ..., "data": ...}` around an already serialized payload."""
    return f'{{"event":{json.dumps(event)},"id":{json.dumps(event_id)},"data":{data_json}}}'


@dataclass(frozen=True, slots=True)
class Entry:
    """One `{prefix}dispatch` entry as the fan-out routes it."""

    sid: StreamId
    tenant: str
    event: str
    groups: frozenset[str]
    payload: Any
    at: float | None  # when the API published it, Unix seconds (delivery lag)
    text: str  # the message every client gets, built once

    @property
    def id(self) -> str:
        return format_stream_id(self.sid)


def parse_entry(entry_id: bytes | str, fields: dict[Any, Any]) -> Entry | None:
    """None for an entry without the fields the API writes (api/outbox.py)."""
    got = {text(k): text(v) for k, v in fields.items()}
    try:
        sid = parse_stream_id(text(entry_id))
        groups = json.loads(got["groups"])
        payload_json = got["payload"]
        payload = json.loads(payload_json)
        tenant, event = got["tenant"], got["event"]
    except (KeyError, ValueError):
        return None
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        return None
    at: float | None
    try:
        at = datetime.fromisoformat(got["at"]).timestamp()
    except (KeyError, ValueError):
        at = None
    return Entry(
        sid=sid,
        tenant=tenant,
        event=event,
        groups=frozenset(groups),
        payload=payload,
        at=at,
        text=message(event, format_stream_id(sid), payload_json),
    )
