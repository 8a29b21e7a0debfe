"""Live positions in Redis: a GEO set per tenant and shard and a hash per device, newest
fix wins; and every valid fix to its shard's positions stream (contracts.keys, .live,
.positions).

"Newest" is by `ingest.filters.order_time`, the fix time capped at the receive time (the
hash's `ts`), so a fix dated ahead of the clock cannot hold the position against the
device's next real fixes. The check runs inside Redis (a small Lua script comparing `ts`), so it
holds across gateway instances and restarts, and a late fix never moves a live position
back. A batch is one pipelined round trip: per shard, one script call per 500 devices and
one stream entry with the shard's valid fixes of the batch (in order) for the engine. All
keys of one call share the shard's hash tag, so on Redis Cluster a call stays in one slot
and the pipeline goes to each master once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence

from contracts import live, positions
from contracts.keys import DEFAULT_SHARDS, Keys
from devices.fix import Fix
from gateway import metrics
from gateway.redis_link import AnyPipeline, AnyRedis, connect, evalsha, ping, run_scripted
from gateway.retry import RETRY_BACKOFF_S, backoff
from gateway.sinks.health import SinkHealth
from ingest.filters import order_time

log = logging.getLogger(__name__)

_NEWEST_WINS = """
local fixes = cmsgpack.unpack(ARGV[1])
local ts = ARGV[2]
local moved = 0
for i, f in ipairs(fixes) do
  local device = KEYS[2 * i - 1]
  local current = redis.call('HGET', device, ts)
  if not current or tonumber(current) < tonumber(f[1]) then
    redis.call('DEL', device)
    redis.call('HSET', device, ts, f[1], unpack(f, 5))
    if f[4] == '1' then redis.call('GEOADD', KEYS[2 * i], f[2], f[3], f[6]) end
    moved = moved + 1
  end
