"""Missed events: what a reconnecting client gets between its `last_event_id` and the
seam where its live feed starts, filtered to its groups as they were along the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from api.auth import Principal
from api.realtime.groups import admit, request_facts
from api.realtime.protocol import Entry, StreamId, format_stream_id, parse_entry, text

PAGE_ENTRIES = 500
"""Entries per XRANGE: a ten-minute backlog of a busy tenant in a few round trips."""
MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Seam:
    """Where a connection's live feed starts: every entry up to `sid` is in the stream
    already (replayed or, for a new client, part of the state it loads over REST), every
    later one reaches the connection live. `trimmed` is the newest entry id the stream
    has dropped (retention), so a `last_event_id` below it may have missed events."""

    sid: StreamId
    trimmed: StreamId


def _sid(value: Any) -> StreamId:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


async def seam(client: aioredis.Redis, stream: str) -> Seam:
    """Read after the connection joined the hub (so nothing falls between the two)."""
    try:
        info = await client.xinfo_stream(stream)
    except ResponseError:  # no such stream yet: every entry to come is live
        seconds, micros = await client.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return Seam((now_ms - 1, MAX_SEQ), (0, 0))
    last = _sid(info["last-generated-id"])
    trimmed = _sid(info.get("max-deleted-entry-id", "0-0"))
    return Seam(last, trimmed)


def must_resync(last: StreamId, at: Seam) -> bool:
    """Events after `last` were dropped from the stream (older than the window, or the
    length bound): the client must reload its state over REST."""
    return last < at.sid and at.trimmed > last


async def missed(
    client: aioredis.Redis,
    stream: str,
    principal: Principal,
    groups: frozenset[str],
    after: StreamId,
    upto: StreamId,
) -> AsyncIterator[Entry]:
    """Entries in (after, upto] this principal gets, in order."""
    cursor = after
    while cursor < upto:
        page = await client.xrange(
            stream,
            min=f"({format_stream_id(cursor)}",
            max=format_stream_id(upto),
            count=PAGE_ENTRIES,
        )
        if not page:
            return
        for entry_id, fields in page:
            if entry_id is None or fields is None:  # an entry deleted under the read
                continue
            entry = parse_entry(entry_id, fields)
            if entry is None or entry.tenant != principal.tenant:
                continue
            facts = request_facts(entry.groups, entry.payload)
            admission = admit(principal, groups, entry.event, entry.groups, facts)
            groups = admission.after
            if admission.deliver:
                yield entry
        cursor = _sid(page[-1][0] or format_stream_id(upto))
