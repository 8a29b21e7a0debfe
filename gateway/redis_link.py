"""Redis for every process (gateway, engine, API): one Redis or a Redis Cluster, told apart
by asking the server, so `FIXGATE_REDIS_URL` may name any node of a cluster and there is
no separate switch to forget.

Also what differs between the two and every reader needs: reading several streams at
once. One Redis takes one blocking XREAD/XREADGROUP over all of them; a cluster refuses a
command whose keys lie in several slots (CROSSSLOT), so there the streams are read in one
pipeline (grouped by node by redis-py) without blocking, and an empty round waits before the
next (`Poll`: 5 ms growing to 100 ms while nothing comes): that is the added latency of a
cluster reader, up to 100 ms for the first entry after a quiet spell.

Scripts: Redis forgets loaded scripts when it restarts, and a pipelined EVALSHA then fails
with NOSCRIPT; `execute_with_scripts` loads them (on every master of a cluster) and runs
the pipeline once more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError, RedisError, ResponseError

AnyRedis: TypeAlias = aioredis.Redis | RedisCluster
AnyPipeline: TypeAlias = aioredis.client.Pipeline | ClusterPipeline
Entries: TypeAlias = list[tuple[bytes, dict[bytes, bytes]]]

CLUSTER_POLL_MIN_S: Final = 0.005
CLUSTER_POLL_MAX_S: Final = 0.1
"""A cluster reader waits after a round that found nothing, from the least to the most,
doubling per empty round and back to the least when a round finds entries: a busy reader
adds milliseconds, an idle one asks ten times a second (not a busy loop)."""


class Poll:
    """The wait of one cluster reader between empty rounds (see CLUSTER_POLL_*)."""

    def __init__(self) -> None:
        self.wait_s = CLUSTER_POLL_MIN_S

    async def idle(self, block_ms: int) -> None:
        await asyncio.sleep(min(block_ms / 1000, self.wait_s))
        self.wait_s = min(2 * self.wait_s, CLUSTER_POLL_MAX_S)

    def busy(self) -> None:
        self.wait_s = CLUSTER_POLL_MIN_S


PROBE_TIMEOUT_S: Final = 3.0
"""How long the mode probe waits for the server."""

REDIS_ERRORS: Final = (RedisError, OSError, TimeoutError)
"""What a Redis call raises while Redis is away or restarting (ConnectionError,
TimeoutError, BUSY/LOADING replies, a cluster without a master for a slot...)."""


async def is_cluster(url: str) -> bool:
    """Whether the server at `url` runs in cluster mode (`INFO cluster`)."""
    probe = aioredis.Redis.from_url(
        url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
    )
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(int(info.get("cluster_enabled", 0)))


async def connect(
    url: str, *, socket_timeout: float = 5.0, decode_responses: bool = False
) -> AnyRedis:
    """A client for `url`: a cluster client when the server is a cluster node. Raises what
    redis-py raises when the server does not answer."""
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "decode_responses": decode_responses,
    }
    if await is_cluster(url):
        cluster = RedisCluster.from_url(url, **options)
        await cluster.initialize()
        return cluster
    return aioredis.Redis.from_url(url, health_check_interval=10, **options)


async def connect_when_up(
    url: str, *, socket_timeout: float = 5.0, on_wait: Callable[[BaseException], None] | None = None
) -> AnyRedis:
    """`connect`, tried every second until the server answers."""
    while True:
        try:
            return await connect(url, socket_timeout=socket_timeout)
        except REDIS_ERRORS as e:
            if on_wait is not None:
                on_wait(e)
            await asyncio.sleep(1.0)


def clustered(client: AnyRedis) -> bool:
    return isinstance(client, RedisCluster)


async def ping(client: AnyRedis) -> bool:
    """Whether Redis answers now (every master of a cluster)."""
    try:
        if isinstance(client, RedisCluster):
            await client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            await client.ping()
    except REDIS_ERRORS:
        return False
    return True


async def run_scripted(
    client: AnyRedis,
    build: Callable[[AnyPipeline], Awaitable[None]],
    scripts: Iterable[str],
) -> list[Any]:
    """One pipeline (`build` queues its commands, EVALSHAs among them) in one round trip.
    After a Redis restart the scripts are gone (NOSCRIPT): load them (on every master of a
    cluster) and run a pipeline built afresh, once."""
    pipe = client.pipeline(transaction=False)
    await build(pipe)
    try:
        return await pipe.execute()
    except ResponseError as e:  # NoScriptError is one
        if not isinstance(e, NoScriptError) and "NOSCRIPT" not in str(e):
            raise
    for source in scripts:
        await client.script_load(source)
    pipe = client.pipeline(transaction=False)
    await build(pipe)
    return await pipe.execute()


def evalsha(pipe: AnyPipeline, sha: str, keys: list[str], *args: Any) -> None:
    """Queue a script call by its SHA1 (redis-py blocks `evalsha` in a cluster pipeline;
    the plain command is routed by its first key, all of whose slot the keys must share)."""
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)


async def read_streams(
    client: AnyRedis, ids: Mapping[str, str], *, count: int, block_ms: int, poll: Poll | None = None
) -> list[tuple[str, Entries]]:
    """XREAD of several streams from the given ids: [(stream, entries)] of those with any."""
    if not ids:
        await asyncio.sleep(block_ms / 1000)
        return []
    if not isinstance(client, RedisCluster):
        reply = await client.xread(dict(ids), count=count, block=block_ms)  # type: ignore[arg-type]  # redis-py types the streams mapping as invariant
        return _named(reply)
    pipe = client.pipeline()
    names = list(ids)
    for name in names:
        pipe.xread({name: ids[name]}, count=count)
    return await _polled(pipe, names, block_ms, poll or Poll())


async def read_group(
    client: AnyRedis,
    group: str,
    consumer: str,
    ids: Mapping[str, str],
    *,
    count: int,
    block_ms: int | None,
    poll: Poll | None = None,
) -> list[tuple[str, Entries]]:
    """XREADGROUP of several streams (">" for new entries, "0" for one's own pending ones);
    block_ms None: do not wait."""
    if not ids:
        if block_ms:
            await asyncio.sleep(block_ms / 1000)
        return []
    if not isinstance(client, RedisCluster):
        reply = await client.xreadgroup(group, consumer, dict(ids), count=count, block=block_ms)  # type: ignore[arg-type]  # as above
        return _named(reply)
    pipe = client.pipeline()
    names = list(ids)
    for name in names:
        pipe.xreadgroup(group, consumer, {name: ids[name]}, count=count)
    return await _polled(pipe, names, block_ms or 0, poll or Poll())


async def _polled(
    pipe: ClusterPipeline, names: list[str], block_ms: int, poll: Poll
) -> list[tuple[str, Entries]]:
    replies = await pipe.execute()
    out: list[tuple[str, Entries]] = []
    for name, reply in zip(names, replies, strict=True):
        for _, entries in _named(reply):
            out.append((name, entries))
    if out:
        poll.busy()
    elif block_ms:
        await poll.idle(block_ms)
    return out


def _named(reply: Any) -> list[tuple[str, Entries]]:
    """redis-py's XREAD reply ([[stream, entries]], or a dict under RESP3) as pairs, with
    entries whose fields are gone (trimmed while pending) left out."""
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str, Entries]] = []
    for stream, entries in pairs:
        if isinstance(entries, list) and entries and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 nests one level deeper
        kept = [(e[0], e[1]) for e in entries if e and e[1] is not None]
        if kept:
            out.append((stream.decode() if isinstance(stream, bytes) else str(stream), kept))
    return out


async def ensure_groups(client: AnyRedis, streams: Iterable[str], group: str) -> None:
    """The consumer group on each stream, from its start (entries that came before the
    group still count: after a Redis restart, they are the ones the writers fed again)."""
    for stream in streams:
        try:
            await client.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise


def nogroup(error: BaseException) -> bool:
    """A reply saying the stream or its consumer group is gone (Redis restarted empty)."""
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)
