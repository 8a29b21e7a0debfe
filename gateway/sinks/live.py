"""Live positions in Redis: a GEO set per tenant and a hash per device, newest fix wins.

"Newest" is by `ingest.filters.order_time`, the fix time capped at the receive time (the
hash's `ts`), so a fix dated ahead of the clock cannot hold the position against the
device's next real fixes. The check runs inside Redis (a small Lua script comparing `ts`), so it
holds across gateway instances and restarts, and a late fix never moves a live position
back. A batch is one pipelined round trip: one script call per 500 devices plus one stream
entry carrying every valid fix of the batch for downstream consumers (the engine, which
evaluates each one; WebSocket).

Keys, under the configured prefix P:
  P live:{tenant}       GEO set of device ids
  P device:{device_id}  hash: the device's newest fix
  P positions           stream: entries of msgpack-encoded fix lists
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence

import msgspec
import redis.asyncio as aioredis

from devices.fix import Fix
from gateway import metrics
from gateway.retry import RETRY_BACKOFF_S, backoff
from gateway.sinks.health import SinkHealth
from ingest.filters import order_time

log = logging.getLogger(__name__)

# Redis GEO accepts latitudes up to 85.05112878 (Web Mercator's limit).
MAX_GEO_LAT = 85.05112878
MAX_STREAM_ENTRIES = 100_000
"""The event stream is for live consumers, not history: trim it (approximately) here."""

_NEWEST_WINS = """
local fixes = cmsgpack.unpack(ARGV[1])
local moved = 0
for i, f in ipairs(fixes) do
  local device = KEYS[2 * i - 1]
  local current = redis.call('HGET', device, 'ts')
  if not current or tonumber(current) < tonumber(f[1]) then
    redis.call('DEL', device)
    redis.call('HSET', device, 'ts', f[1], unpack(f, 5))
    if f[4] == '1' then redis.call('GEOADD', KEYS[2 * i], f[2], f[3], f[6]) end
    moved = moved + 1
  end
