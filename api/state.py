"""What the lifespan builds and the dependencies hand out: one typed object on app.state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import asyncpg

from api.outbox import Outbox
from api.realtime.service import Realtime
from api.settings import ApiSettings
from contracts.keys import Keys
from gateway.process import Life
from gateway.redis_link import AnyRedis


@dataclass
class ApiState:
    life: Life
    """The process's life: its background tasks, readiness while starting and draining."""
    settings: ApiSettings
    pool: asyncpg.Pool
    redis: AnyRedis
    outbox: Outbox
    realtime: Realtime
    keys: Keys
    # Set when a request starts ringing, so the ring worker runs its first phase at once
    # instead of at its next poll.
    ring_wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn:
            # The pool's proxy forwards every Connection method; the stubs type it apart.
            yield cast(asyncpg.Connection, conn)

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        """An action's transaction: its events are written with it and relayed right after
        its commit (api/outbox.py), so they are on the stream when this returns."""
        async with self.conn() as conn, self.outbox.transaction(conn):
            yield conn
