"""This process's connections, indexed by (tenant, group), and the routing of an event to
them. Routing only puts into bounded queues (`put_nowait`), never awaits a socket: a
client that cannot keep up overflows its own queue and is closed, nobody else waits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from api.events import ALL_ADMINS
from api.personal import Sight
from api.principal import Principal
from api.realtime.groups import admit, request_facts
from api.realtime.protocol import Entry, StreamId
from api.realtime.views import seen_as, text_for


@dataclass(frozen=True, slots=True)
class Outgoing:
    sid: StreamId | None  # None: a live-only message (fleet positions), never replayed
    text: str
    at: float | None  # published at, Unix seconds (delivery lag)


class Connection:
    def __init__(self, principal: Principal, groups: frozenset[str], max_queue: int) -> None:
        self.principal = principal
        self.groups = groups
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(max_queue)
        self.overflowed = asyncio.Event()
        self.revoked = asyncio.Event()
        """Set when its principal is disabled: the socket closes (4401)."""

    def offer(self, item: Outgoing) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    def __init__(self) -> None:
        self._index: dict[tuple[str, str], set[Connection]] = {}
        self._admin_tenants: set[str] = set()
        self.connections: set[Connection] = set()

    def _set_groups(self, conn: Connection, groups: frozenset[str]) -> None:
        tenant = conn.principal.tenant
        for group in conn.groups - groups:
            members = self._index.get((tenant, group))
            if members is not None:
                members.discard(conn)
                if not members:
                    del self._index[(tenant, group)]
                    if group == ALL_ADMINS:
                        self._admin_tenants.discard(tenant)
        for group in groups - conn.groups:
            self._index.setdefault((tenant, group), set()).add(conn)
            if group == ALL_ADMINS:
                self._admin_tenants.add(tenant)
        conn.groups = groups

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)
        groups, conn.groups = conn.groups, frozenset()
        self._set_groups(conn, groups)

    def join(self, conn: Connection, groups: frozenset[str]) -> None:
        self._set_groups(conn, conn.groups | groups)

    def remove(self, conn: Connection) -> None:
        self._set_groups(conn, frozenset())
        self.connections.discard(conn)

    def route(self, entry: Entry) -> int:
        """Queue the entry for every local connection that gets it; how many do."""
        facts = request_facts(entry.groups, entry.payload)
        touched = set(entry.groups)
        if facts.request_id is not None:
            touched.add(f"Request-{facts.request_id}")
        candidates: set[Connection] = set()
        for group in touched:
            candidates.update(self._index.get((entry.tenant, group), ()))
        items: dict[tuple[Sight, bool], Outgoing] = {}  # one rendering per way of seeing it
        delivered = 0
        for conn in candidates:
            admission = admit(conn.principal, conn.groups, entry.event, entry.groups, facts)
            if admission.during != conn.groups:
                self._set_groups(conn, admission.during)
            if admission.deliver:
                seen = seen_as(conn.principal, entry.event, facts)
                item = items.get(seen)
                if item is None:
                    item = items[seen] = Outgoing(entry.sid, text_for(entry, *seen), entry.at)
                conn.offer(item)
                delivered += 1
            if admission.after != conn.groups:
                self._set_groups(conn, admission.after)
        return delivered

    def revoke(self, tenant: str, role: str, subject: str) -> int:
        """End every connection of a principal (disabled); how many there were."""
        ended = 0
        for conn in list(self.connections):
            p = conn.principal
            if (p.tenant, p.role.value, p.subject) == (tenant, role, subject):
                conn.revoked.set()
                ended += 1
        return ended

    def has_admins(self, tenant: str) -> bool:
        return tenant in self._admin_tenants

    def any_admins(self) -> bool:
        return bool(self._admin_tenants)

    def to_admins(self, tenant: str, text: str, at: float | None) -> None:
        item = Outgoing(None, text, at)
        for conn in self._index.get((tenant, ALL_ADMINS), ()):
            conn.offer(item)
