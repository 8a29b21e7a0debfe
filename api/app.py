"""The FastAPI application: `create_app(settings)`; pools and workers live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI

from api import consumer, errors, openapi, ring, sla
from api.guard import BodyLimit, SecurityHeaders
from api.metrics import RequestMetrics
from api.models.common import ErrorEnvelope
from api.outbox import Outbox
from api.realtime import endpoint, fanout
from api.realtime.service import Realtime
from api.routes import (
    apps,
    auth,
    console,
    customers,
    devices,
    geofences,
    health,
    me,
    service_areas,
    service_requests,
    services,
    technicians,
    vans,
)
from api.settings import DEMO_API_SECRET, LOOPBACK_HOSTS, MIN_SECRET_CHARS, ApiSettings
from api.state import ApiState
from gateway.collector import quiet_gc

DB_POOL_MIN = 2


class ConfigError(Exception):
    pass


log = logging.getLogger("fixgate.api")


async def _release(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs on release: nothing of a session is ever set on one
    (`SET LOCAL` only; no LISTEN, advisory locks or cursors outside a transaction), so
    asyncpg's reset query (a round trip per request) is skipped; a transaction left open
    by a cancelled request is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def create_app(settings: ApiSettings) -> FastAPI:
    if len(settings.api_secret) < MIN_SECRET_CHARS:
        raise ConfigError(f"FIXGATE_API_SECRET must be at least {MIN_SECRET_CHARS} characters")
    if settings.api_secret == DEMO_API_SECRET and settings.api_host not in LOOPBACK_HOSTS:
        raise ConfigError(
            "FIXGATE_API_SECRET is the demo's, which anyone can read: set a secret of your own"
            f" to listen on {settings.api_host} (the demo's is for loopback only)"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(
            settings.database_url,
            min_size=min(DB_POOL_MIN, settings.api_db_pool_max),
            max_size=settings.api_db_pool_max,
            reset=_release,
        )
        client = aioredis.from_url(settings.redis_url)
        state = ApiState(
            settings=settings,
            pool=pool,
            redis=client,
            outbox=Outbox(pool, client, settings.redis_prefix, settings.ws_replay_window_s),
            realtime=Realtime.build(client, settings.redis_prefix, settings.ws_presence_ttl_s),
        )
        app.state.api = state
        # Who is disabled, before the first request; then kept current by notifications.
        async with state.conn() as conn:
            await state.principals.load(conn)
        state.principals.on_disable.append(state.realtime.revoke)
        state.tasks.append(
            asyncio.create_task(state.principals.run(settings.database_url), name="principals")
        )
        # First: relays at once what a dead process committed but did not relay.
        state.tasks.append(asyncio.create_task(state.outbox.run(), name="outbox-relay"))
        # Phases are I/O (a dozen statements and a Redis search each): several at once,
        # each its own due row (SKIP LOCKED), so one slow phase does not hold up the rest.
        state.tasks += [
            asyncio.create_task(ring.worker(state), name=f"ring-{n}")
            for n in range(settings.ring_workers)
        ]
        state.tasks.append(asyncio.create_task(sla.worker(state), name="sla-watcher"))
        state.tasks.append(asyncio.create_task(consumer.worker(state), name="engine-events"))
        state.tasks.append(asyncio.create_task(fanout.run(state), name="ws-fanout"))
        state.tasks.append(asyncio.create_task(fanout.fleet_maps(state), name="ws-fleet"))
        state.tasks.append(asyncio.create_task(state.realtime.presence.run(), name="ws-presence"))
        quiet_gc()
        try:
            yield
        finally:
            await _shut_down(state.tasks, state.outbox, client, pool)

    app = FastAPI(
        title="fixgate dispatch API",
        version="0.1.0",
        lifespan=lifespan,
        description="Service requests, the ring, queues with ETA; tenant- and role-scoped.",
        # Errors are the envelope too; declaring 422 here replaces FastAPI's own shape.
        responses={
            code: {"model": ErrorEnvelope} for code in (400, 401, 403, 404, 409, 413, 422, 429, 500)
        },
    )
    errors.install(app)
    openapi.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics)
    modules = (
        health, customers, vans, technicians, services, service_requests, devices, geofences,
        service_areas, console, auth, me, apps,
    )  # fmt: skip
    for module in modules:
        app.include_router(module.router)
    app.include_router(endpoint.router)
    console.mount_static(app)
    return app


SHUTDOWN_STEP_S = 5.0
"""Each shutdown step (background tasks, Redis, the pool) gets this long; the whole stays
well under the 30 s a supervisor waits after SIGTERM before SIGKILL."""


async def _shut_down(
    tasks: list[asyncio.Task[None]], outbox: Outbox, client: aioredis.Redis, pool: asyncpg.Pool
) -> None:
    """Background tasks, the outbox's last relay and deletes, then Redis, then the pool, each under a
    deadline: a task stuck in a
    blocking read or a connection that is never released must not keep the process from
    exiting (uvicorn's order: stop, cancel stragglers with a count, close the pools)."""
    for task in tasks:
        task.cancel()
    if tasks:
        _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_STEP_S)
        if stuck:
            log.warning(
                "api: %d background tasks did not stop within %.0f s", len(stuck), SHUTDOWN_STEP_S
            )
    try:
        # What was committed last goes out and its rows are deleted here, not left to
        # another process's recovery.
        await asyncio.wait_for(outbox.drain(), SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning("api: relayed outbox rows not deleted within %.0f s", SHUTDOWN_STEP_S)
    try:
        await asyncio.wait_for(client.aclose(), SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning("api: Redis client not closed within %.0f s", SHUTDOWN_STEP_S)
    try:
        await asyncio.wait_for(pool.close(), SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning(
            "api: database connections not released within %.0f s; terminated", SHUTDOWN_STEP_S
        )
        pool.terminate()
