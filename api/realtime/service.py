"""The real-time layer of one API process: its hub, its presence claims, the fleet map."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.principal import Role
from api.realtime.fleet import Fleet
from api.realtime.hub import Hub
from api.realtime.presence import Presence
from gateway.redis_link import AnyRedis


@dataclass
class Realtime:
    presence: Presence
    hub: Hub = field(default_factory=Hub)
    fleet: Fleet = field(default_factory=Fleet)

    def revoke(self, tenant: str, role: Role, subject: str) -> None:
        """A principal was disabled: close their sockets on this process."""
        self.hub.revoke(tenant, role.value, subject)

    @classmethod
    def build(cls, client: AnyRedis, prefix: str, presence_ttl_s: float) -> Realtime:
        return cls(presence=Presence(client, prefix, presence_ttl_s))
