"""Per-device engine state in Redis, written together with its events in one atomic step.

Key `contracts.keys.Keys.engine_state(id)` is a hash: `rev` (the compare-and-set token)
and `state` (msgpack `geofence.state.DeviceState`, which carries the newest evaluated fix
time). `commit` runs one Lua script per shard and chunk of devices that first checks the
shard's fencing token is the one this engine took with its lease (gateway/engine/leases.py),
then, for each device, checks the stored rev is the one the evaluation started from, and
stores the new state and XADDs its events to the shard's events stream: for a device both
happen, or neither; for an engine that lost the shard, nothing. Every key of a call shares
the shard's hash tag, so on Redis Cluster it runs in one slot. Why no event is lost or
doubled:
  - an engine whose lease lapsed (paused, cut off) and whose shard another engine took:
    its commits are refused by the fencing token, so only the new owner writes;
  - two evaluations of neighbouring fixes of one device (a trip change or a route beside
    the fixes): the second commit finds a new rev and is refused; it is read and evaluated
    again, and the fixes the first covered are now late (not newer than the state's fix
    time): skipped;
  - an engine killed after the commit and before XACK: the entry is claimed by the shard's
    next owner, and its fixes are late against the committed state;
  - killed before the commit: nothing was written; the claimed entry is evaluated afresh,
    with the same deterministic event ids.
The store remembers what it last committed or read per device, so a device whose fixes
keep coming to this engine costs no read: the compare-and-set still guards against another
writer having moved it (revs only grow, so a remembered rev is stale or current, never
mistaken), and a refused commit forgets the device, which is then read afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

from contracts import events as event_contract
from contracts.keys import DEFAULT_SHARDS, Keys
from gateway.redis_link import AnyPipeline, AnyRedis, evalsha, run_scripted
from geofence.state import DeviceState, decode_state, encode_state

MAX_DEVICES_PER_SCRIPT: Final = 256
"""Devices committed by one script call: large enough that the per-call cost vanishes,
small enough that one call holds Redis for well under a millisecond or two."""
MAX_REMEMBERED: Final = 200_000
"""Devices whose last committed state is kept in memory (a few hundred bytes each); past
it the memory starts over and devices are read once more."""

_COMMIT = """
if ARGV[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return {-1} end
local out = {}
local a = 3
for k = 3, #KEYS do
  local n = tonumber(ARGV[a + 3])
  if (redis.call('HGET', KEYS[k], 'rev') or '') == ARGV[a] then
    redis.call('HSET', KEYS[k], 'rev', ARGV[a + 1], 'state', ARGV[a + 2])
    for i = a + 4, a + 3 + n do
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[i])
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  a = a + 4 + n
end
return out
"""
"""KEYS: the shard's events stream, its fencing token, then the devices' state hashes.
ARGV: the stream's length bound, the token this engine holds ('' for none: no check), then
per device rev expected, new rev, state, event count, events. {-1}: the token moved."""
_COMMIT_SHA = hashlib.sha1(_COMMIT.encode()).hexdigest()

Item = tuple[DeviceState, str, Sequence[bytes]]
"""(new state, rev it was read at, encoded events)."""


class StateStore:
    def __init__(self, client: AnyRedis, prefix: str, shards: int = DEFAULT_SHARDS) -> None:
        self.client = client
        self.keys = Keys(prefix, shards)
        self.stream_bound = max(1000, event_contract.MAX_ENTRIES // shards)
        # device -> (encoded state, rev token) as last committed or read. Encoded, not the
        # object: evaluation changes states in place, and a failed commit must not leave
        # an uncommitted change behind.
        self._known: dict[str, tuple[bytes, str]] = {}
        assert event_contract.FIELD == "event"  # spelled so in _COMMIT

    def key(self, device: str) -> str:
        return self.keys.engine_state(device)

    def forget(self, device: str) -> None:
        self._known.pop(device, None)

    async def load(self, devices: Sequence[tuple[str, str]]) -> list[tuple[DeviceState, str]]:
        """(state, rev token) per (device, tenant); a fresh state (token "") if none."""
        known = self._known
        missing = [(i, d) for i, (d, _) in enumerate(devices) if d not in known]
        read: dict[int, tuple[bytes | None, bytes | None]] = {}
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for _, device in missing:
                pipe.hmget(self.key(device), "rev", "state")
            for (i, _), (rev, raw) in zip(missing, await pipe.execute(), strict=True):
                read[i] = (rev, raw)
        out: list[tuple[DeviceState, str]] = []
        for i, (device, tenant) in enumerate(devices):
            if i in read:
                rev, raw = read[i]
                if raw is None:
                    out.append((DeviceState(device=device, tenant=tenant), ""))
                    continue
                token = rev.decode() if rev is not None else ""
                self._remember(device, raw, token)
                out.append((decode_state(raw), token))
            else:
                raw, token = known[device]
                out.append((decode_state(raw), token))
        return out

    async def commit(
        self, items: Sequence[Item], tokens: Mapping[int, int] | None = None
    ) -> list[bool | None]:
        """Store each (new state, rev it was read at, events) if nobody moved it meanwhile;
        per item whether it was stored, or None when its shard's fencing token moved (the
        shard is another engine's now: nothing of it was stored). `tokens`: the token held
        per shard (None: no lease check, for tools and tests)."""
        if not items:
            return []
        keys = self.keys
        encoded = [encode_state(state) for state, _, _ in items]
        by_shard: dict[int, list[int]] = {}
        for i, (state, _, _) in enumerate(items):
            by_shard.setdefault(keys.shard(state.device), []).append(i)
        calls: list[tuple[int, list[int]]] = []
        for shard, indexes in by_shard.items():
            for start in range(0, len(indexes), MAX_DEVICES_PER_SCRIPT):
                calls.append((shard, indexes[start : start + MAX_DEVICES_PER_SCRIPT]))

        async def build(pipe: AnyPipeline) -> None:
            for shard, chunk in calls:
                names = [keys.events(shard), keys.fence(shard)]
                token = "" if tokens is None else str(tokens.get(shard, -1))
                args: list[bytes | str | int] = [self.stream_bound, token]
                for i in chunk:
                    state, expected, events = items[i]
                    names.append(self.key(state.device))
                    args += (expected, str(state.rev), encoded[i], len(events), *events)
                evalsha(pipe, _COMMIT_SHA, names, *args)

        try:
            replies = await run_scripted(self.client, build, [_COMMIT])
        except BaseException:
            for state, _, _ in items:  # unknown which were stored: read them afresh
                self.forget(state.device)
            raise
        stored: list[bool | None] = [False] * len(items)
        for (_, chunk), reply in zip(calls, replies, strict=True):
            fenced = list(reply) == [-1]
            for n, i in enumerate(chunk):
                stored[i] = None if fenced else bool(reply[n])
        for (state, _, _), raw, ok in zip(items, encoded, stored, strict=True):
            if ok:
                self._remember(state.device, raw, str(state.rev))
            else:
                self.forget(state.device)
        return stored

    def _remember(self, device: str, raw: bytes, token: str) -> None:
        if len(self._known) >= MAX_REMEMBERED and device not in self._known:
            self._known.clear()
        self._known[device] = (raw, token)