end
return moved
"""
"""One call per round for a shard's devices: ARGV[1] is a msgpack array with, per device,
`contracts.live.fields` ([ts, lon, lat, geo, field, value, ...] as strings), ARGV[2] the
name of the fix-time field (`contracts.live.TS`); KEYS are the
device's hash and its tenant's GEO set of the shard, in pairs. The hash is replaced, not
merged: it holds the newest fix's fields only, so an alarm (or a battery level) of an older
fix never lingers beside a newer fix that did not report one. Packing the batch into one
blob instead of a script call per device (30 arguments each) cut the gateway's cost per
live update about tenfold."""

MAX_STREAM_BACKLOG_FIXES = 200_000
"""Stream fixes kept while Redis is away (about 40 MB); past it the oldest are dropped and
counted: the live positions stay right (newest wins), only the engine misses them."""
RESEND_WINDOW_S = 3.0
"""After Redis comes back, the stream fixes written in this long before it went away are
written again: Redis appends to its AOF every second (`appendfsync everysec`), so a
kill -9 may lose the last second it acknowledged. The engine skips what it has already
evaluated (fix time not newer than its state), so a repeat costs nothing but the read."""
MAX_RESEND_FIXES = 100_000
"""Bound of the recently written stream fixes kept for that (about 20 MB)."""

PING_EVERY_S = 1.0
"""With nothing to write, Redis is asked whether it answers this often (readiness)."""
MAX_DEVICES_PER_CALL = 500
"""Devices per script call: a call runs atomically in Redis, so bound how long it blocks
other clients (500 devices take a few milliseconds)."""


class LiveWriter:
    def __init__(self, client: AnyRedis | None, prefix: str, shards: int = DEFAULT_SHARDS) -> None:
        self.client = client
        self.keys = Keys(prefix, shards)
        self.prefix = prefix
        self._sha = hashlib.sha1(_NEWEST_WINS.encode()).hexdigest()

    def device_key(self, device_id: str) -> str:
        return self.keys.device(device_id)

    def geo_key(self, tenant_id: str, device_id: str) -> str:
        return self.keys.geo(tenant_id, self.keys.shard(device_id))

    async def write(self, fixes: Iterable[Fix], stream: Sequence[Fix] = ()) -> int:
        """Offer each device's newest fix (`fixes`: one per device) and append `stream`
        (every valid fix, in order) to the positions streams, in one round trip; return how
        many moved a live position."""
        if self.client is None:
            raise ConnectionError("no Redis connection yet")
        keys = self.keys
        by_shard: dict[int, list[Fix]] = {}
        for fix in fixes:
            by_shard.setdefault(keys.shard(fix.device_id), []).append(fix)
        entries = positions.by_shard(stream, keys.shards)
        if not by_shard and not entries:
            return 0
        calls = 0

        async def build(pipe: AnyPipeline) -> None:
            nonlocal calls
            calls = 0
            for shard, group in by_shard.items():
                for first in range(0, len(group), MAX_DEVICES_PER_CALL):
                    chunk = group[first : first + MAX_DEVICES_PER_CALL]
                    names: list[str] = []
                    for fix in chunk:
                        names += (keys.device(fix.device_id), keys.geo(fix.tenant_id, shard))
                    blob = positions.encode_fixes([live.fields(f) for f in chunk])
                    evalsha(pipe, self._sha, names, blob, live.TS)
                    calls += 1
            for shard, group in entries.items():
                name = keys.positions(shard)
                for first in range(0, len(group), positions.MAX_FIXES_PER_ENTRY):
                    blob = positions.encode_fixes(
                        group[first : first + positions.MAX_FIXES_PER_ENTRY]
                    )
                    pipe.xadd(
                        name,
                        {positions.FIELD: blob},
                        maxlen=positions.MAX_ENTRIES,
                        approximate=True,
                    )

        results = await run_scripted(self.client, build, [_NEWEST_WINS])
        return sum(int(moved) for moved in results[:calls])


class LiveUpdater:
    """Live positions to Redis, decoupled from history: each device's newest fix to its
    hash and GEO set, and every valid fix to its shard's positions stream for the engine.

    While Redis is away, pending live updates coalesce per device (newest wins), so that
    backlog is bounded by the fleet, not by the outage's length; stream fixes wait too, up
    to `MAX_STREAM_BACKLOG_FIXES`, and go out in order once Redis is back, after the
    stream fixes of the last `RESEND_WINDOW_S` before the outage (which an AOF fsynced
    every second may have lost). Then every device's newest fix seen by this process is
    offered again: a Redis that restarted empty gets all live positions back, and the
    newest-wins script keeps the rest as is. A gateway that starts while Redis is away
    connects once it answers (and learns then whether it is a cluster).
    """

    def __init__(self, writer: LiveWriter, redis_url: str | None = None) -> None:
        self.writer = writer
        self.redis_url = redis_url
        self.redis = SinkHealth("redis")
        self._pending: dict[str, Fix] = {}
        self._latest: dict[str, Fix] = {}
        self._stream: list[Fix] = []
        self._recent: deque[tuple[float, list[Fix]]] = deque()
        self._recent_fixes = 0
        self._kick = asyncio.Event()
        self._next_ping = 0.0
        metrics.LIVE_BACKLOG.set_function(lambda: len(self._pending))

    @property
    def redis_ok(self) -> bool:
        return self.redis.ok and self.writer.client is not None

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def offer(self, fixes: Sequence[Fix], to_stream: bool = True) -> None:
        """Take valid fixes that moved their device forward, in order."""
        pending, latest = self._pending, self._latest
        for fix in fixes:
            order = order_time(fix)
            current = pending.get(fix.device_id)
            if current is None or order >= order_time(current):
                pending[fix.device_id] = fix
            newest = latest.get(fix.device_id)
            if newest is None or order >= order_time(newest):
                latest[fix.device_id] = fix
        if to_stream and fixes:
            self._stream.extend(fixes)
            self._trim_stream()
        if pending:
            self._kick.set()

    def _trim_stream(self) -> None:
        over = len(self._stream) - MAX_STREAM_BACKLOG_FIXES
        if over > 0:
            del self._stream[:over]
            metrics.STREAM_DROPPED.inc(over)

    def _remember(self, stream: list[Fix], now: float) -> None:
        """Keep what was just written for a resend after an outage (a bounded window)."""
        if stream:
            self._recent.append((now, stream))
            self._recent_fixes += len(stream)
        recent = self._recent
        while recent and (
            recent[0][0] < now - RESEND_WINDOW_S or self._recent_fixes > MAX_RESEND_FIXES
        ):
            self._recent_fixes -= len(recent.popleft()[1])

    async def _check(self) -> None:
        """With nothing to write, whether Redis answers (readiness says so), every
        `PING_EVERY_S`; when it answers again, every device's newest fix is offered."""
        self._next_ping = time.monotonic() + PING_EVERY_S
        try:
            answered = await self._connected() and await ping(self.writer.client)  # type: ignore[arg-type]  # _connected set it
        except Exception as e:  # the probe of a server that is away
            self.redis.failed(e, "live positions will catch up")
            return
        if not answered:
            self.redis.failed(ConnectionError("no answer to PING"), "live positions will catch up")
        elif not self.redis.ok:
            self.offer(list(self._latest.values()), to_stream=False)  # written, then worked()

    async def _connected(self) -> bool:
        if self.writer.client is not None:
            return True
        if self.redis_url is None:
            return False
        self.writer.client = await connect(self.redis_url)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not (stop.is_set() and not self._pending):
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 0.5)
                self._kick.clear()
                if not self._pending and time.monotonic() >= self._next_ping:
                    await self._check()
                continue
            taken, self._pending = self._pending, {}
            stream, self._stream = self._stream, []
            started = time.perf_counter()
            try:
                if not await self._connected():
                    raise ConnectionError("no Redis URL to connect to")
                moved = await self.writer.write(taken.values(), stream)
            except Exception as e:  # whatever it is, the updates wait and are retried
                if self.redis.ok:
                    # What the outage may have taken from Redis goes first when it is back.
                    resend = [f for _, fixes in self._recent for f in fixes]
                    self._recent.clear()
                    self._recent_fixes = 0
                    stream[:0] = resend
                self.redis.failed(e, "live positions will catch up")
                self.offer(list(taken.values()), to_stream=False)  # back in, newest still wins
                self._stream[:0] = stream  # in front of what came meanwhile, order kept
                self._trim_stream()
                if stop.is_set():
                    log.warning(
                        "redis: %d live positions not written at shutdown", len(self._pending)
                    )
                    return
                await asyncio.sleep(backoff(RETRY_BACKOFF_S, attempt))
                attempt += 1
                continue
            attempt = 0
            self._remember(stream, time.monotonic())
            metrics.WRITE_SECONDS.labels("redis").observe(time.perf_counter() - started)
            metrics.LIVE_UPDATES.inc(moved)
            if not self.redis.ok:
                self.redis.worked()
                self.offer(list(self._latest.values()), to_stream=False)
