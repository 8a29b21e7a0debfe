"""Retrying what talks to a service that may be away: which errors mean "away", and how
long to wait before the next try. Every retry loop of the asyncio side uses these."""

from __future__ import annotations

import asyncpg

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    TimeoutError,
)
"""What a query raises while the database is away (refused, reset, restarting, slow)."""
RETRY_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
"""Delays between tries of a write: quick at first (a blip), then at most every 5 s."""


def backoff(delays: tuple[float, ...], attempt: int) -> float:
    """The delay before retry number `attempt` (0-based): the last one repeats."""
    return delays[min(attempt, len(delays) - 1)]
