"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from api.errors import envelope
from api.models.common import Envelope

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 2.0
"""A dependency that does not answer within this is as good as down for a load balancer."""


@router.get("/healthz")
async def healthz() -> Envelope[None]:
    return Envelope[None](status=200, message="alive")


@router.get("/readyz", responses={503: {"model": Envelope[None]}})
async def readyz(state: StateDep) -> Response:
    if starting := state.life.not_ready():  # draining: a load balancer should stop sending
        return envelope(503, f"not ready: {', '.join(starting)}")
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with state.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
            await state.redis.ping()
    except Exception as e:  # any failure means not ready; say which
        return envelope(503, f"not ready: {type(e).__name__}: {e}")
    return envelope(200, "ready")


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
