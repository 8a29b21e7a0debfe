"""Fixtures of the dispatch API tests: the app in its lifespan against this test's database
and Redis prefix."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from api.settings import ApiSettings
from tests.support.api import SECRET, running_app, settings_for
from tests.support.paths import FIXGATE_BIN, REPO_ROOT
from tests.support.services import Services


@pytest.fixture
async def client(
    services: Services, db_url: str, redis_prefix: str, redis_client: object
) -> AsyncIterator[httpx.AsyncClient]:
    # redis_client: its teardown removes this test's Redis keys.
    settings = settings_for(db_url, services.redis_url, redis_prefix, ring_phase_s=1.0)
    async with running_app(settings) as c:
        yield c


@pytest.fixture
def make_settings(services: Services, db_url: str, redis_prefix: str) -> Any:
    """Settings of this test's database and prefix, with overrides (ring timing...)."""

    def make(**overrides: Any) -> ApiSettings:
        return settings_for(db_url, services.redis_url, redis_prefix, **overrides)

    return make


STARTUP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def api_server(services: Services, template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    port = _free_port()
    env = {
        **os.environ,
        "FIXGATE_DATABASE_URL": services.database_url(name),
        "FIXGATE_REDIS_URL": services.redis_url,
        "FIXGATE_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}:",
        "FIXGATE_API_SECRET": SECRET,
        "FIXGATE_API_HOST": "127.0.0.1",
        "FIXGATE_API_PORT": str(port),
    }
    proc = subprocess.Popen([FIXGATE_BIN, "api"], env=env, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "fixgate api exited"
            assert time.monotonic() < deadline, "fixgate api not ready"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
