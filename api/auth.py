"""Bearer tokens: HS256 JWTs (PyJWT) carrying subject, tenant and role."""

from __future__ import annotations

import time

import jwt

from api.principal import Principal, Role

ALGORITHM = "HS256"
MAX_TTL_S = 30 * 24 * 3600
"""Longest token life `fixgate token issue` grants: a month, so a leaked token expires."""


class BadToken(Exception):
    pass


def issue_token(secret: str, *, subject: str, tenant: str, role: Role, ttl_s: int) -> str:
    now = int(time.time())
    claims = {"sub": subject, "tenant": tenant, "role": role.value, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "tenant", "role", "exp"]},
        )
    except jwt.PyJWTError as e:
        raise BadToken(str(e)) from None
    sub, tenant, role = claims["sub"], claims["tenant"], claims["role"]
    if not (isinstance(sub, str) and sub and isinstance(tenant, str) and tenant):
        raise BadToken("sub and tenant must be non-empty strings")
    try:
        return Principal(
            subject=sub, tenant=tenant, role=Role(role), expires_at=float(claims["exp"])
        )
    except ValueError:
        raise BadToken(f"unknown role {role!r}") from None
