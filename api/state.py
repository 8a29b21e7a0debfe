"""What the lifespan builds and the dependencies hand out: one typed object on app.state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis

from api.events import Publisher
from api.settings import ApiSettings


@dataclass
class ApiState:
    settings: ApiSettings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    publisher: Publisher
    # Set when a request starts ringing, so the ring worker runs its first phase at once
    # instead of at its next poll.
    ring_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
