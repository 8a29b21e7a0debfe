"""Fixtures of the real-time tests: two real `fixgate api` processes sharing this test's
database and Redis prefix, and a tenant's helpers talking to the first one over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support.realtime import FLOODABLE, ApiProcess, api_processes
from tests.support.services import Services

FAST_RING = {"FIXGATE_RING_PHASE_S": "4", "FIXGATE_RING_POLL_S": "0.05"}
"""Phases short enough for a test, long enough to disconnect and reconnect within one."""


@pytest.fixture
def start_apis(services: Services, db_url: str, redis_prefix: str, redis_client: object) -> Any:
    """`with start_apis(**env) as [one, two]:` (redis_client: its teardown drops the keys)."""

    @contextlib.contextmanager
    def start(count: int = 2, **env: str) -> Iterator[list[ApiProcess]]:
        with api_processes(
            count, db_url, services.redis_url, redis_prefix, **{**FAST_RING, **FLOODABLE, **env}
        ) as apis:
            yield apis

    return start


@pytest.fixture
def apis(start_apis: Any) -> Iterator[list[ApiProcess]]:
    with start_apis() as started:
        yield started


@pytest.fixture
async def http(apis: list[ApiProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=apis[0].http, timeout=30) as client:
        yield client
