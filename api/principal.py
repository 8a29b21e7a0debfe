"""Who is acting: a role, a tenant and a subject (pure: the token's reading is api/auth.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    DISPATCHER = "dispatcher"
    TECHNICIAN = "technician"
    CUSTOMER = "customer"


STAFF_ROLES = frozenset({Role.ADMIN, Role.DISPATCHER})


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # customerId for a customer, technicianId for a technician
    tenant: str
    role: Role
    expires_at: float | None = field(default=None, compare=False)
    """When the token it came from expires (Unix seconds): a WebSocket closes then."""

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def actor(self) -> str:
        return f"{self.role.value}:{self.subject}"
