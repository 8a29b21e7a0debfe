"""Create, read, update, list and disable for the catalog tables, scoped to a tenant.

A `Table` maps a model's snake_case fields to the specification's column names; every
statement filters on tenant_id, so another tenant's row reads as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from api.models.common import Paging


@dataclass(frozen=True)
class Table:
    name: str
    id_column: str
    id_field: str
    columns: dict[str, str]  # model field -> column, the id excluded
    search: tuple[str, ...] = ()  # columns a search keyword matches
    order: str = "createdat"
    casts: dict[str, str] = field(default_factory=dict)  # column -> SQL cast when read

    def select_list(self) -> str:
        parts = [f"{self.id_column} AS {self.id_field}"]
        for name, column in self.columns.items():
            parts.append(f"{column}{self.casts.get(column, '')} AS {name}")
        return ", ".join(parts)


CUSTOMERS = Table(
    "customermaster",
    "customerid",
    "customer_id",
    {
        "user_id": "userid",
        "customer_code": "customercode",
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone_number": "phonenumber",
        "profile_image_url": "profileimageurl",
        "gender": "gender",
        "enabled": "enabled",
    },
    search=("customercode", "firstname", "lastname", "email", "phonenumber"),
)
VEHICLES = Table(
    "customervehicles",
    "customervehicleid",
    "vehicle_id",
    {
        "customer_id": "customerid",
        "vin": "vin",
        "make": "make",
        "model": "model",
        "year": "year",
        "trim": "trim",
        "vehicle_type": "vehicletype",
        "body_type": "bodytype",
        "enabled": "enabled",
    },
    search=("vin", "make", "model"),
)
VANS = Table(
    "vanmaster",
    "vanid",
    "van_id",
    {
        "van_number": "vannumber",
        "registration_number": "registrationnumber",
        "vin": "vin",
        "make": "make",
        "model": "model",
        "year": "year",
        "enabled": "enabled",
    },
    search=("vannumber", "registrationnumber", "vin"),
)
TECHNICIANS = Table(
    "technicianmaster",
    "technicianid",
    "technician_id",
    {
        "user_id": "userid",
        "technician_code": "techniciancode",
        "availability_status": "availabilitystatus",
        "first_name": "firstname",
        "last_name": "lastname",
        "email": "email",
        "phone_number": "phonenumber",
        "profile_image_url": "profileimageurl",
        "device_id": "device_id",
        "van_id": "vanid",
        "enabled": "enabled",
    },
    search=("techniciancode", "firstname", "lastname", "email"),
)
SERVICES = Table(
    "servicemaster",
    "serviceid",
    "service_id",
    {
        "service_code": "servicecode",
        "service_name": "servicename",
        "service_description": "servicedescription",
        "service_price": "serviceprice",
        "duration_minutes": "durationminutes",
        "category": "category",
        "service_available_in": "serviceavailablein",
        "enabled": "enabled",
    },
    search=("servicecode", "servicename", "servicedescription"),
    casts={"serviceprice": "::float8"},
)


def _db_value(value: Any) -> Any:
    # Enums travel as their value; everything else as is.
    return getattr(value, "value", value)


async def create(
    conn: asyncpg.Connection, table: Table, tenant: str, values: dict[str, Any]
) -> UUID:
    columns = ["tenant_id"] + [table.columns[name] for name in values]
    args = [tenant] + [_db_value(v) for v in values.values()]
    marks = ", ".join(f"${i}" for i in range(1, len(args) + 1))
    row_id: UUID = await conn.fetchval(
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks}) "
        f"RETURNING {table.id_column}",
        *args,
    )
    return row_id


async def get(
    conn: asyncpg.Connection,
    table: Table,
    tenant: str,
    row_id: UUID,
    where: dict[str, Any] | None = None,
) -> asyncpg.Record | None:
    clauses, args = _where(table, tenant, where or {})
    args.append(row_id)
    clauses.append(f"{table.id_column} = ${len(args)}")
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {table.select_list()} FROM {table.name} WHERE {' AND '.join(clauses)}", *args
    )
    return row


async def update(
    conn: asyncpg.Connection,
    table: Table,
    tenant: str,
    row_id: UUID,
    values: dict[str, Any],
    where: dict[str, Any] | None = None,
) -> bool:
    """Set the given fields (and bump the version); False when no such row in the tenant."""
    clauses, args = _where(table, tenant, where or {})
    args.append(row_id)
    clauses.append(f"{table.id_column} = ${len(args)}")
    sets = ["version = version + 1", "updatedat = now()"]
    for name, value in values.items():
        args.append(_db_value(value))
        sets.append(f"{table.columns[name]} = ${len(args)}")
    status: str = await conn.execute(
        f"UPDATE {table.name} SET {', '.join(sets)} WHERE {' AND '.join(clauses)}", *args
    )
    return status != "UPDATE 0"


async def page(
    conn: asyncpg.Connection,
    table: Table,
    tenant: str,
    paging: Paging,
    *,
    keyword: str | None = None,
    where: dict[str, Any] | None = None,
) -> tuple[list[asyncpg.Record], int]:
    clauses, args = _where(table, tenant, where or {})
    if keyword and table.search:
        args.append(f"%{keyword}%")
        n = len(args)
        clauses.append("(" + " OR ".join(f"{c} ILIKE ${n}" for c in table.search) + ")")
    sql_where = " AND ".join(clauses)
    total: int = await conn.fetchval(f"SELECT count(*) FROM {table.name} WHERE {sql_where}", *args)
    rows = await conn.fetch(
        f"SELECT {table.select_list()} FROM {table.name} WHERE {sql_where} "
        f"ORDER BY {table.order}, {table.id_column} "
        f"LIMIT {paging.rows_per_page} OFFSET {paging.offset}",
        *args,
    )
    return list(rows), total


def _where(table: Table, tenant: str, where: dict[str, Any]) -> tuple[list[str], list[Any]]:
    clauses = ["tenant_id = $1"]
    args: list[Any] = [tenant]
    for name, value in where.items():
        args.append(_db_value(value))
        clauses.append(f"{table.columns[name]} = ${len(args)}")
    return clauses, args
