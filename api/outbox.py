"""The relay of the dispatch events from the outbox to the stream `{prefix}dispatch`.

An action's unit of work (api/unit_of_work.py) writes its events into `dispatchoutbox` in
its own transaction, so they commit or roll back with it. The relay then moves committed
rows to the stream:
  - `committed` takes an action's rows right after its commit; one task puts them on the
    stream from memory, in the order the commits came (one pipelined Redis round trip for
    whatever has gathered), after the response: an action does not wait for Redis. Their
    rows are deleted by the background loop a moment later, in one statement for every
    action of that moment;
  - `relay_rows` relays given rows from the database (what a test or a tool wrote);
  - `recover`, every `RELAY_POLL_S` in the background, relays rows older than
    `RELAY_GRACE_S`: those of a process that died between its commit and its relay, or of
    a relay that failed.

Exactly once into the stream: the XADD runs in a Lua script that skips an event whose
marker `{prefix}outbox:{eventid}` exists and sets the marker with the entry, atomically,
so a row relayed but not yet deleted (waiting for the background delete; or one whose
relay died before its DELETE committed) is not added twice, whichever relay reaches it
next. The database relays delete a row in the transaction that XADDs it (the DELETE ...
RETURNING locks it, so two of them do not both take it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import asyncpg
from redis.exceptions import NoScriptError

from api.events import DEFAULT_RETENTION_S, MAX_STREAM_ENTRIES
from api.store import outbox as store
from contracts.keys import same_slot_as
from gateway.redis_link import AnyRedis, evalsha

log = logging.getLogger("fixgate.api.outbox")

RELAY_POLL_S = 1.0
"""How often the background relay looks for rows left behind: with `RELAY_GRACE_S` it
bounds the delay of recovery."""
RELAY_GRACE_S = 2.0
"""Rows older than this are the background relay's: the relay from memory puts a
committed row on the stream within milliseconds, so older ones were left by a process that
died or a relay that failed (and the two relays rarely reach for the same rows)."""
MAX_BATCH_ROWS = 500
"""Rows per relay transaction: one DELETE and one Redis round trip (pipelined)."""
MARKER_TTL_S = 3600
"""How long a relayed event's marker is kept: far longer than a relay takes between XADD
and DELETE, even across a crash and the next relay pass."""

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

DELETE_POLL_S = 0.1
"""How long a row relayed from memory waits for its DELETE: the rows of every action of
that moment go in one statement, far inside `RELAY_GRACE_S`."""
MAX_DELETE_BACKLOG = 100_000
"""Seqs waiting for their DELETE kept while the database is away; beyond it some are left
to `recover` (their markers skip them, and it deletes them)."""
MAX_PENDING_ROWS = 100_000
"""Committed rows waiting for the relay from memory while Redis is away; beyond it the
oldest are left to `recover` (they are in the database until relayed)."""

Row = asyncpg.Record | dict[str, Any]


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
        self.pending: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_PENDING_ROWS)
        """Committed rows for the relay from memory, in commit order."""
        self.wake = asyncio.Event()
        self.relayed: collections.deque[int] = collections.deque(maxlen=MAX_DELETE_BACKLOG)
        """Seqs on the stream whose rows wait for the background DELETE."""

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield cast(asyncpg.Connection, conn)

    def committed(self, rows: Sequence[dict[str, Any]]) -> None:
        """An action's rows, just committed: on the stream next, after those before."""
        if rows:
            self.pending.extend(rows)
            self.wake.set()

    async def relay_pending(self) -> int:
        """Put what has gathered on the stream, in order, in one round trip. Never raises:
        what fails stays in the database for `recover`."""
        if not self.pending:
            return 0
        rows = list(self.pending)
        self.pending.clear()
        try:
            await self._xadd_rows(rows)
        except Exception:  # Redis away: the rows stay, `recover` relays them
            log.exception("outbox relay")
            return 0
        self.relayed.extend(int(row["seq"]) for row in rows)
        return len(rows)

    def _script_args(self, row: Row) -> list[Any]:
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

    async def xadd(self, row: Row) -> bytes | str | None:
        """The row's entry on the stream (its id), unless it was added before (None)."""
        marker, *args = self._script_args(row)
        added: bytes | str | None = await self.script(keys=[self.stream, marker], args=args)
        return added

    async def _xadd_rows(self, rows: Sequence[Row]) -> None:
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
        """One batch of the rows `where` selects, in one transaction: DELETE them, XADD
        each, commit; a failed XADD rolls back."""
        async with conn.transaction():
            rows = await store.take(conn, where, arg, MAX_BATCH_ROWS)
            if not rows:
                return 0
            await self._xadd_rows(rows)
        return len(rows)

    async def _relay_all(self, conn: asyncpg.Connection, where: str, arg: object) -> int:
        """Batches of `_relay` until one is not full."""
        total = 0
        while True:
            relayed = await self._relay(conn, where, arg)
            total += relayed
            if relayed < MAX_BATCH_ROWS:
                return total

    async def relay_rows(self, seqs: Sequence[int]) -> int:
        """Relay these rows from the database (those still there); how many went out."""
        if not seqs:
            return 0
        async with self._conn() as conn:
            return await self._relay_all(conn, store.BY_SEQ, list(seqs))

    async def recover(self) -> int:
        """Relay every row older than `RELAY_GRACE_S` (left by a process that died or a
        relay that failed). Never raises: the next pass retries."""
        try:
            async with self._conn() as conn:
                return await self._relay_all(conn, store.OLDER_THAN, RELAY_GRACE_S)
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
                await store.delete(conn, seqs)
        except Exception:
            log.exception("outbox delete")
            self.relayed.extendleft(reversed(seqs))
            return 0
        return len(seqs)

    async def _relay_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.relay_pending()

    async def _cleanup_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_recovery = loop.time()
        while True:
            await self.delete_relayed()
            if loop.time() >= next_recovery:
                await self.recover()
                next_recovery = loop.time() + RELAY_POLL_S
            await asyncio.sleep(DELETE_POLL_S)

    async def run(self) -> None:
        """The relay from memory, and the background loop that deletes what it relayed and
        recovers rows whose process died (or whose relay failed) before relaying them."""
        await asyncio.gather(self._relay_loop(), self._cleanup_loop())

    async def drain(self) -> None:
        """At shutdown: what is committed goes out, and its rows are deleted."""
        await self.relay_pending()
        await self.delete_relayed()
