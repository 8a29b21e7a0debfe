"""Real services for every test: TimescaleDB, Redis and Mosquitto, never stand-ins.

Where they come from, in order: `FIXGATE_TEST_DATABASE_URL`/`_REDIS_URL`/`_MQTT_URL` when
all three are set; else testcontainers when a Docker engine answers; else the project's
own native stack (`fixgate stack up`), stopped again at the end if this run started it.

Isolation: each test that asks for `db_url` gets its own database cloned from a template
migrated once per run; `redis_prefix` and `mqtt_prefix` are unique per test.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psycopg
import pytest
import redis.asyncio as aioredis

from gateway.config import REPO_ROOT, Settings
from gateway.migrate import migrate
from gateway.stack import docker_engine_answers, stack_env

# The `fixgate` command of the interpreter running the tests (the venv need not be on PATH).
FIXGATE_BIN = str(Path(sys.executable).parent / "fixgate")
SHARED_DIR = Path(os.environ.get("FIXGATE_SHARED_DIR", REPO_ROOT.parent / "shared"))
# One template per run (pid): runs sharing one stack must not drop each other's template.
TEMPLATE_DB = f"fixgate_test_template_{os.getpid()}"


@dataclass(frozen=True)
class Services:
    admin_database_url: str  # a URL whose database is `postgres`, for CREATE DATABASE
    redis_url: str
    mqtt_url: str

    def database_url(self, name: str) -> str:
        return self.admin_database_url.rsplit("/", 1)[0] + f"/{name}"


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def _from_testcontainers() -> Iterator[Services]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    from gateway.stack.native import mosquitto_conf

    conf = Path(os.environ.get("TMPDIR", "/tmp")) / f"fixgate-mosquitto-{os.getpid()}.conf"
    conf.write_text(mosquitto_conf(1883, None))
    pg = PostgresContainer("timescale/timescaledb-ha:pg17", username="postgres", password="postgres", dbname="postgres")
    rd = RedisContainer("redis:7")
    mq = (
        DockerContainer("eclipse-mosquitto:2")
        .with_volume_mapping(str(conf), "/mosquitto/config/mosquitto.conf")
        .with_exposed_ports(1883)
    )
    with pg, rd, mq:
        wait_for_logs(mq, "running")
        yield Services(
            admin_database_url=pg.get_connection_url(driver=None),
            redis_url=f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(6379)}/0",
            mqtt_url=f"mqtt://{mq.get_container_host_ip()}:{mq.get_exposed_port(1883)}",
        )


@contextlib.contextmanager
def _from_native_stack() -> Iterator[Services]:
    from gateway.stack.native import NativeStack

    settings = Settings()
    stack = NativeStack(settings)
    was_running = all(s.running for s in stack.status())
    stack.up()
    env = stack_env(settings)
    try:
        yield Services(
            admin_database_url=_with_database(env["FIXGATE_DATABASE_URL"], "postgres"),
            redis_url=env["FIXGATE_REDIS_URL"],
            mqtt_url=env["FIXGATE_MQTT_URL"],
        )
    finally:
        if not was_running:
            stack.down()


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    given = [os.environ.get(f"FIXGATE_TEST_{k}_URL") for k in ("DATABASE", "REDIS", "MQTT")]
    if all(given):
        db, rd, mq = given
        yield Services(_with_database(db, "postgres"), rd, mq)  # type: ignore[arg-type]
    elif docker_engine_answers():
        with _from_testcontainers() as found:
            yield found
    else:
        with _from_native_stack() as found:
            yield found


@pytest.fixture(scope="session")
def template_db(services: Services) -> Iterator[str]:
    """A database migrated once per run; each test's database is cloned from it."""
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")  # fresh each run: migrations may have changed
    migrate(services.database_url(TEMPLATE_DB), Settings().migrations_dir)
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        # TimescaleDB's job scheduler keeps a session in every database with the extension;
        # a template must have none, so close it to connections and end that session.
        conn.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH ALLOW_CONNECTIONS false")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (TEMPLATE_DB,)
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
    client = aioredis.from_url(services.redis_url)
    yield client
    keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def mqtt_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def fixgate_env(services: Services, db_url: str, redis_prefix: str, mqtt_prefix: str) -> dict[str, str]:
    """Environment for a `fixgate` subprocess pointed at this test's isolated resources."""
    return {
        **os.environ,
        "FIXGATE_DATABASE_URL": db_url,
        "FIXGATE_REDIS_URL": services.redis_url,
        "FIXGATE_REDIS_PREFIX": redis_prefix,
        "FIXGATE_MQTT_URL": services.mqtt_url,
        "FIXGATE_MQTT_TOPIC_PREFIX": mqtt_prefix,
        "FIXGATE_MQTT_CLIENT_ID": f"fixgate-{uuid.uuid4().hex[:8]}",
    }
