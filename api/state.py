"""What the lifespan builds and the dependencies hand out: one typed object on app.state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast
from uuid import UUID

import asyncpg

from api.outbox import Outbox
from api.principals import Principals
from api.realtime.service import Realtime
from api.settings import ApiSettings
from contracts.keys import Keys
from gateway.process import Life
from gateway.redis_link import AnyRedis

MAX_REMEMBERED_DEVICES = 100_000
"""Technicians whose device an API process remembers (`remember_device`)."""


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
    principals: Principals = field(default_factory=Principals)
    """Who is disabled (their tokens refused at once)."""
    # Set when a request starts ringing, so the ring worker runs its first phase at once
    # instead of at its next poll.
    ring_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    technician_devices: dict[UUID, str] = field(default_factory=dict)
    """The device each technician had at their last accept: read ahead by the next one
    (api/lifecycle.py `_accept_reads`), which checks it against what it reads."""
    held: asyncpg.Connection | None = None
    """A request's own connection, in the transaction that keeps its Idempotency-Key
    (api/idempotency.py): every unit of work of the request runs on it."""
    deferred: list[dict[str, Any]] | None = None
    """Events committed by this request's units of work, held for the relay until the
    request's own transaction commits."""

    def remember_device(self, technician: UUID, device: str) -> None:
        if len(self.technician_devices) >= MAX_REMEMBERED_DEVICES:
            self.technician_devices.clear()  # a guess, not a record: start again
        self.technician_devices[technician] = device

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[asyncpg.Connection]:
        if self.held is not None:
            yield self.held
            return
        async with self.pool.acquire() as conn:
            # The pool's proxy forwards every Connection method; the stubs type it apart.
            yield cast(asyncpg.Connection, conn)

    def holding(self, conn: asyncpg.Connection) -> ApiState:
        """This API as one request sees it: on `conn`, its events held until `release`."""
        return replace(self, held=conn, deferred=[])

    def committed(self, rows: Sequence[dict[str, Any]]) -> None:
        """An action's events, committed: to the relay (or held, on a request's connection)."""
        if self.deferred is not None:
            self.deferred.extend(rows)
        else:
            self.outbox.committed(rows)

    def release(self) -> list[dict[str, Any]]:
        """The events held until the request's transaction committed."""
        rows, self.deferred = self.deferred or [], []
        return rows
