"""The FastAPI application: `create_app(settings)`; pools and workers live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI

from api import consumer, errors, idempotency, openapi, ring, sla
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
from gateway.process import Life
from gateway.redis_link import AnyRedis, connect_when_up

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
        client = await connect_when_up(
            settings.redis_url,
            on_wait=lambda e: log.warning("api: waiting for redis: %s", e),
        )
        state = ApiState(
            life=Life("api", SHUTDOWN_S),
            settings=settings,
            pool=pool,
            redis=client,
            outbox=Outbox(pool, client, settings.redis_prefix, settings.ws_replay_window_s),
            realtime=Realtime.build(client, settings.redis_prefix, settings.ws_presence_ttl_s),
            keys=settings.keys(),
        )
        app.state.api = state
        life = state.life
        # Who is disabled, before the first request; then kept current by notifications.
        async with state.conn() as conn:
            await state.principals.load(conn)
        state.principals.on_disable.append(state.realtime.revoke)
        life.spawn(state.principals.run(settings.database_url), "principals")
        # First: relays at once what a dead process committed but did not relay.
        life.spawn(state.outbox.run(), "outbox-relay")
        # Phases are I/O (a dozen statements and a Redis search each): several at once,
        # each its own due row (SKIP LOCKED), so one slow phase does not hold up the rest.
        for n in range(settings.ring_workers):
            life.spawn(ring.worker(state), f"ring-{n}")
        life.spawn(sla.worker(state), "sla-watcher")
        life.spawn(consumer.worker(state), "engine-events")
        life.spawn(fanout.run(state), "ws-fanout")
        life.spawn(fanout.fleet_maps(state), "ws-fleet")
        life.spawn(state.realtime.presence.run(), "ws-presence")
        life.spawn(_forget_keys(pool), "idempotency-keys")
        quiet_gc()
        life.ready()
        try:
            yield
        finally:
            life.draining()
            await _shut_down(life, state.outbox, client, pool)

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


FORGET_KEYS_EVERY_S = 3600.0
"""How often expired Idempotency-Key answers are deleted (they are ignored once expired)."""


async def _forget_keys(pool: asyncpg.Pool) -> None:
    while True:
        try:
            await idempotency.forget_expired(pool)
        except Exception:  # the database away: next time
            log.exception("idempotency keys")
        await asyncio.sleep(FORGET_KEYS_EVERY_S)


SHUTDOWN_S = 10.0
"""The whole shutdown (background tasks, the outbox's last relay and deletes, Redis, the pool) stays
within this, well under the 30 s a supervisor waits after SIGTERM before SIGKILL."""
CANCEL_AT_MOST_S = 5.0
"""Of which the background tasks' cancellation (a Redis client retrying a lost node may
take long to notice) takes at most this, leaving the rest to the outbox and the pools."""


async def _shut_down(life: Life, outbox: Outbox, client: AnyRedis, pool: asyncpg.Pool) -> None:
    """Background tasks, the outbox's last relay and deletes, then Redis, then the pool, under one
    deadline: a task stuck in a blocking read or a connection that is never released must
    not keep the process from exiting (uvicorn's order: stop, cancel stragglers with a
    count, close the pools)."""
    tasks = list(life.tasks)
    await life.cancel_stragglers(at_most_s=CANCEL_AT_MOST_S)  # the workers run until cancelled
    if stuck := sum(not t.done() for t in tasks):
        log.warning("api: %d background tasks did not stop in time", stuck)
    # What was committed last goes out and its rows are deleted here, not left to
    # another process's recovery.
    await life.finish(outbox.drain(), "relaying and deleting the outbox's last rows")
    await life.finish(client.aclose(), "closing the Redis client")
    if not await life.finish(pool.close(), "releasing the database connections"):
        pool.terminate()
