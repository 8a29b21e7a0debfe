"""The transactional outbox of the dispatch events.

An action writes its events into `dispatchoutbox` in the transaction of the state change
they report (`OutboxWriter`), so they commit or roll back with it. Inside
`Outbox.transaction` (every action's, through `ApiState.tx`) the writer collects them and
they are inserted in one statement just before the commit; elsewhere each is inserted at
once. The relay moves committed rows to the stream `{prefix}dispatch`:
  - right after an action's commit, its own events, from memory (one Redis round trip);
    their rows are deleted by the background loop a moment later, in one statement for
    every action of that moment (the request path awaits the relay, so its events are on
    the stream before the response, and concurrent actions never wait for each other);
  - `flush` relays the rows this task inserted one by one (outside such a transaction);
  - `recover`, every `RELAY_POLL_S` in the background, relays rows older than
    `RELAY_GRACE_S`: those of a process that died between its commit and its relay, or of
    a relay that failed.

Exactly once into the stream: the XADD runs in a Lua script that skips an event whose
marker `{prefix}outbox:{eventid}` exists and sets the marker with the entry, atomically,
so a row relayed but not yet deleted (the request path's, waiting for the background
delete; or one whose relay died before its DELETE committed) is not added twice, whichever
relay reaches it next. The database relays (`flush`, `recover`) delete a row in the
transaction that XADDs it (the DELETE ... RETURNING locks it, so two of them do not both
take it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
from redis.exceptions import NoScriptError

from api.events import DEFAULT_RETENTION_S, MAX_STREAM_ENTRIES, to_json
from contracts.keys import same_slot_as
from gateway.redis_link import AnyRedis, evalsha

log = logging.getLogger("fixgate.api.outbox")

RELAY_POLL_S = 1.0
"""How often the background relay looks for rows left behind: with `RELAY_GRACE_S` it
bounds the delay of recovery."""
RELAY_GRACE_S = 2.0
"""Rows older than this are the background relay's: the request path relays its own within
milliseconds of its commit, so older ones were left by a process that died or a relay that
failed (and the two relays rarely reach for the same rows)."""
MAX_BATCH_ROWS = 500
"""Rows per relay transaction: one DELETE and one Redis round trip (pipelined)."""
MARKER_TTL_S = 3600
"""How long a relayed event's marker is kept: far longer than a relay takes between XADD
and DELETE, even across a crash and the next relay pass."""

COLUMNS = "seq, tenant_id, event, groups::text AS groups, payload::text AS payload, eventid,"
COLUMNS += " createdat"
"""What the relay reads of a row (the JSON as written: it goes to the stream as is)."""

# KEYS: the stream, the event's marker. ARGV: marker TTL (s), stream length bound, replay
# window (ms), then the entry: id, event, tenant, groups, payload, at.
# The marker is checked before and set after the XADD (one script: nothing runs between),
# so an XADD that fails leaves no marker. Entry ids are Redis's clock in ms: MINID drops
# what is older than the window, exactly (not `~`), so a replay past the window is refused
# (resync) rather than served from whatever a radix node happened to keep.
RELAY_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
  'id', ARGV[4], 'event', ARGV[5], 'tenant', ARGV[6], 'groups', ARGV[7],
  'payload', ARGV[8], 'at', ARGV[9])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
local now = redis.call('TIME')
local oldest_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  - tonumber(ARGV[3])
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-0', oldest_ms))
return id
"""


_written: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "fixgate_outbox_written", default=None
)
"""Seqs of the rows the current task inserted one by one since its last `Outbox.flush`."""

DELETE_POLL_S = 0.1
"""How long a row relayed from memory waits for its DELETE: the rows of every action of
that moment go in one statement, far inside `RELAY_GRACE_S`."""
MAX_DELETE_BACKLOG = 100_000
"""Seqs waiting for their DELETE kept while the database is away; beyond it some are left
to `recover` (their markers skip them, and it deletes them)."""


@dataclass(slots=True)
class _Event:
    tenant_id: str
    event: str
    groups: str
    payload: str
    eventid: uuid.UUID


