"""Staff passwords: argon2id (argon2-cffi, RFC 9106's recommended hash), never stored in
the clear. Hashing costs tens of milliseconds and 64 MiB on purpose, so it runs in a
thread (the binding releases the GIL) and never on the event loop."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_PASSWORD_CHARS = 12
"""NIST SP 800-63B asks for at least 8; a dispatcher's account runs a whole operation."""
MAX_PASSWORD_CHARS = 256
"""Long passphrases are welcome; an unbounded one would be a hashing cost an attacker sets."""
GENERATED_BYTES = 15
"""A generated password: 120 bits, 20 URL-safe characters."""

_DUMMY = _hasher.hash(secrets.token_urlsafe(GENERATED_BYTES))
"""Checked against when the e-mail is unknown, so an unknown address takes as long as a
wrong password (no account discovery by timing)."""


def check_password(password: str) -> str:
    """The password if it is acceptable, else ValueError saying why."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(
            f"a password is {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long"
        )
    return password


def generate_password() -> str:
    return secrets.token_urlsafe(GENERATED_BYTES)


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches the stored hash (None: an unknown account, always False
    after the same work)."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    return await asyncio.to_thread(_verify, stored, password)
