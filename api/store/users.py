"""Staff users and sign-in links in the database (migrations/0016)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from api.principal import Role


@dataclass(frozen=True, slots=True)
class User:
    user_id: UUID
    tenant: str
    email: str
    role: Role
    password_hash: str
    enabled: bool
    last_login_at: datetime | None = None


def _user(row: asyncpg.Record) -> User:
    return User(
        row["userid"], row["tenant_id"], row["email"], Role(row["role"]), row["passwordhash"],
        row["enabled"], row["lastloginat"],
    )  # fmt: skip


_COLUMNS = "userid, tenant_id, email, role, passwordhash, enabled, lastloginat"


class UserExists(Exception):
    def __init__(self, email: str) -> None:
        super().__init__(f"a user with the e-mail {email!r} exists already")


def normal_email(email: str) -> str:
    return email.strip().lower()


async def add(
    conn: asyncpg.Connection, *, tenant: str, role: Role, email: str, password_hash: str
) -> UUID:
    try:
        user_id: UUID = await conn.fetchval(
            "INSERT INTO users (tenant_id, email, role, passwordhash) VALUES ($1, $2, $3, $4)"
            " RETURNING userid",
            tenant, normal_email(email), role.value, password_hash,
        )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise UserExists(normal_email(email)) from None
    return user_id


async def by_email(conn: asyncpg.Connection, email: str) -> User | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE email = $1", normal_email(email))
    return _user(row) if row else None


async def listed(conn: asyncpg.Connection, tenant: str | None) -> list[User]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM users WHERE $1::text IS NULL OR tenant_id = $1"
        " ORDER BY tenant_id, email",
        tenant,
    )
    return [_user(r) for r in rows]


async def set_enabled(conn: asyncpg.Connection, email: str, enabled: bool) -> bool:
    status = await conn.execute(
        "UPDATE users SET enabled = $2 WHERE email = $1", normal_email(email), enabled
    )
    return status != "UPDATE 0"


async def set_password(conn: asyncpg.Connection, email: str, password_hash: str) -> bool:
    status = await conn.execute(
        "UPDATE users SET passwordhash = $2 WHERE email = $1", normal_email(email), password_hash
    )
    return status != "UPDATE 0"


async def logged_in(conn: asyncpg.Connection, user_id: UUID) -> None:
    await conn.execute("UPDATE users SET lastloginat = now() WHERE userid = $1", user_id)


# ---- sign-in links ----------------------------------------------------------------------


def code_hash(code: str) -> str:
    """A code has 256 bits of entropy: a plain SHA-256 of it cannot be reversed or guessed."""
    return hashlib.sha256(code.encode()).hexdigest()


async def subject_enabled(
    conn: asyncpg.Connection, tenant: str, role: Role, subject: UUID
) -> bool | None:
    """Whether the technician or customer is enabled (None: not of this tenant)."""
    table, column = (
        ("technicianmaster", "technicianid") if role is Role.TECHNICIAN
        else ("customermaster", "customerid")
    )  # fmt: skip
    enabled: bool | None = await conn.fetchval(
        f"SELECT enabled FROM {table} WHERE {column} = $1 AND tenant_id = $2", subject, tenant
    )
    return enabled


async def add_link(
    conn: asyncpg.Connection, *, code: str, tenant: str, role: Role, subject: UUID,
    created_by: str, expires_at: datetime,
) -> None:  # fmt: skip
    # Spent and expired links go as new ones are made: the table holds only live ones
    # and those of the last day (what an audit of recent sign-ins wants).
    await conn.execute("DELETE FROM signinlinks WHERE expiresat < now() - interval '1 day'")
    await conn.execute(
        "INSERT INTO signinlinks (codehash, tenant_id, role, subject, createdby, expiresat)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        code_hash(code), tenant, role.value, subject, created_by, expires_at,
    )  # fmt: skip


async def redeem_link(conn: asyncpg.Connection, code: str) -> tuple[str, Role, UUID] | None:
    """(tenant, role, subject) of a live, unused link, spending it; None otherwise. One
    statement: two redeemers of the same code cannot both win."""
    row = await conn.fetchrow(
        "UPDATE signinlinks SET redeemedat = now()"
        " WHERE codehash = $1 AND redeemedat IS NULL AND expiresat > now()"
        " RETURNING tenant_id, role, subject",
        code_hash(code),
    )
    if row is None:
        return None
    return row["tenant_id"], Role(row["role"]), row["subject"]