@dataclass(slots=True)
class Batch:
    """The events of one `Outbox.transaction`, collected until its commit."""

    conn: asyncpg.Connection
    events: list[_Event] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The committed rows (what the stream entries are made of), set at the insert."""


_batch: contextvars.ContextVar[Batch | None] = contextvars.ContextVar(
    "fixgate_outbox_batch", default=None
)


def _note(seq: int) -> None:
    mine = _written.get()
    if mine is None:
        mine = []
        _written.set(mine)
    mine.append(seq)


class OutboxWriter:
    """The Notifier's sink inside an action's transaction: the events commit with it.
    Within `Outbox.transaction` on the same connection they are collected and inserted
    together before the commit; otherwise each is inserted at once and the task's next
    `Outbox.flush` relays them."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def publish(
        self,
        tenant: str,
        event: str,
        payload: Any,
        groups: list[str],
        *,
        event_id: uuid.UUID | None = None,
    ) -> None:
        pending = _Event(tenant, event, to_json(groups), to_json(payload), event_id or uuid.uuid4())
        batch = _batch.get()
        if batch is not None and batch.conn is self.conn:
            batch.events.append(pending)
            return
        seq: int = await self.conn.fetchval(
            "INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)"
            " VALUES ($1, $2, $3::json, $4::json, $5) RETURNING seq",
            pending.tenant_id,
            pending.event,
            pending.groups,
            pending.payload,
            pending.eventid,
        )
        _note(seq)


