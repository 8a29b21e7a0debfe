"""Which technicians are connected, agreed across API processes: per tenant a sorted set
`{prefix}ws:technicians:{tenant}` of `{technicianId}|{process}` members scored with the
Unix time their claim expires. Each process refreshes its own members every third of the
TTL, so a process that dies stops counting within the TTL; one member per process keeps a
technician connected on two processes connected when one of them closes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections import Counter

from gateway.redis_link import AnyRedis

log = logging.getLogger("fixgate.api.realtime.presence")

SEPARATOR = "|"


def presence_key(prefix: str, tenant: str) -> str:
    return f"{prefix}ws:technicians:{tenant}"


async def connected_technicians(client: AnyRedis, prefix: str, tenant: str) -> set[str]:
    """Technician ids with a live claim from some API process."""
    members = await client.zrangebyscore(presence_key(prefix, tenant), time.time(), "+inf")
    found = set()
    for member in members:
        raw = member.decode() if isinstance(member, bytes) else str(member)
        found.add(raw.partition(SEPARATOR)[0])
    return found


class Presence:
    """This process's connected technicians, published to Redis."""

    def __init__(self, client: AnyRedis, prefix: str, ttl_s: float) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.process = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._local: Counter[tuple[str, str]] = Counter()

    def _member(self, technician: str) -> str:
        return f"{technician}{SEPARATOR}{self.process}"

    async def join(self, tenant: str, technician: str) -> None:
        self._local[(tenant, technician)] += 1
        await self.client.zadd(
            presence_key(self.prefix, tenant), {self._member(technician): time.time() + self.ttl_s}
        )

    async def leave(self, tenant: str, technician: str) -> None:
        self._local[(tenant, technician)] -= 1
        if self._local[(tenant, technician)] > 0:
            return
        del self._local[(tenant, technician)]
        await self.client.zrem(presence_key(self.prefix, tenant), self._member(technician))

    async def refresh(self) -> None:
        expires = time.time() + self.ttl_s
        by_tenant: dict[str, dict[str, float]] = {}
        for tenant, technician in self._local:
            by_tenant.setdefault(tenant, {})[self._member(technician)] = expires
        pipe = self.client.pipeline(transaction=False)
        for tenant, members in by_tenant.items():
            key = presence_key(self.prefix, tenant)
            pipe.zadd(key, members)
            # Claims of dead processes: drop them so the set stays the size of the fleet.
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.expire(key, int(self.ttl_s) + 1)
        await pipe.execute()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: claims lapse, the ring sees nobody connected
                log.exception("presence refresh")
