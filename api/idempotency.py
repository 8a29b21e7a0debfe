"""`Idempotency-Key`: a client that sends a write again (a retry after a lost answer, the
technician app's offline queue replaying) gets the first answer, and the write happens once.

Every POST, PUT and PATCH of a signed-in principal may carry the header. The write then runs
on one connection in one transaction that begins by claiming the key (a row in
`idempotencykeys`, migrations/0016) and ends by storing the answer, status and body, in the
same commit as whatever the write changed: a crash before the commit leaves neither, one
after it leaves both. A second request with the key waits on the claim's row; it finds
the first answer (`Idempotent-Replayed: true`) or, when the first one failed, claims the
key itself. The same key with another request (method, path, query or body) is 422.
Keys live 24 h per principal. Answers that say "try again" (429, 5xx) are not kept: the
write rolled back and a retry acts.

The request's own view of the API (`ApiState.holding`) hands that connection to the write
(its unit of work runs in a savepoint of it) and holds its events for the relay until the
commit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from fastapi import Request, Response

from api.errors import ApiError, invalid, response_for
from api.principal import Principal
from api.state import ApiState

HEADER = "Idempotency-Key"
WRITES = frozenset({"POST", "PUT", "PATCH"})
KEY_PATTERN = r"^[!-~]{1,255}$"
"""Printable ASCII without spaces, 1-255 characters (a UUID is typical)."""
_KEY = re.compile(KEY_PATTERN)
KEEP_S = 24 * 3600
"""How long a key's answer is kept (and the key taken)."""
NOT_KEPT = frozenset({429})
"""Answers that ask to try again: the write rolled back, a retry must act."""

_CLAIM = """
INSERT INTO idempotencykeys (tenant_id, principal, key, fingerprint)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, principal, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, status = NULL, body = NULL, mediatype = NULL,
        createdat = now()
    WHERE idempotencykeys.createdat < now() - make_interval(secs => $5)
RETURNING 1
"""
"""Take the key (or an expired one's place); nothing returned: a live answer holds it."""


@dataclass(frozen=True, slots=True)
class Kept:
    fingerprint: str
    status: int
    body: bytes
    media_type: str | None


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256(f"{method} {path}?{query}\n".encode())
    digest.update(body)
    return digest.hexdigest()


async def _kept(conn: asyncpg.Connection, tenant: str, principal: str, key: str) -> Kept | None:
    row = await conn.fetchrow(
        "SELECT fingerprint, status, body, mediatype FROM idempotencykeys"
        " WHERE tenant_id = $1 AND principal = $2 AND key = $3 AND status IS NOT NULL",
        tenant,
        principal,
        key,
    )
    if row is None:
        return None
    return Kept(row["fingerprint"], row["status"], bytes(row["body"]), row["mediatype"])


def _replay(kept: Kept) -> Response:
    return Response(
        kept.body,
        status_code=kept.status,
        media_type=kept.media_type,
        headers={"Idempotent-Replayed": "true"},
    )


class _Unkept(Exception):
    """An answer not kept: the transaction rolls back (the claim with it), the answer goes out."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def _answer(
    conn: asyncpg.Connection, request: Request, handler: Callable[[Request], Awaitable[Response]]
) -> Response:
    """The handler's answer, its writes in a savepoint: a database error rolls them back
    without breaking the claim's transaction; a refusal keeps what its action kept (the
    refusal's audit row)."""
    savepoint = conn.transaction()
    await savepoint.start()
    try:
        response = await handler(request)
    except Exception as e:
        answer = response_for(e)
        if answer is None or isinstance(e, asyncpg.PostgresError):
            await savepoint.rollback()
        else:
            await savepoint.commit()
        if answer is None:
            raise
        return answer
    await savepoint.commit()
    return response


async def after_commit() -> None:
    """Runs between the commit and the answer: where a crash there is tested (tests/support)."""


async def run(
    state: ApiState,
    request: Request,
    principal: Principal,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    """The write under its key (see the module's docstring)."""
    try:
        return await _run(state, request, principal, handler)
    except _Unkept as e:
        return e.response


async def _run(
    state: ApiState,
    request: Request,
    principal: Principal,
    handler: Callable[[Request], Awaitable[Response]],
) -> Response:
    key = request.headers[HEADER]
    if not _KEY.fullmatch(key):
        raise invalid(HEADER, "1-255 printable ASCII characters without spaces")
    mine = fingerprint(request.method, request.url.path, request.url.query, await request.body())
    who = principal.actor
    async with state.pool.acquire() as pooled:
        conn: asyncpg.Connection = pooled  # type: ignore[assignment]
        async with conn.transaction():
            claimed = await conn.fetchval(_CLAIM, principal.tenant, who, key, mine, KEEP_S)
            if claimed is None:  # a first answer exists (its transaction committed)
                kept = await _kept(conn, principal.tenant, who, key)
                if kept is None:  # pragma: no cover (expired between the two statements)
                    raise ApiError(409, f"{HEADER} {key!r} is in use: try again")
                if kept.fingerprint != mine:
                    raise invalid(HEADER, "this key was used for another request")
                return _replay(kept)
            scoped = state.holding(conn)
            request.state.api = scoped
            response = await _answer(conn, request, handler)
            if response.status_code >= 500 or response.status_code in NOT_KEPT:
                raise _Unkept(response)
            await conn.execute(
                "UPDATE idempotencykeys SET status = $4, body = $5, mediatype = $6"
                " WHERE tenant_id = $1 AND principal = $2 AND key = $3",
                principal.tenant, who, key, response.status_code, bytes(response.body),
                response.media_type,
            )  # fmt: skip
    state.committed(scoped.release())
    await after_commit()
    return response


async def forget_expired(pool: asyncpg.Pool) -> int:
    """Delete answers past their 24 h (a key then works anew)."""
    status: str = await pool.execute(
        "DELETE FROM idempotencykeys WHERE createdat < now() - make_interval(secs => $1)",
        KEEP_S,
    )
    return int(status.split()[-1])
