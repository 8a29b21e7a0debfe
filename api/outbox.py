"""The transactional outbox of the dispatch events.

An action writes its events into `dispatchoutbox` in the transaction of the state change
they report (`OutboxWriter`), so they commit or roll back with it. The relay (`Outbox`)
moves committed rows to the stream `{prefix}dispatch` and deletes them:
  - `flush`, right after the action's commit, relays the rows that action wrote and no
    others (the request path awaits it, so its events are on the stream before the
    response, and concurrent actions never wait for each other's rows);
  - `recover`, every `RELAY_POLL_S` in the background, relays rows older than
    `RELAY_GRACE_S`: those of a process that died between its commit and its relay, or of
    a relay that failed.

Exactly once into the stream: a row is deleted in the transaction that XADDs it (the
DELETE ... RETURNING locks it; a relay that dies or fails rolls back and leaves the row to
the next one); the XADD runs in a Lua script that skips an event whose marker
`{prefix}outbox:{eventid}` exists and sets the marker with the entry, atomically, so a row
relayed but not deleted is not added twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from api.events import DEFAULT_RETENTION_S, MAX_STREAM_ENTRIES, to_json

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
"""Seqs of the rows the current task wrote since its last `Outbox.flush`."""


def _note(seq: int) -> None:
    mine = _written.get()
    if mine is None:
        mine = []
        _written.set(mine)
    mine.append(seq)


class OutboxWriter:
    """The Notifier's sink inside an action's transaction: the events commit with it, and
    the task's next `Outbox.flush` relays them."""

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
        seq: int = await self.conn.fetchval(
            "INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)"
            " VALUES ($1, $2, $3::json, $4::json, $5) RETURNING seq",
            tenant,
            event,
            to_json(groups),
            to_json(payload),
            event_id or uuid.uuid4(),
        )
        _note(seq)


class Outbox:
    """The relay from `dispatchoutbox` to `{prefix}dispatch`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: aioredis.Redis,
        prefix: str,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self.pool = pool
        self.client = client
        self.stream = f"{prefix}dispatch"
        self.marker_prefix = f"{prefix}outbox:"
        self.retention_ms = int(retention_s * 1000)
        self.script = client.register_script(RELAY_SCRIPT)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            yield cast(asyncpg.Connection, conn)

    async def xadd(
        self, row: asyncpg.Record, client: aioredis.Redis | None = None
    ) -> bytes | str | None:
        """The row's entry on the stream (its id), unless it was added before (None)."""
        added: bytes | str | None = await self.script(
            keys=[self.stream, f"{self.marker_prefix}{row['eventid']}"],
            args=[
                MARKER_TTL_S,
                MAX_STREAM_ENTRIES,
                self.retention_ms,
                str(row["eventid"]),
                row["event"],
                row["tenant_id"],
                row["groups"],
                row["payload"],
                row["createdat"].isoformat(),
            ],
            client=client,
        )
        return added

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
            pipe = self.client.pipeline(transaction=False)
            for row in sorted(rows, key=lambda r: int(r["seq"])):
                await self.xadd(row, client=pipe)
            await pipe.execute()
        return len(rows)

    async def flush(self, conn: asyncpg.Connection | None = None) -> int:
        """Relay the rows this task wrote (committed) since its last flush, on `conn` (the
        action's own, after its commit) or a pooled one; on return they are on the stream.
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

    async def run(self) -> None:
        """The background relay: recovery of rows whose process died before relaying."""
        while True:
            await self.recover()
            await asyncio.sleep(RELAY_POLL_S)
