"""Fixtures of the dispatch API tests: the app in its lifespan against this test's database
and Redis prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api.settings import ApiSettings
from tests.support.api import running_app, settings_for
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
