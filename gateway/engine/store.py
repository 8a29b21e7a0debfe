"""Per-device engine state in Redis, written together with its events in one atomic step.

Key `{prefix}engine:device:{id}` is a hash: `rev` (the compare-and-set token) and
`state` (msgpack `geofence.state.DeviceState`, which carries the newest evaluated fix time).
`commit` runs one Lua script per chunk of devices that, for each device, checks the stored
rev is the one the evaluation started from, then stores the new state and XADDs its
events: for a device both happen, or neither. Why no event is lost or doubled:
  - two engines evaluating neighbouring fixes of one device: the second commit finds a
    new rev and is refused; that engine re-reads the state and re-evaluates, and the fixes
    the first engine covered are now late (not newer than the state's fix time): skipped;
  - an engine killed after the commit and before XACK: the entry is redelivered (or
    claimed by another engine), and its fixes are late against the committed state;
  - killed before the commit: nothing was written; the redelivered entry is evaluated
    afresh, with the same deterministic event ids.
The store remembers what it last committed or read per device, so a device whose fixes
keep coming to this engine costs no read: the compare-and-set still guards against another
engine having moved it (revs only grow, so a remembered rev is stale or current, never
mistaken), and a refused commit forgets the device, which is then read afresh.
The script touches device keys and the events stream; on Redis Cluster they would need one
hash slot (a `{...}` hash tag in the prefix), which also puts all engine state on one shard:
a single Redis (with replicas) is the supported deployment today.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis

from geofence.state import DeviceState, decode_state, encode_state

MAX_EVENTS_STREAM: Final = 1_000_000
"""Approximate cap of the events stream: live consumers, not an archive (about a day of
a 10,000-device fleet's geofence and trip traffic)."""
MAX_DEVICES_PER_SCRIPT: Final = 256
"""Devices committed by one script call: large enough that the per-call cost vanishes,
small enough that one call holds Redis for well under a millisecond or two."""
MAX_REMEMBERED: Final = 200_000
"""Devices whose last committed state is kept in memory (a few hundred bytes each); past
it the memory starts over and devices are read once more."""

_COMMIT = """
local out = {}
local a = 2
for k = 2, #KEYS do
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


class StateStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.events_key = f"{prefix}events"
        self._commit = client.register_script(_COMMIT)
        # device -> (encoded state, rev token) as last committed or read. Encoded, not the
        # object: evaluation changes states in place, and a failed commit must not leave
        # an uncommitted change behind.
        self._known: dict[str, tuple[bytes, str]] = {}

    def key(self, device: str) -> str:
        return f"{self.prefix}engine:device:{device}"

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

    async def commit(self, items: Sequence[tuple[DeviceState, str, Sequence[bytes]]]) -> list[bool]:
        """Store each (new state, rev it was read at, events) if nobody moved it meanwhile;
        per item whether it was stored."""
        if not items:
            return []
        encoded = [encode_state(state) for state, _, _ in items]
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, len(items), MAX_DEVICES_PER_SCRIPT):
            chunk = range(start, min(start + MAX_DEVICES_PER_SCRIPT, len(items)))
            keys = [self.events_key]
            args: list[bytes | str | int] = [MAX_EVENTS_STREAM]
            for i in chunk:
                state, expected, events = items[i]
                keys.append(self.key(state.device))
                args += (expected, str(state.rev), encoded[i], len(events), *events)
            await self._commit(keys=keys, args=args, client=pipe)
        try:
            replies = await pipe.execute()
        except BaseException:
            for state, _, _ in items:  # unknown which were stored: read them afresh
                self.forget(state.device)
            raise
        stored = [bool(ok) for reply in replies for ok in reply]
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
