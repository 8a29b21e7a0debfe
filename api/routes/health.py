"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from api.errors import envelope
from api.guard import guarded_router
from api.models.common import Envelope

router = guarded_router(tags=["health"])

READY_TIMEOUT_S = 2.0
"""A dependency that does not answer within this is as good as down for a load balancer."""


@router.get("/healthz")
async def healthz() -> Envelope[None]:
    return Envelope[None](status=200, message="alive")


@router.get("/readyz", responses={503: {"model": Envelope[None]}})
async def readyz(state: StateDep) -> Response:
    """Ready when the process is (not starting or draining), the database and Redis answer;
    otherwise 503 naming what is not (never an error's text: it can carry addresses and
    names an outsider has no business with)."""
    if starting := state.life.not_ready():  # draining: a load balancer should stop sending
        return envelope(503, f"not ready: {', '.join(starting)}")
    for name, check in (("database", lambda: _database(state)), ("redis", state.redis.ping)):
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await check()
        except Exception:  # any failure means not ready
            return envelope(503, f"not ready: {name} unavailable")
    return envelope(200, "ready")


async def _database(state: StateDep) -> None:
    async with state.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
