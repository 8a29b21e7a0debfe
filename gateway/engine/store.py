"""Per-device engine state in Redis, written together with its events in one atomic step.

Key `{prefix}engine:device:{id}` is a hash: `rev` (the compare-and-set token) and
`state` (msgpack `geofence.state.DeviceState`, which carries the newest evaluated fix time).
`commit` runs one Lua script that checks the stored rev is the one the evaluation started
from, then stores the new state and XADDs the events: both happen, or neither. Why no
event is lost or doubled:
  - two engines evaluating neighbouring fixes of one device: the second commit finds a
    new rev and is refused; that engine re-reads the state and re-evaluates, and the fixes
    the first engine covered are now late (not newer than the state's fix time): skipped;
  - an engine killed after the commit and before XACK: the entry is redelivered (or
    claimed by another engine), and its fixes are late against the committed state;
  - killed before the commit: nothing was written; the redelivered entry is evaluated
    afresh, with the same deterministic event ids.
The script touches the device's key and the events stream; on Redis Cluster both would
need one hash slot (a `{...}` hash tag in the prefix), which also puts all engine state on
one shard: a single Redis (with replicas) is the supported deployment today.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from geofence.state import DeviceState, decode_state, encode_state

MAX_EVENTS_STREAM = 1_000_000
"""Approximate cap of the events stream: live consumers, not an archive (about a day of
a 10,000-device fleet's geofence and trip traffic)."""

_COMMIT = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'state', ARGV[3])
for i = 5, #ARGV do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'event', ARGV[i])
end
return 1
"""


class StateStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.events_key = f"{prefix}events"
        self._commit = client.register_script(_COMMIT)

    def key(self, device: str) -> str:
        return f"{self.prefix}engine:device:{device}"

    async def load(self, devices: Sequence[tuple[str, str]]) -> list[tuple[DeviceState, str]]:
        """(state, rev token) per (device, tenant); a fresh state (token "") if none."""
        pipe = self.client.pipeline(transaction=False)
        for device, _ in devices:
            pipe.hmget(self.key(device), "rev", "state")
        out: list[tuple[DeviceState, str]] = []
        for (device, tenant), (rev, raw) in zip(devices, await pipe.execute(), strict=True):
            if raw is None:
                out.append((DeviceState(device=device, tenant=tenant), ""))
            else:
                out.append((decode_state(raw), rev.decode()))
        return out

    async def commit(self, items: Sequence[tuple[DeviceState, str, Sequence[bytes]]]) -> list[bool]:
        """Store each (new state, rev it was read at, events) if nobody moved it meanwhile;
        per item whether it was stored."""
        if not items:
            return []
        pipe = self.client.pipeline(transaction=False)
        for state, expected, events in items:
            await self._commit(
                keys=[self.key(state.device), self.events_key],
                args=[expected, str(state.rev), encode_state(state), MAX_EVENTS_STREAM, *events],
                client=pipe,
            )
        return [bool(r) for r in await pipe.execute()]
