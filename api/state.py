"""What the lifespan builds and the dependencies hand out: one typed object on app.state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import asyncpg
import redis.asyncio as aioredis

from api.outbox import Outbox
from api.principals import Principals
from api.realtime.service import Realtime
from api.settings import ApiSettings


@dataclass
class ApiState:
    settings: ApiSettings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    outbox: Outbox
    realtime: Realtime
    principals: Principals = field(default_factory=Principals)
    """Who is disabled (their tokens refused at once)."""
    # Set when a request starts ringing, so the ring worker runs its first phase at once
    # instead of at its next poll.
    ring_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            # The pool's proxy forwards every Connection method; the stubs type it apart.
            yield cast(asyncpg.Connection, conn)
