"""The OpenAPI document is accurate: schemathesis against a running `fixgate api` with a
token of each role finds no 5xx and no response that violates the schema."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from api.principal import Role
from api.settings import ApiSettings
from tests.support.api import SECRET, token
from tests.support.paths import FIXGATE_BIN, REPO_ROOT
from tests.support.services import Services

MAX_EXAMPLES = 12
"""Examples per operation: enough to reach every parameter's edge, bounded for CI time."""
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


# The document the server serves, built without a server (create_app connects nothing).
schema = schemathesis.openapi.from_dict(create_app(ApiSettings(api_secret=SECRET)).openapi())
ROLES = [token(role, str(uuid.uuid4()), "fuzz") for role in Role]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, api_server: str
) -> None:
    for headers in ROLES:
        response = case.call(base_url=api_server, headers=headers)
        case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
