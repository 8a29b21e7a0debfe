"""Logins, sign-in links and their exchange for a session token."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import Field

from api.models.catalog import MAX_TEXT
from api.models.common import CamelModel
from api.passwords import MAX_PASSWORD_CHARS

LINK_TTL_MIN_S = 60
LINK_TTL_MAX_S = 24 * 3600
"""A link sent the evening before a shift still works in the morning; no longer."""
CODE_MAX_CHARS = 128


class Login(CamelModel):
    email: str = Field(min_length=3, max_length=MAX_TEXT)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_CHARS)


class Session(CamelModel):
    token: str = Field(description="The session's bearer token (a JWT): Authorization: Bearer")
    expires_in: int = Field(description="Seconds until the token expires")
    role: str
    tenant: str
    subject: str = Field(description="userId (staff), technicianId or customerId")


class LinkRole(StrEnum):
    TECHNICIAN = "technician"
    CUSTOMER = "customer"


class LinkCreate(CamelModel):
    role: LinkRole
    subject: UUID = Field(description="The technicianId or customerId the link signs in")
    ttl_s: int = Field(900, ge=LINK_TTL_MIN_S, le=LINK_TTL_MAX_S, description="Seconds")


class SignInLink(CamelModel):
    url: str = Field(description="The page to open: /tech#code=... or /help#code=...")
    code: str = Field(description="The one-time code (in the URL's fragment, never a query)")
    expires_at: datetime


class Redeem(CamelModel):
    code: str = Field(min_length=1, max_length=CODE_MAX_CHARS)
