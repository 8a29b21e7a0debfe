"""`Annotated` dependencies: the state, a database connection, Redis, the principal and
role guards. All `async def`, though none awaits: FastAPI runs a plain `def` dependency in
its threadpool, a thread hop (and GIL contention) per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, cast

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import BadToken, Principal, Role, read_token
from api.errors import forbidden, unauthorized
from api.settings import ApiSettings
from api.state import ApiState
from gateway.redis_link import AnyRedis

_bearer = HTTPBearer(auto_error=False, description="A token from `fixgate token issue`.")


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_settings(state: StateDep) -> ApiSettings:
    return state.settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


async def get_db(state: StateDep) -> AsyncIterator[asyncpg.Connection]:
    async with state.pool.acquire() as conn:
        # The pool's proxy forwards every Connection method; the stubs type it apart.
        yield cast(asyncpg.Connection, conn)


DbDep = Annotated[asyncpg.Connection, Depends(get_db)]


async def get_redis(state: StateDep) -> AnyRedis:
    return state.redis


RedisDep = Annotated[AnyRedis, Depends(get_redis)]


async def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    try:
        return read_token(state.settings.api_secret, credentials.credentials)
    except BadToken as e:
        raise unauthorized(f"Invalid token: {e}") from None


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def guard(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise forbidden(f"Only {allowed} may do this (you are {principal.role.value})")
        return principal

    return guard


StaffDep = Annotated[Principal, Depends(require(Role.ADMIN, Role.DISPATCHER))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
TechnicianDep = Annotated[Principal, Depends(require(Role.TECHNICIAN))]
CustomerDep = Annotated[Principal, Depends(require(Role.CUSTOMER))]
