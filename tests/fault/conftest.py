"""The fault tests' own native stack (ports beside the main stack's) and a fresh database
on it per test: stopping its TimescaleDB or Redis never disturbs other tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from devtools.stack import stack_env
from devtools.stack.native import NativeStack
from devtools.stack.settings import StackSettings
from gateway.migrate import migrate, migrations_dir
from tests.support.broker import gateway_account, use_broker

_MAIN = StackSettings()
FAULT_PORTS = {
    "stack_pg_port": _MAIN.stack_pg_port + 40,
    "stack_redis_port": _MAIN.stack_redis_port + 50,
    "stack_mqtt_port": _MAIN.stack_mqtt_port + 50,
}
"""Beside the main stack's (55472, 56429, 51933 by default), so a checkout whose stack is
moved (`FIXGATE_STACK_*_PORT`) moves its fault stack too and two checkouts can test at
once."""


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[NativeStack]:
    stack = NativeStack(StackSettings(**FAULT_PORTS))
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture
def fault_env(fault_stack: NativeStack) -> Iterator[dict[str, str]]:
    """A fresh database on the fault stack, and a gateway environment pointed at it."""
    env = stack_env(fault_stack.settings)
    admin = env["FIXGATE_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    name = f"f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    db_url = admin.rsplit("/", 1)[0] + f"/{name}"
    migrate(db_url, migrations_dir())
    prefix = f"f{uuid.uuid4().hex[:8]}/"
    # Devices registered during the test get their accounts on the fault stack's broker.
    with (
        use_broker(env["FIXGATE_MQTT_ADMIN_URL"]),
        gateway_account(env["FIXGATE_MQTT_URL"], prefix) as gateway_url,
    ):
        yield {
            **os.environ,
            "FIXGATE_DATABASE_URL": db_url,
            "FIXGATE_REDIS_URL": env["FIXGATE_REDIS_URL"],
            "FIXGATE_REDIS_PREFIX": f"f{uuid.uuid4().hex[:8]}:",
            "FIXGATE_MQTT_URL": gateway_url,
            "FIXGATE_MQTT_ADMIN_URL": "",
            "FIXGATE_MQTT_TOPIC_PREFIX": prefix,
            "FIXGATE_MQTT_CLIENT_ID": f"fixgate-{uuid.uuid4().hex[:8]}",
        }
    # Whatever the test did, leave the services up for the next one.
    fault_stack.start_pg()
    fault_stack.start_redis()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
