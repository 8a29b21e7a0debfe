"""Changing the shard count (`fixgate engine reshard --to N`): an offline step.

Every gateway, engine and API process must be stopped, and the engines and the API must
have read everything: the step refuses while an engine is alive (the `engines` set), while
a positions stream has entries its engine group has not acknowledged, or while an events
stream has entries the API's group has not acknowledged. Then each device's keys move to
their new shard (contracts.keys): its live position, its engine state, its member in its
tenant's GEO set; the old shards' streams, leases and fencing tokens are deleted. Keys
move with DUMP/RESTORE, which works across slots of a Redis Cluster. Afterwards start
everything with `FIXGATE_POSITION_SHARDS=N`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.keys import Keys
from gateway.redis_link import AnyRedis

ENGINE_GROUP = "engine"
API_GROUP = "fixgate-api"


class NotOffline(Exception):
    """What still runs or is unread; nothing was changed."""


@dataclass
class Moved:
    devices: int = 0
    states: int = 0
    members: int = 0
    streams: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _unread(client: AnyRedis, stream: str, group: str) -> int:
    """Entries of `stream` that `group` has not acknowledged (or not read); 0 without it."""
    if not await client.exists(stream):
        return 0
    length = int(await client.xlen(stream))
    groups = {_text(g["name"]): g for g in await client.xinfo_groups(stream)}
    if group not in groups:
        return length  # nobody ever read it
    info = groups[group]
    lag = info.get("lag")
    return int(info["pending"]) + (int(lag) if lag is not None else length)


async def check_offline(client: AnyRedis, old: Keys, group: str = ENGINE_GROUP) -> None:
    members = await client.zrangebyscore(old.engines, f"({await _now_ms(client)}", "+inf")
    if members:
        names = ", ".join(_text(m) for m in members)
        raise NotOffline(f"engines are running: {names}; stop every engine first")
    for shard in range(old.shards):
        if n := await _unread(client, old.positions(shard), group):
            raise NotOffline(
                f"{old.positions(shard)} has {n} entries the engines have not evaluated: "
                "run the engines until they caught up (gateways stopped), then stop them"
            )
        if n := await _unread(client, old.events(shard), API_GROUP):
            raise NotOffline(
                f"{old.events(shard)} has {n} events the API has not read: run the API until "
                "it caught up, then stop it"
            )


async def _now_ms(client: AnyRedis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def _move(client: AnyRedis, source: str, target: str) -> bool:
    dumped = await client.dump(source)
    if dumped is None:
        return False
    ttl = max(0, int(await client.pttl(source)))
    await client.restore(target, ttl, dumped, replace=True)
    await client.delete(source)
    return True


async def _move_per_device(
    client: AnyRedis, prefix: str, new_key: Callable[[str], str], seen: set[str]
) -> None:
    """Each key `prefix + device` to `new_key(device)` (once per device: a key moved to a
    shard scanned later is found there again)."""
    found = [_text(k) async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    for key in found:
        device = key[len(prefix) :]
        if device in seen:
            continue
        seen.add(device)
        if new_key(device) != key:
            await _move(client, key, new_key(device))


async def reshard(client: AnyRedis, prefix: str, old_shards: int, new_shards: int) -> Moved:
    """Move every device's keys from `old_shards` to `new_shards` (see the module)."""
    old, new = Keys(prefix, old_shards), Keys(prefix, new_shards)
    await check_offline(client, old)
    moved = Moved()
    devices: set[str] = set()
    states: set[str] = set()
    members: set[tuple[str, str]] = set()
    for shard in range(old_shards):
        tag = old.tag(shard)
        await _move_per_device(client, old.device_prefix(shard), new.device, devices)
        await _move_per_device(client, f"{tag}engine:device:", new.engine_state, states)
        geo_prefix = f"{tag}live:"
        async for raw in client.scan_iter(match=f"{geo_prefix}*", count=1000):
            key = _text(raw)
            tenant = key[len(geo_prefix) :]
            pairs: list[tuple[bytes, float]] = await client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]  # redis-py types the reply loosely
            for member, score in pairs:
                device = _text(member)
                if (tenant, device) in members:
                    continue
                members.add((tenant, device))
                target = new.geo(tenant, new.shard(device))
                if target != key:
                    await client.zadd(target, {device: score})
                    await client.zrem(key, device)
        for stream in (old.positions(shard), old.events(shard), old.lease(shard), old.fence(shard)):
            moved.streams += int(await client.delete(stream))
    moved.devices, moved.states, moved.members = len(devices), len(states), len(members)
    return moved
