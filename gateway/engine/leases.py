"""Which engine process evaluates which shard: leases in Redis with a fencing token.

Every engine process announces itself in `Pengines` (a sorted set scored by the moment its
claim expires, by Redis's clock) every `tick` and reads who else is there. The shards are
divided round robin over the members in name order (shard s goes to member s mod n), so
the split is even and every process computes the same one. A process takes a shard it
should have with a lease (`P{sN}lease`, SET NX PX): on taking it, the shard's fencing
token (`P{sN}fence`) is raised, and every state commit of the shard checks that the token
is still the one it took (gateway/engine/store.py), so a process that lost its lease
(paused, partitioned, too slow to renew) cannot commit any more, whatever it believes.
A process renews its leases each tick and gives back those it should no longer have (a
new member joined) and all of them on SIGTERM, so they are taken over at the next tick
of their new owner; a dead process's leases lapse after `ttl`.

The pure part (who should have what) is `assignment`; `Leases` is the asyncio shell.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Final

from contracts.keys import Keys
from gateway.redis_link import AnyPipeline, AnyRedis, evalsha, run_scripted

log = logging.getLogger("engine.leases")

_ANNOUNCE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
"""KEYS: the members set; ARGV: me, ttl ms. Announce, forget the lapsed, list the rest."""
_ACQUIRE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""
"""KEYS: lease, fence; ARGV: me, ttl ms. The fencing token of a lease taken (or held
already), 0 while another holds it."""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
"""KEYS: lease, fence; ARGV: me, ttl ms, token. 1 if still ours (and renewed)."""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
"""KEYS: lease; ARGV: me. Give the lease back if it is ours."""
_LEAVE: Final = "return redis.call('ZREM', KEYS[1], ARGV[1])"
SCRIPTS: Final = (_ANNOUNCE, _ACQUIRE, _RENEW, _RELEASE, _LEAVE)
_SHA = {s: hashlib.sha1(s.encode()).hexdigest() for s in SCRIPTS}


def assignment(members: Sequence[str], shards: int, me: str) -> set[int]:
    """The shards `me` should evaluate: round robin over the members sorted by name."""
    ordered = sorted(set(members) | {me})
    mine = ordered.index(me)
    return {s for s in range(shards) if s % len(ordered) == mine}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Leases:
    """This process's shards and their fencing tokens."""

    def __init__(self, client: AnyRedis, keys: Keys, me: str, ttl_s: float) -> None:
        self.client = client
        self.keys = keys
        self.me = me
        self.ttl_ms = int(ttl_s * 1000)
        self.held: dict[int, int] = {}
        """shard -> fencing token, for the shards this process may commit to."""
        self.members: list[str] = []

    def lost(self, shard: int) -> None:
        """A commit was refused for the fencing token: the shard is someone else's."""
        if self.held.pop(shard, None) is not None:
            log.warning("engine: lost shard %d (another engine took it)", shard)

    async def _run(self, build: Any, scripts: Sequence[str]) -> list[Any]:
        return await run_scripted(self.client, build, scripts)

    async def tick(self, busy: set[int]) -> tuple[set[int], set[int]]:
        """Announce, renew, give back and take; (shards taken now, shards given back).
        `busy`: shards whose batch is in hand, given back at a later tick."""
        keys, me, ttl = self.keys, self.me, self.ttl_ms

        async def announce(pipe: AnyPipeline) -> None:
            evalsha(pipe, _SHA[_ANNOUNCE], [keys.engines], me, ttl)

        [members] = await self._run(announce, [_ANNOUNCE])
        self.members = sorted(_text(m) for m in members)
        wanted = assignment(self.members, keys.shards, me)
        renew = sorted(s for s in self.held if s in wanted or s in busy)
        give = sorted(s for s in self.held if s not in wanted and s not in busy)
        take = sorted(s for s in wanted if s not in self.held)

        async def build(pipe: AnyPipeline) -> None:
            for s in renew:
                evalsha(pipe, _SHA[_RENEW], [keys.lease(s), keys.fence(s)], me, ttl, self.held[s])
            for s in give:
                evalsha(pipe, _SHA[_RELEASE], [keys.lease(s)], me)
            for s in take:
                evalsha(pipe, _SHA[_ACQUIRE], [keys.lease(s), keys.fence(s)], me, ttl)

        replies = await self._run(build, [_RENEW, _RELEASE, _ACQUIRE])
        for s, ok in zip(renew, replies[: len(renew)], strict=True):
            if not int(ok):
                self.lost(s)
        for s in give:
            del self.held[s]
        taken: set[int] = set()
        for s, token in zip(take, replies[len(renew) + len(give) :], strict=True):
            if int(token):
                self.held[s] = int(token)
                taken.add(s)
        if taken or give:
            log.info(
                "engine: %d members; took shards %s, gave back %s; holding %d",
                len(self.members), sorted(taken), give, len(self.held),
            )  # fmt: skip
        return taken, set(give)

    async def release_all(self) -> None:
        """Give every shard back and leave (SIGTERM): the others take them at once."""
        held, self.held = sorted(self.held), {}
        keys, me = self.keys, self.me

        async def build(pipe: AnyPipeline) -> None:
            for s in held:
                evalsha(pipe, _SHA[_RELEASE], [keys.lease(s)], me)
            evalsha(pipe, _SHA[_LEAVE], [keys.engines], me)

        await self._run(build, [_RELEASE, _LEAVE])
        log.info("engine: gave back shards %s", held)
