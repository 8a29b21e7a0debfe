"""The transactional outbox of the dispatch events.

An action writes its events into `dispatchoutbox` in the transaction of the state change
they report (`OutboxWriter`), so they commit or roll back with it. The relay (`Outbox`)
moves committed rows to the stream `{prefix}dispatch` and deletes them: right after each
commit (the request path awaits it, so the events are on the stream before the response)
and every `RELAY_POLL_S` in the background (rows that a process committed but died before
relaying).

Exactly once into the stream: a row is deleted only after its XADD, in the transaction that
locked it, so a relay that dies leaves the row to the next one; the XADD runs in a Lua
script that skips an event whose marker `{prefix}outbox:{eventid}` exists and sets the
marker with the entry, atomically, so a row relayed but not deleted is not added twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis

from api.events import DEFAULT_RETENTION_S, MAX_STREAM_ENTRIES, to_json

log = logging.getLogger("fixgate.api.outbox")

RELAY_POLL_S = 1.0
"""How soon the background relay picks up rows a dead process left: the request path relays
its own at once, this only bounds the delay of recovery."""
MAX_BATCH_ROWS = 500
"""Rows per relay transaction: one Redis round trip (pipelined) and one DELETE; an action
writes a handful, so one batch holds a burst of concurrent actions."""
MAX_WAIT_MS = 5000
"""Longest the request path waits for rows another relay holds (a relay takes milliseconds;
one stuck on a dead Redis connection must not hold up the responses: the background relay
gets the rows later)."""
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


class OutboxWriter:
    """The Notifier's sink inside an action's transaction: the events commit with it."""

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
        await self.conn.execute(
            "INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)"
            " VALUES ($1, $2, $3::json, $4::json, $5)",
            tenant,
            event,
            to_json(groups),
            to_json(payload),
            event_id or uuid.uuid4(),
        )

    async def publish_each(
        self, tenant: str, event: str, payload: Any, groups_each: list[list[str]]
    ) -> None:
        body = to_json(payload)  # encoded once for the whole phase
        await self.conn.executemany(
            "INSERT INTO dispatchoutbox (tenant_id, event, groups, payload, eventid)"
            " VALUES ($1, $2, $3::json, $4::json, $5)",
            [(tenant, event, to_json(groups), body, uuid.uuid4()) for groups in groups_each],
        )


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

    async def _relay(self, conn: asyncpg.Connection, upto: int, *, wait: bool) -> int:
        """One batch of rows up to seq `upto`, in one transaction: XADD each, then DELETE.
        `wait`: take the rows another relay holds once it is done with them (none left if
        it committed, all of them if it died), instead of skipping them."""
        lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
        async with conn.transaction():
            if wait:
                await conn.execute(f"SET LOCAL lock_timeout = {MAX_WAIT_MS}")
            rows = await conn.fetch(
                f"SELECT {COLUMNS} FROM dispatchoutbox WHERE seq <= $1 ORDER BY seq LIMIT $2"
                f" {lock}",
                upto,
                MAX_BATCH_ROWS,
            )
            if not rows:
                return 0
            pipe = self.client.pipeline(transaction=False)
            for row in rows:
                await self.xadd(row, client=pipe)
            await pipe.execute()
            await conn.execute(
                "DELETE FROM dispatchoutbox WHERE seq = ANY($1::bigint[])",
                [row["seq"] for row in rows],
            )
        return len(rows)

    async def flush(self) -> int:
        """Relay every row committed before the call; on return they are on the stream
        (rows another relay holds are waited for). Never raises: the state change is
        committed, and what is left goes out with the next pass."""
        total = 0
        try:
            async with self._conn() as conn:
                upto: int | None = await conn.fetchval("SELECT max(seq) FROM dispatchoutbox")
                if upto is None:
                    return 0
                for wait in (False, True):
                    while relayed := await self._relay(conn, upto, wait=wait):
                        total += relayed
        except asyncpg.LockNotAvailableError:
            log.warning("outbox rows held by another relay for %d ms: left to it", MAX_WAIT_MS)
        except Exception:  # the database or Redis away: the rows wait for the next pass
            log.exception("outbox relay")
        return total

    async def run(self) -> None:
        """The background relay: recovery of rows whose process died before relaying."""
        while True:
            await self.flush()
            await asyncio.sleep(RELAY_POLL_S)
