"""Missed events: what a reconnecting client gets between its `last_event_id` and the
seam where its live feed starts, filtered to its groups as they were along the way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from redis.exceptions import ResponseError

from api.principal import Principal
from api.realtime.groups import admit, request_facts
from api.realtime.protocol import Entry, StreamId, format_stream_id, parse_entry, text
from api.realtime.views import seen_as, text_for
from gateway.redis_link import AnyRedis, clustered

PAGE_ENTRIES = 500
"""Entries per XRANGE: a ten-minute backlog of a busy tenant in a few round trips."""
MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Seam:
    """Where a connection's live feed starts: every entry up to `sid` is in the stream
    already (replayed or, for a new client, part of the state it loads over REST), every
    later one reaches the connection live. `first` is the oldest entry the stream still
    holds (trimming drops the oldest), `now_ms` Redis's clock."""

    sid: StreamId
    first: StreamId | None
    now_ms: int


def _sid(value: Any) -> StreamId:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


async def seam(client: AnyRedis, stream: str) -> Seam:
    """Read after the connection joined the hub (so nothing falls between the two)."""
    info: Any
    if clustered(client):  # no TIME in a cluster's pipeline: the stream first, then the clock
        try:
            info = await client.xinfo_stream(stream)
        except ResponseError as e:
            info = e
        seconds, micros = await client.time()
    else:  # one moment on one Redis
        pipe = client.pipeline(transaction=True)
        pipe.xinfo_stream(stream)
        pipe.time()
        info, (seconds, micros) = await pipe.execute(raise_on_error=False)
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    if isinstance(info, ResponseError):  # no such stream yet: every entry to come is live
        # An id above every entry so far and below any to come (ids are Redis's clock).
        return Seam((now_ms - 1, MAX_SEQ), None, now_ms)
    if isinstance(info, Exception):
        raise info
    first = info.get("first-entry")
    return Seam(_sid(info["last-generated-id"]), _sid(first[0]) if first else None, now_ms)


def must_resync(last: StreamId, at: Seam, window_s: float) -> bool:
    """Whether events after `last` may have been dropped from the stream (past the
    retention window, or the length bound), so the client must reload over REST.

    Trimming drops the oldest entries: if the stream still starts at or before `last`,
    everything after it is there. If it starts after, `last` itself was dropped (it was an
    entry's id, or a welcome seam of an old entry), unless `last` is a seam taken while
    the stream was empty (its sequence is MAX_SEQ) and is still within the window."""
    if last >= at.sid:
        return False
    if at.first is not None and at.first <= last:
        return False
    fresh_seam = last[1] == MAX_SEQ and last[0] >= at.now_ms - window_s * 1000
    return not (fresh_seam and at.first is not None)


async def missed(
    client: AnyRedis,
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
                seen = seen_as(principal, entry.event, facts)
                yield replace(entry, text=text_for(entry, *seen))
        cursor = _sid(page[-1][0] or format_stream_id(upto))
