"""Shared shape of the catalog routers: create -> id, get, update, list, disable."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from pydantic import BaseModel

from api.errors import ApiError, not_found
from api.models.common import Envelope, IdData, Paging, ServerPaginatedData, paginated
from api.store import catalog
from api.store.catalog import Table

M = TypeVar("M", bound=BaseModel)


def created(row_id: UUID, what: str) -> Envelope[IdData]:
    return Envelope[IdData](status=200, message=f"{what} created", data=IdData(id=str(row_id)))


def done(message: str) -> Envelope[None]:
    return Envelope[None](status=200, message=message)


async def get_one(
    conn: asyncpg.Connection,
    table: Table,
    model: type[M],
    tenant: str,
    row_id: UUID,
    what: str,
    where: dict[str, Any] | None = None,
) -> Envelope[M]:
    row = await catalog.get(conn, table, tenant, row_id, where)
    if row is None:
        raise not_found(what)
    return Envelope[model](status=200, message="OK", data=model.model_validate(dict(row)))  # type: ignore[valid-type]  # a runtime-chosen model parametrizes the envelope


async def update_one(
    conn: asyncpg.Connection,
    table: Table,
    tenant: str,
    row_id: UUID,
    body: BaseModel,
    what: str,
    where: dict[str, Any] | None = None,
) -> Envelope[None]:
    values = body.model_dump(exclude_unset=True)
    if not values:
        raise ApiError(400, "Nothing to update: give at least one field")
    if not await catalog.update(conn, table, tenant, row_id, values, where):
        raise not_found(what)
    return done(f"{what} updated")


async def disable_one(
    conn: asyncpg.Connection,
    table: Table,
    tenant: str,
    row_id: UUID,
    what: str,
    where: dict[str, Any] | None = None,
) -> Envelope[None]:
    if not await catalog.update(conn, table, tenant, row_id, {"enabled": False}, where):
        raise not_found(what)
    return done(f"{what} disabled")


async def list_page(
    conn: asyncpg.Connection,
    table: Table,
    model: type[M],
    tenant: str,
    paging: Paging,
    keyword: str | None = None,
    where: dict[str, Any] | None = None,
) -> ServerPaginatedData[M]:
    rows, total = await catalog.page(conn, table, tenant, paging, keyword=keyword, where=where)
    return paginated([model.model_validate(dict(r)) for r in rows], total, paging)