class Outbox:
    """The relay from `dispatchoutbox` to `{prefix}dispatch`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: AnyRedis,
        prefix: str,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self.pool = pool
        self.client = client
        self.stream = f"{prefix}dispatch"
        self.marker_prefix = f"{same_slot_as(prefix, self.stream)}outbox:"  # one slot: cluster
        self.retention_ms = int(retention_s * 1000)
        self.script = client.register_script(RELAY_SCRIPT)
        self.relayed: collections.deque[int] = collections.deque(maxlen=MAX_DELETE_BACKLOG)
        """Seqs on the stream whose rows wait for the background DELETE."""

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield cast(asyncpg.Connection, conn)

    @contextlib.asynccontextmanager
    async def transaction(self, conn: asyncpg.Connection) -> AsyncIterator[None]:
        """A transaction on `conn` whose events (`OutboxWriter(conn)`) are inserted in one
        statement before its commit and relayed right after it (`after_commit`)."""
        batch = Batch(conn)
        token = _batch.set(batch)
        try:
            async with conn.transaction():
                yield
                await self._insert(batch)
        finally:
            _batch.reset(token)
        await self.after_commit(batch)

    async def _insert(self, batch: Batch) -> None:
        if not batch.events:
            return
        events = batch.events
        rows = await batch.conn.fetch(
            "INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::json[], $4::json[], $5::uuid[])"
            " RETURNING seq, eventid, createdat",
            [e.tenant_id for e in events],
            [e.event for e in events],
            [e.groups for e in events],
            [e.payload for e in events],
            [e.eventid for e in events],
        )
        by_id = {r["eventid"]: r for r in rows}
        batch.rows = [
            {"seq": by_id[e.eventid]["seq"], "tenant_id": e.tenant_id, "event": e.event,
             "groups": e.groups, "payload": e.payload, "eventid": e.eventid,
             "createdat": by_id[e.eventid]["createdat"]}
            for e in events
        ]  # fmt: skip

    async def after_commit(self, batch: Batch) -> None:
        """Relay what the committed transaction of `batch` wrote: its collected events
        from memory, and rows this task inserted one by one (`flush`). Never raises: the
        state change is committed, and what is left goes out with `recover`."""
        await self.flush(batch.conn)
        if not batch.rows:
            return
        try:
            await self._xadd_rows(batch.rows)
        except Exception:  # Redis away: the rows stay, `recover` relays them
            log.exception("outbox relay")
            return
        self.relayed.extend(int(row["seq"]) for row in batch.rows)

    def _script_args(self, row: asyncpg.Record | dict[str, Any]) -> list[Any]:
        """KEYS and ARGV of `RELAY_SCRIPT` for one row."""
        return [
            f"{self.marker_prefix}{row['eventid']}",
            MARKER_TTL_S,
            MAX_STREAM_ENTRIES,
            self.retention_ms,
            str(row["eventid"]),
            row["event"],
            row["tenant_id"],
            row["groups"],
            row["payload"],
            row["createdat"].isoformat(),
        ]

    async def xadd(self, row: asyncpg.Record | dict[str, Any]) -> bytes | str | None:
        """The row's entry on the stream (its id), unless it was added before (None)."""
        marker, *args = self._script_args(row)
        added: bytes | str | None = await self.script(keys=[self.stream, marker], args=args)
        return added

    async def _xadd_rows(self, rows: Sequence[asyncpg.Record | dict[str, Any]]) -> None:
        """`xadd` of each row, in order, in one round trip. EVALSHA in a plain pipeline:
        redis-py's pipelined Script objects ask SCRIPT EXISTS first, a round trip more
        each time; a Redis that lost its scripts (a restart) answers NOSCRIPT, and the
        pipeline is sent again after a SCRIPT LOAD (the markers skip what went in)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for row in rows:
                marker, *args = self._script_args(row)
                evalsha(pipe, self.script.sha, [self.stream, marker], *args)
            try:
                await pipe.execute()
                return
            except NoScriptError:
                if attempt:
                    raise
                await self.client.script_load(RELAY_SCRIPT)

    async def _relay(self, conn: asyncpg.Connection, where: str, arg: object) -> int:
        """One batch of the rows `where` selects (skipping rows another relay holds), in
        one transaction: DELETE them, XADD each, commit; a failed XADD rolls back."""
        async with conn.transaction():
            rows = await conn.fetch(
                "DELETE FROM dispatchoutbox WHERE seq IN (SELECT seq FROM dispatchoutbox"
                f" WHERE {where} ORDER BY seq LIMIT {MAX_BATCH_ROWS} FOR UPDATE SKIP LOCKED)"
                f" RETURNING {COLUMNS}",
                arg,
            )
            if not rows:
                return 0
            await self._xadd_rows(sorted(rows, key=lambda r: int(r["seq"])))
        return len(rows)

    async def flush(self, conn: asyncpg.Connection | None = None) -> int:
        """Relay the rows this task inserted one by one (committed) since its last flush, on
        `conn` (the action's own, after its commit) or a pooled one; on return they are on
        the stream.
        Never raises: the state change is committed, and what is left goes out with the
        background relay after `RELAY_GRACE_S`."""
        seqs = _written.get()
        if not seqs:
            return 0
        _written.set(None)
        try:
            if conn is not None:
                return await self._relay_all(conn, "seq = ANY($1::bigint[])", seqs)
            async with self._conn() as pooled:
                return await self._relay_all(pooled, "seq = ANY($1::bigint[])", seqs)
        except Exception:  # the database or Redis away: the background relay retries
            log.exception("outbox relay")
            return 0

    async def _relay_all(self, conn: asyncpg.Connection, where: str, arg: object) -> int:
        """Batches of `_relay` until one is not full (an action's own rows: one batch)."""
        total = 0
        while True:
            relayed = await self._relay(conn, where, arg)
            total += relayed
            if relayed < MAX_BATCH_ROWS:
                return total

    async def recover(self) -> int:
        """Relay every row older than `RELAY_GRACE_S` (left by a process that died or a
        relay that failed). Never raises: the next pass retries."""
        try:
            async with self._conn() as conn:
                return await self._relay_all(
                    conn, "createdat < now() - make_interval(secs => $1::float8)", RELAY_GRACE_S
                )
        except Exception:
            log.exception("outbox recovery")
            return 0

    async def delete_relayed(self) -> int:
        """Delete the rows relayed from memory so far, in one statement. Never raises: on
        failure they wait for the next pass (or `recover`, which their markers skip)."""
        if not self.relayed:
            return 0
        seqs = list(self.relayed)
        self.relayed.clear()
        try:
            async with self._conn() as conn:
                await conn.execute("DELETE FROM dispatchoutbox WHERE seq = ANY($1::bigint[])", seqs)
        except Exception:
            log.exception("outbox delete")
            self.relayed.extendleft(reversed(seqs))
            return 0
        return len(seqs)

    async def run(self) -> None:
        """The background relay: deletes the rows relayed from memory, and recovers rows
        whose process died (or whose relay failed) before relaying them."""
        loop = asyncio.get_running_loop()
        next_recovery = loop.time()
        while True:
            await self.delete_relayed()
            if loop.time() >= next_recovery:
                await self.recover()
                next_recovery = loop.time() + RELAY_POLL_S
            await asyncio.sleep(DELETE_POLL_S)
