"""The engine's state store against real Redis: the compare-and-set holds when a store
remembers a state another engine has moved since, and what a refused commit leaves."""

from __future__ import annotations

import json
from collections import Counter

import redis.asyncio as aioredis

from contracts.keys import Keys
from gateway.engine.store import StateStore
from geofence.state import DeviceState


async def _events(client: aioredis.Redis, prefix: str) -> list[str]:
    entries = [e for stream in Keys(prefix).all_events() for e in await client.xrange(stream)]
    entries.sort(key=lambda e: tuple(int(n) for n in e[0].split(b"-")))
    return [json.loads(fields[b"event"])["id"] for _, fields in entries]


def _moved(state: DeviceState, last_us: int) -> DeviceState:
    state.last_us = last_us
    state.rev += 1
    return state


async def test_a_remembered_state_moved_by_another_engine_is_refused_then_read_afresh(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    one, two = StateStore(redis_client, redis_prefix), StateStore(redis_client, redis_prefix)
    [(state, rev)] = await one.load([("d1", "acme")])
    assert (state.rev, rev) == (0, "")
    assert await one.commit([(_moved(state, 1), rev, [b'{"id":"e1"}'])]) == [True]

    # `two` reads (and so remembers) rev 1; `one` then moves the device to rev 2 from
    # what it remembers, without a read.
    [(seen, seen_rev)] = await two.load([("d1", "acme")])
    assert (seen.last_us, seen_rev) == (1, "1")
    [(state, rev)] = await one.load([("d1", "acme")])
    assert (state.last_us, rev) == (1, "1")
    assert await one.commit([(_moved(state, 2), rev, [b'{"id":"e2"}'])]) == [True]

    # `two`'s remembered rev 1 is stale: refused, nothing written, and forgotten.
    assert await two.commit([(_moved(seen, 3), seen_rev, [b'{"id":"e3"}'])]) == [False]
    assert await _events(redis_client, redis_prefix) == ["e1", "e2"]
    [(fresh, fresh_rev)] = await two.load([("d1", "acme")])
    assert (fresh.last_us, fresh.rev, fresh_rev) == (2, 2, "2")


async def test_a_commit_of_many_devices_stores_each_or_refuses_each_on_its_own(
    redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    store = StateStore(redis_client, redis_prefix)
    devices = [(f"d{i}", "acme") for i in range(600)]  # more than one script call's worth
    loaded = await store.load(devices)
    first = await store.commit(
        [(_moved(st, 1), rev, [f'{{"id":"{st.device}"}}'.encode()]) for st, rev in loaded]
    )
    assert first == [True] * 600
    # Every other device committed again from a rev it no longer holds.
    stale = [
        (DeviceState(device=f"d{i}", tenant="acme", rev=2, last_us=5), "" if i % 2 else "1")
        for i in range(600)
    ]
    second = await store.commit([(st, rev, [b'{"id":"x"}']) for st, rev in stale])
    assert second == [i % 2 == 0 for i in range(600)]
    # Each device's events in its shard's stream; across shards there is no order.
    ids = await _events(redis_client, redis_prefix)
    assert Counter(ids) == Counter({**{f"d{i}": 1 for i in range(600)}, "x": 300})
    reread = await StateStore(redis_client, redis_prefix).load(devices)
    assert [st.last_us for st, _ in reread] == [5 if i % 2 == 0 else 1 for i in range(600)]
