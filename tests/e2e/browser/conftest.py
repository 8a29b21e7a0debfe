"""Fixtures of the browser tests: a running `fixgate api` on this test's database and Redis
prefix (with a road network file), a tenant to seed it, and Chromium."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import BrowserContext

from api.passwords import hash_password
from api.principal import Role
from api.store import users
from tests.support.api import SECRET, Tenant
from tests.support.browser import api_process, chromium
from tests.support.gateway import GatewayProcess, running_gateway

ORIGIN = (43.7384, 7.4246)
"""Monaco: the routing extract the OSRM work prepares is Monaco's."""
RING_PHASE_S = 60.0
"""Long enough for the ring to be looked at and the assignment clicked within phase 1."""


def road_grid(lat: float, lon: float, n: int = 7, step: float = 0.004) -> dict[str, object]:
    """A small street grid around (lat, lon) as the GeoJSON the roads endpoint serves (the
    test's own file: the endpoint serves whatever the extract's preparation wrote)."""
    half = n // 2
    lines = []
    for i in range(-half, half + 1):
        lines.append([[lon - half * step, lat + i * step], [lon + half * step, lat + i * step]])
        lines.append([[lon + i * step, lat - half * step], [lon + i * step, lat + half * step]])
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"highway": "residential"},
             "geometry": {"type": "LineString", "coordinates": line}}
            for line in lines
        ],
    }  # fmt: skip


@pytest.fixture
def roads_file(tmp_path: Path) -> Path:
    path = tmp_path / "roads.geojson"
    path.write_text(json.dumps(road_grid(*ORIGIN)))
    return path


@pytest.fixture
def api_base(fixgate_env: dict[str, str], roads_file: Path, redis_client: object) -> Iterator[str]:
    # redis_client: its teardown removes this test's Redis keys.
    env = {
        **fixgate_env,
        "FIXGATE_API_SECRET": SECRET,
        "FIXGATE_RING_PHASE_S": str(RING_PHASE_S),
        "FIXGATE_MAP_ROADS_PATH": str(roads_file),
    }
    with api_process(env) as base:
        yield base


@pytest.fixture
async def acme(api_base: str) -> AsyncIterator[Tenant]:
    async with httpx.AsyncClient(base_url=api_base) as client:
        yield Tenant(client=client, name="acme")


@pytest.fixture
def gateway(fixgate_env: dict[str, str], tmp_path: Path) -> Iterator[GatewayProcess]:
    """A real `fixgate gateway` on this test's database and Redis prefix."""
    with running_gateway(fixgate_env, tmp_path) as gw:
        yield gw


async def _staff(pg: asyncpg.Connection, role: Role, email: str) -> tuple[str, str]:
    password = f"a long enough password for {role.value}"
    await users.add(pg, tenant="acme", role=role, email=email,
                    password_hash=hash_password(password))  # fmt: skip
    return email, password


@pytest.fixture
async def dispatcher(pg: asyncpg.Connection) -> tuple[str, str]:
    """A dispatcher of tenant acme who logs in: (e-mail, password)."""
    return await _staff(pg, Role.DISPATCHER, "dana@acme.example")


@pytest.fixture
async def admin(pg: asyncpg.Connection) -> tuple[str, str]:
    """An admin of tenant acme who logs in: (e-mail, password)."""
    return await _staff(pg, Role.ADMIN, "ada@acme.example")


@pytest.fixture
async def browser() -> AsyncIterator[BrowserContext]:
    async with chromium() as context:
        yield context