end
return moved
"""
"""One call per round for a whole batch of devices: ARGV[1] is a msgpack array with, per
device, [ts, lon, lat, geo, field, value, ...] as strings (`_fields`); KEYS are the
device's hash and its tenant's GEO set, in pairs. The hash is replaced, not merged: it
holds the newest fix's fields only, so an alarm (or a battery level) of an older fix never
lingers beside a newer fix that did not report one. Packing the batch into one blob instead
of a script call per device (30 arguments each) cut the gateway's cost per live update
about tenfold; the per-device keys are still declared, as Redis Cluster wants."""

MAX_FIXES_PER_STREAM_ENTRY = 5000
"""Fixes per positions-stream entry: one gateway batch (`FIXGATE_BATCH_MAX_FIXES`) is one
entry, so a consumer reads a whole batch at once; a replayed backlog is split."""
MAX_STREAM_BACKLOG_FIXES = 200_000
"""Stream fixes kept while Redis is away (about 40 MB); past it the oldest are dropped and
counted: the live positions stay right (newest wins), only the engine misses them."""

MAX_DEVICES_PER_CALL = 500
"""Devices per script call: a call runs atomically in Redis, so bound how long it blocks
other clients (500 devices take a few milliseconds)."""

_encode = msgspec.msgpack.Encoder().encode
decode_fixes = msgspec.msgpack.Decoder(list[Fix]).decode


_NUMBER_FIELDS = (
    "altitude", "speed", "heading", "accuracy", "hdop", "satellites", "battery",
    "power_v", "odometer_m",
)  # fmt: skip
"""Optional numeric fields of a fix, in the hash only when the device reported them."""


def _fields(fix: Fix) -> list[str]:
    """[ts, lon, lat, geo] then the hash's field/value pairs, as strings (floats by repr,
    as redis-py formats them). Fields 5 and 6 are ('device', id): the GEO member."""
    fields = [
        repr(order_time(fix).timestamp()), repr(fix.lon), repr(fix.lat), "1" if abs(fix.lat) <= MAX_GEO_LAT else "0",
        "device", fix.device_id, "tenant", fix.tenant_id, "time", fix.time.isoformat(),
        "lat", repr(fix.lat), "lon", repr(fix.lon), "protocol", fix.protocol.value,
        "valid", "1" if fix.valid else "0",
    ]  # fmt: skip
    for name in _NUMBER_FIELDS:
        value = getattr(fix, name)
        if value is not None:
            fields += [name, repr(value)]
    if fix.ignition is not None:
        fields += ["ignition", "1" if fix.ignition else "0"]
    if fix.alarm is not None:
        fields += ["alarm", fix.alarm]
    if fix.received_at is not None:
        fields += ["received_at", fix.received_at.isoformat()]
    return fields


class LiveWriter:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_NEWEST_WINS)

    def device_key(self, device_id: str) -> str:
        return f"{self.prefix}device:{device_id}"

    def geo_key(self, tenant_id: str) -> str:
        return f"{self.prefix}live:{tenant_id}"

    @property
    def stream_key(self) -> str:
        return f"{self.prefix}positions"

    async def write(self, fixes: Iterable[Fix], stream: Sequence[Fix] = ()) -> int:
        """Offer each device's newest fix (`fixes`: one per device) and append `stream`
        (every valid fix, in order) to the positions stream, in one round trip; return how
        many moved a live position."""
        fixes = list(fixes)
        if not fixes and not stream:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for first in range(0, len(fixes), MAX_DEVICES_PER_CALL):
            chunk = fixes[first : first + MAX_DEVICES_PER_CALL]
            keys: list[str] = []
            for fix in chunk:
                keys += (self.device_key(fix.device_id), self.geo_key(fix.tenant_id))
            await self._script(keys=keys, args=[_encode([_fields(f) for f in chunk])], client=pipe)
        for first in range(0, len(stream), MAX_FIXES_PER_STREAM_ENTRY):
            entry = {"fixes": _encode(stream[first : first + MAX_FIXES_PER_STREAM_ENTRY])}
            pipe.xadd(self.stream_key, entry, maxlen=MAX_STREAM_ENTRIES, approximate=True)  # type: ignore[arg-type]  # redis-py types the fields dict as invariant
        results = await pipe.execute()
        scripts = -(-len(fixes) // MAX_DEVICES_PER_CALL)
        return sum(int(moved) for moved in results[:scripts])


class LiveUpdater:
    """Live positions to Redis, decoupled from history: each device's newest fix to its
    hash and GEO set, and every valid fix to the positions stream for the engine.

    While Redis is away, pending live updates coalesce per device (newest wins), so that
    backlog is bounded by the fleet, not by the outage's length; stream fixes wait too, up
    to `MAX_STREAM_BACKLOG_FIXES`. When Redis comes back, every device's newest fix seen by
    this process is offered again: a Redis that restarted empty gets all live positions
    back, and the newest-wins script keeps the rest as is.
    """

    def __init__(self, writer: LiveWriter) -> None:
        self.writer = writer
        self.redis = SinkHealth("redis")
        self._pending: dict[str, Fix] = {}
        self._latest: dict[str, Fix] = {}
        self._stream: list[Fix] = []
        self._kick = asyncio.Event()
        metrics.LIVE_BACKLOG.set_function(lambda: len(self._pending))

    @property
    def redis_ok(self) -> bool:
        return self.redis.ok

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
            over = len(self._stream) - MAX_STREAM_BACKLOG_FIXES
            if over > 0:
                del self._stream[:over]
                metrics.STREAM_DROPPED.inc(over)
        if pending:
            self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not (stop.is_set() and not self._pending):
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), 0.5)
                self._kick.clear()
                continue
            taken, self._pending = self._pending, {}
            stream, self._stream = self._stream, []
            started = time.perf_counter()
            try:
                moved = await self.writer.write(taken.values(), stream)
            except Exception as e:  # whatever it is, the updates wait and are retried
                self.redis.failed(e, "live positions will catch up")
                self.offer(list(taken.values()), to_stream=False)  # back in, newest still wins
                self._stream[:0] = stream  # in front of what came meanwhile, order kept
                if stop.is_set():
                    log.warning(
                        "redis: %d live positions not written at shutdown", len(self._pending)
                    )
                    return
                await asyncio.sleep(backoff(RETRY_BACKOFF_S, attempt))
                attempt += 1
                continue
            attempt = 0
            metrics.WRITE_SECONDS.labels("redis").observe(time.perf_counter() - started)
            metrics.LIVE_UPDATES.inc(moved)
            if not self.redis.ok:
                self.redis.worked()
                self.offer(list(self._latest.values()), to_stream=False)


def redis_client(url: str) -> aioredis.Redis:
    # Short timeouts: a Redis that does not answer must not stall live updates for long.
    return aioredis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
    )
