"""Device tokens: generated, shown once, stored only as a salted hash.

Generated tokens carry 256 bits of entropy, so guessing one is infeasible whatever the
hash's speed; like GitHub's and Stripe's API tokens they are stored as salted SHA-256
rather than with a slow password KDF, which keeps 1,000 trackers reconnecting at once
cheap. Tokens chosen by a person must be at least `MIN_TOKEN_CHARS` long.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from devices.tcp_nmea import FORBIDDEN_TOKEN_CHARS

SCHEME = "sha256"
MIN_TOKEN_CHARS = 16


class BadToken(ValueError):
    """A token a person chose that fixgate will not accept."""


def generate_token() -> str:
    return secrets.token_urlsafe(32)


TRACCAR_ID_BYTES = 16
"""128 bits: an identifier-only app's id is its only secret (docs/security.md)."""


def new_traccar_id() -> str:
    """A Traccar Client id nobody can guess (hex: the app's field takes any characters)."""
    return secrets.token_hex(TRACCAR_ID_BYTES)


def check_token(token: str) -> None:
    if len(token) < MIN_TOKEN_CHARS:
        raise BadToken(f"a token must be at least {MIN_TOKEN_CHARS} characters long")
    if FORBIDDEN_TOKEN_CHARS & set(token) or not token.isprintable():
        raise BadToken("a token may not contain ',', '*', '$' or control characters")


def hash_token(token: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.sha256((salt + token).encode()).hexdigest()
    return f"{SCHEME}${salt}${digest}"


def verify_token(token: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != SCHEME:
        return False
    candidate = hashlib.sha256((salt + token).encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)
