"""`Annotated` dependencies: the state, a database connection, Redis, the principal and
role guards. All `async def`, though none awaits: FastAPI runs a plain `def` dependency in
its threadpool, a thread hop (and GIL contention) per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import forbidden
from api.guard import authenticate
from api.machine import Action, roles_of
from api.principal import Principal, Role
from api.settings import ApiSettings
from api.state import ApiState
from gateway.redis_link import AnyRedis

_bearer = HTTPBearer(auto_error=False, description="A token from `fixgate token issue`.")


async def get_state(request: Request) -> ApiState:
    """The API as this request sees it (on its own connection under an Idempotency-Key)."""
    state: ApiState = getattr(request.state, "api", None) or request.app.state.api
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def get_settings(state: StateDep) -> ApiSettings:
    return state.settings


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]


async def get_db(state: StateDep) -> AsyncIterator[asyncpg.Connection]:
    async with state.conn() as conn:
        yield conn


DbDep = Annotated[asyncpg.Connection, Depends(get_db)]


async def get_redis(state: StateDep) -> AnyRedis:
    return state.redis


RedisDep = Annotated[AnyRedis, Depends(get_redis)]


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The principal `GuardedRoute` checked before the body was read (api/guard.py).
    `credentials` only declares the bearer scheme in the OpenAPI document."""
    checked: Principal | None = getattr(request.state, "principal", None)
    return checked if checked is not None else authenticate(request)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def guard(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise forbidden(f"Only {allowed} may do this (you are {principal.role.value})")
        return principal

    return guard


def may(action: Action) -> Callable[[Principal], Awaitable[Principal]]:
    """Only the roles the lifecycle's table lets take `action` (api/machine.py)."""
    return require(*sorted(roles_of(action)))


StaffDep = Annotated[Principal, Depends(require(Role.ADMIN, Role.DISPATCHER))]
AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
TechnicianDep = Annotated[Principal, Depends(require(Role.TECHNICIAN))]
CustomerDep = Annotated[Principal, Depends(require(Role.CUSTOMER))]
