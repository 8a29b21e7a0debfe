"""The tenant's devices as the API lists them (the registry's table, gateway/registry/)."""

from __future__ import annotations

import asyncpg

_COLUMNS = "id, kind, enabled, created_at, imei, traccar_id, owntracks_user, owntracks_device"


def _like(search: str) -> str:
    return "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def page(
    conn: asyncpg.Connection, tenant: str, search: str | None, rows: int, offset: int
) -> tuple[int, list[asyncpg.Record]]:
    where = "tenant_id = $1 AND ($2::text IS NULL OR id ILIKE $2 OR imei ILIKE $2" \
            " OR traccar_id ILIKE $2)"  # fmt: skip
    pattern = _like(search) if search else None
    total: int = await conn.fetchval(f"SELECT count(*) FROM devices WHERE {where}", tenant,
                                     pattern)  # fmt: skip
    found = await conn.fetch(
        f"SELECT {_COLUMNS} FROM devices WHERE {where} ORDER BY id LIMIT $3 OFFSET $4",
        tenant, pattern, rows, offset,
    )  # fmt: skip
    return total, found


async def one(conn: asyncpg.Connection, tenant: str, device_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM devices WHERE id = $1 AND tenant_id = $2", device_id, tenant
    )
