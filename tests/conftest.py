"""Real services for every test: TimescaleDB, Redis and Mosquitto, never stand-ins.

Where they come from, in order: `FIXGATE_TEST_DATABASE_URL`/`_REDIS_URL`/`_MQTT_URL` when
all three are set (and `FIXGATE_TEST_ROUTING_URL` for OSRM); else testcontainers when a
Docker engine answers; else the project's own native stack (`fixgate stack up`), stopped
again at the end if this run started it. OSRM not given that way is the native stack's
(it needs no Docker), started for the first test that asks for `routing_url`.

Isolation: each test that asks for `db_url` gets its own database cloned from a template
migrated once per run; `redis_prefix` and `mqtt_prefix` are unique per test.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
import redis.asyncio as aioredis

from devtools.stack import docker_engine_answers
from gateway.migrate import migrate, migrations_dir
from gateway.redis_link import connect
from tests.support import broker
from tests.support.services import (
    Services,
    from_native_stack,
    from_testcontainers,
    native_osrm,
    with_database,
)

# One template per run (pid): runs sharing one stack must not drop each other's template.
TEMPLATE_DB = f"fixgate_test_template_{os.getpid()}"


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    given = [os.environ.get(f"FIXGATE_TEST_{k}_URL") for k in ("DATABASE", "REDIS", "MQTT")]
    found: Services
    with contextlib.ExitStack() as stack:
        if all(given):
            db, rd, mq = given
            routing = os.environ.get("FIXGATE_TEST_ROUTING_URL") or None
            found = Services(
                with_database(db, "postgres"), rd, mq, routing,  # type: ignore[arg-type]
                mqtt_admin_url=os.environ.get("FIXGATE_TEST_MQTT_ADMIN_URL"),
                mqtt_tls_url=os.environ.get("FIXGATE_TEST_MQTT_TLS_URL"),
                mqtt_ca_file=os.environ.get("FIXGATE_TEST_MQTT_CA_FILE"),
            )  # fmt: skip
        elif docker_engine_answers():
            found = stack.enter_context(from_testcontainers())
        else:
            found = stack.enter_context(from_native_stack())
        if found.mqtt_admin_url:
            stack.enter_context(broker.use_broker(found.mqtt_admin_url))
        yield found


@pytest.fixture(scope="session")
def routing_url(services: Services) -> Iterator[str]:
    """OSRM's base URL, routing on the stack's extract."""
    if services.routing_url is not None:
        yield services.routing_url
    else:
        with native_osrm() as url:
            yield url


@pytest.fixture(scope="session")
def template_db(services: Services) -> Iterator[str]:
    """A database migrated once per run; each test's database is cloned from it."""
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(
            f"CREATE DATABASE {TEMPLATE_DB}"
        )  # fresh each run: migrations may have changed
    migrate(services.database_url(TEMPLATE_DB), migrations_dir())
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        # TimescaleDB's job scheduler keeps a session in every database with the extension;
        # a template must have none, so close it to connections and end that session.
        conn.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (TEMPLATE_DB,),
        )
    yield TEMPLATE_DB
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


@pytest.fixture
def db_url(services: Services, template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield services.database_url(name)
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def pg(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_url)
    yield conn
    await conn.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def redis_client(services: Services, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client: Any = await connect(services.redis_url)  # a cluster client on a cluster
    yield client
    keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def mqtt_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def gateway_mqtt_url(services: Services, mqtt_prefix: str) -> Iterator[str]:
    """The broker URL logged in as this test's own gateway account (read-only on its
    prefix; the broker names the session after the account)."""
    if services.mqtt_admin_url is None:  # a given broker without accounts to make
        yield services.mqtt_url
        return
    with broker.gateway_account(services.mqtt_url, mqtt_prefix) as url:
        yield url


@pytest.fixture
def fixgate_env(
    services: Services, db_url: str, redis_prefix: str, mqtt_prefix: str, gateway_mqtt_url: str
) -> dict[str, str]:
    """Environment for a `fixgate` subprocess pointed at this test's isolated resources."""
    return {
        **os.environ,
        "FIXGATE_DATABASE_URL": db_url,
        "FIXGATE_REDIS_URL": services.redis_url,
        "FIXGATE_REDIS_PREFIX": redis_prefix,
        "FIXGATE_MQTT_URL": gateway_mqtt_url,
        # The test's devices are registered by tests/support (on the broker too); the
        # gateway follows no registry changes onto the broker unless a test asks it to.
        "FIXGATE_MQTT_ADMIN_URL": "",
        "FIXGATE_MQTT_TOPIC_PREFIX": mqtt_prefix,
        "FIXGATE_MQTT_CLIENT_ID": f"fixgate-{uuid.uuid4().hex[:8]}",
    }
