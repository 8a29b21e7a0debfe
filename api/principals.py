"""Which customers, technicians and staff users are disabled, in every API process's memory.

A token stays valid until it expires; a principal disabled meanwhile must lose access at
once. Looking them up per request would cost every request a database round trip, so each
process keeps the set of disabled principals: loaded at start, kept current by the
notifications of migrations/0015 (and 0016 for staff users, with their own role) on
`fixgate_principals` (on a connection of its own,
reconnecting while the database is away, and loading the whole set again after each
connect, since notifications sent meanwhile are lost). Disabling one also closes its open
WebSockets (`on_disable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import asyncpg

from api.principal import Principal, Role

log = logging.getLogger("fixgate.api.principals")

CHANNEL = "fixgate_principals"
RETRY_S = 1.0
"""The wait before connecting again to listen, while the database is away."""
WAKE_S = 5.0
"""How often the listening loop looks at its connection (a dead one is noticed then)."""

Key = tuple[str, str, str]  # (tenant, role, subject)


def _key(principal: Principal) -> Key:
    return (principal.tenant, principal.role.value, principal.subject)


class Principals:
    def __init__(self) -> None:
        self._disabled: set[Key] = set()
        self.on_disable: list[Callable[[str, Role, str], None]] = []
        self.listening = False

    def disabled(self, principal: Principal) -> bool:
        return _key(principal) in self._disabled

    def set_enabled(self, tenant: str, role: Role, subject: str, enabled: bool) -> None:
        key = (tenant, role.value, subject)
        if enabled:
            self._disabled.discard(key)
            return
        if key not in self._disabled:
            self._disabled.add(key)
            for callback in self.on_disable:
                callback(tenant, role, subject)

    async def load(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(
            "SELECT tenant_id, 'customer' AS role, customerid::text AS subject"
            " FROM customermaster WHERE NOT enabled"
            " UNION ALL SELECT tenant_id, 'technician', technicianid::text"
            " FROM technicianmaster WHERE NOT enabled"
            " UNION ALL SELECT tenant_id, role, userid::text FROM users WHERE NOT enabled"
        )
        found = {(r["tenant_id"], r["role"], r["subject"]) for r in rows}
        for tenant, role, subject in found - self._disabled:
            self.set_enabled(tenant, Role(role), subject, False)
        self._disabled = found

    def _on_notify(self, conn: object, pid: int, channel: str, payload: object) -> None:
        try:
            change = json.loads(str(payload))
            role = Role(change["role"])
            self.set_enabled(change["tenant"], role, change["subject"], bool(change["enabled"]))
        except (ValueError, KeyError, TypeError):
            log.warning("principals: unreadable notification %r", payload)

    async def run(self, database_url: str) -> None:
        """Listen until cancelled, loading the whole set after every (re)connect."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(database_url, timeout=5)
                await conn.add_listener(CHANNEL, self._on_notify)
                await self.load(conn)
                self.listening = True
                while True:  # a dead connection shows when it is used
                    await asyncio.sleep(WAKE_S)
                    await conn.fetchval("SELECT 1", timeout=5)
            except (OSError, asyncpg.PostgresError, TimeoutError) as e:
                log.warning("principals: not listening (%s); retrying", type(e).__name__)
            finally:
                self.listening = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(RETRY_S)
