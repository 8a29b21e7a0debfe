"""`fixgate engine reshard --to N`: the offline change of the shard count moves every
device's live position, engine state and GEO membership to its new shard, and refuses
while anything is unread or an engine runs."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from contracts import live
from contracts.keys import Keys
from devices.fix import Fix
from gateway.engine.store import StateStore
from gateway.sinks.live import LiveWriter
from tests.support.engine import FIXGATE_BIN, fixgate_lines

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEVICES = [f"rs-{i}" for i in range(60)]


def _fixes() -> list[Fix]:
    return [
        Fix(device_id=d, tenant_id="acme", time=T0 + timedelta(seconds=i),
            lat=48.0 + i / 1000, lon=11.0 + i / 1000)
        for i, d in enumerate(DEVICES)
    ]  # fmt: skip


async def _seed(client: aioredis.Redis, prefix: str) -> None:
    """Live positions and committed engine states laid out for 16 shards."""
    await LiveWriter(client, prefix, 16).write(_fixes())
    store = StateStore(client, prefix, 16)
    loaded = await store.load([(d, "acme") for d in DEVICES])
    for i, (state, _) in enumerate(loaded):
        state.last_us, state.rev = 1000 + i, 1
    assert await store.commit([(s, rev, []) for s, rev in loaded]) == [True] * len(DEVICES)


async def test_reshard_moves_every_devices_keys_to_its_new_shard(
    fixgate_env: dict[str, str], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await _seed(redis_client, redis_prefix)
    env = {**fixgate_env, "FIXGATE_POSITION_SHARDS": "16"}
    [line] = fixgate_lines(env, "engine", "reshard", "--to", "4")
    assert line.startswith("resharded 16 -> 4 shards: 60 live positions, 60 engine states, 60 GEO")
    keys = Keys(redis_prefix, 4)
    for fix in _fixes():
        found = live.decode(await redis_client.hgetall(keys.device(fix.device_id)))
        assert found is not None and (found.lat, found.lon) == (fix.lat, fix.lon)
    members = [m for k in keys.all_geo("acme") for m in await redis_client.zrange(k, 0, -1)]
    assert sorted(m.decode() for m in members) == sorted(DEVICES)
    for shard in range(4):  # each set holds its own shard's devices only
        for m in await redis_client.zrange(keys.geo("acme", shard), 0, -1):
            assert keys.shard(m.decode()) == shard
    states = await StateStore(redis_client, redis_prefix, 4).load([(d, "acme") for d in DEVICES])
    assert [(s.last_us, rev) for s, rev in states] == [(1000 + i, "1") for i in range(60)]
    left = [k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]
    new_names = {keys.device(d) for d in DEVICES} | {keys.engine_state(d) for d in DEVICES}
    new_names |= {keys.geo("acme", s) for s in range(4)}
    assert sorted(k.decode() for k in left if k.decode() not in new_names) == []


async def test_reshard_refuses_while_fixes_are_unread_and_changes_nothing(
    fixgate_env: dict[str, str], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    await _seed(redis_client, redis_prefix)
    await LiveWriter(redis_client, redis_prefix, 16).write([], _fixes())  # never evaluated
    before = sorted([k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")])
    env = {**fixgate_env, "FIXGATE_POSITION_SHARDS": "16"}
    done = await asyncio.to_thread(
        subprocess.run, [FIXGATE_BIN, "engine", "reshard", "--to", "4"], env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not offline" in done.stderr and "have not evaluated" in done.stderr
    assert sorted([k async for k in redis_client.scan_iter(match=f"{redis_prefix}*")]) == before
