"""WebSocket tickets: a browser cannot put a bearer header on a WebSocket, and a token in
the URL would reach logs and proxies, so a client trades its token for a ticket
(`POST /ws-ticket`) and connects with `/ws?ticket=...`. A ticket is random, lives
`TICKET_TTL_S`, and is taken once (GETDEL): a ticket seen in a log is already spent.
The socket lives no longer than the token behind it."""

from __future__ import annotations

import json
import secrets

from api.principal import Principal, Role
from gateway.redis_link import AnyRedis

TICKET_TTL_S = 30
"""Long enough to open a socket right after asking, short enough to be worthless later."""
TICKET_BYTES = 32


def _key(prefix: str, ticket: str) -> str:
    return f"{prefix}wsticket:{ticket}"


async def issue(client: AnyRedis, prefix: str, principal: Principal) -> str:
    ticket = secrets.token_urlsafe(TICKET_BYTES)
    claims = {
        "tenant": principal.tenant,
        "role": principal.role.value,
        "subject": principal.subject,
        "exp": principal.expires_at,
    }
    await client.set(_key(prefix, ticket), json.dumps(claims), ex=TICKET_TTL_S, nx=True)
    return ticket


async def redeem(client: AnyRedis, prefix: str, ticket: str) -> Principal | None:
    """The principal of a ticket, once; None when it is unknown, spent or expired."""
    if not ticket or len(ticket) > 2 * TICKET_BYTES:
        return None
    raw = await client.getdel(_key(prefix, ticket))
    if raw is None:
        return None
    claims = json.loads(raw)
    return Principal(
        subject=claims["subject"],
        tenant=claims["tenant"],
        role=Role(claims["role"]),
        expires_at=claims["exp"],
    )
