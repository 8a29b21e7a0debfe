"""Who signs in, and how.

- Staff (admins, dispatchers) log in with their e-mail and password (`POST /auth/login`):
  the answer is a session token, the API's bearer JWT, short-lived
  (`FIXGATE_SESSION_TTL_S`), whose subject is their user id. Failed logins lock the
  account and the address for a while (api/lockout.py).
- Technicians and customers sign in with one-time links that staff make
  (`POST /auth/links`): `/tech#code=...` or `/help#code=...`, a code in the fragment, so it
  never reaches a server's log. The page trades the code for a session token
  (`POST /auth/redeem`), once, before the link expires.
- Scripts keep `fixgate token issue`.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.auth import issue_token
from api.deps import DbDep, SettingsDep, StaffDep, StateDep
from api.errors import ApiError, forbidden, not_found, unauthorized
from api.guard import guarded_router
from api.lockout import Lockout
from api.models.auth import LinkCreate, LinkRole, Login, Redeem, Session, SignInLink
from api.models.common import Envelope
from api.passwords import verify_password
from api.principal import Role
from api.routes.console import html, login_html
from api.settings import ApiSettings
from api.store import users

log = logging.getLogger("fixgate.api.auth")

router = guarded_router(tags=["auth"])

CODE_BYTES = 32
"""256 bits: a code cannot be guessed within its minutes of life."""
LINK_PAGES = {LinkRole.TECHNICIAN: "/tech", LinkRole.CUSTOMER: "/help"}
"""The technician app and the customer app (issue 23's pages) take `#code=`."""


def _lockout(state: StateDep) -> Lockout:
    s = state.settings
    return Lockout(state.redis, s.redis_prefix, s.login_max_failures,
                   s.login_max_failures_per_address, s.login_lockout_s)  # fmt: skip


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _session(settings: ApiSettings, role: Role, tenant: str, subject: str) -> Session:
    ttl = settings.session_ttl_s
    token = issue_token(settings.api_secret, subject=subject, tenant=tenant, role=role, ttl_s=ttl)
    return Session(token=token, expires_in=ttl, role=role.value, tenant=tenant, subject=subject)


@router.get("/login", include_in_schema=False)
async def login_page(settings: SettingsDep) -> HTMLResponse:
    return html(login_html(), settings)


@router.post("/auth/login")
async def login(body: Login, request: Request, state: StateDep, db: DbDep) -> Envelope[Session]:
    """Staff log in with e-mail and password: a session token (401 for a wrong e-mail or
    password, alike; 429 while the account or the address is locked out)."""
    lockout, email, address = _lockout(state), users.normal_email(body.email), _address(request)
    await lockout.check(email, address)
    user = await users.by_email(db, email)
    if not await verify_password(user.password_hash if user else None, body.password):
        await lockout.failed(email, address)
        log.warning("login failed for an account from %s", address)
        raise unauthorized("Wrong e-mail or password")
    assert user is not None  # verify_password is False without one
    if not user.enabled:
        raise forbidden("Your account is disabled")
    await lockout.succeeded(email, address)
    await users.logged_in(db, user.user_id)
    data = _session(state.settings, user.role, user.tenant, str(user.user_id))
    return Envelope[Session](status=200, message="Logged in", data=data)


@router.post("/auth/links")
async def create_link(
    body: LinkCreate, request: Request, state: StateDep, db: DbDep, principal: StaffDep
) -> Envelope[SignInLink]:
    """A one-time sign-in link for a technician or a customer of the tenant (404 when there
    is no such one, 409 when they are disabled)."""
    role = Role(body.role.value)
    enabled = await users.subject_enabled(db, principal.tenant, role, body.subject)
    if enabled is None:
        raise not_found(role.value.capitalize())
    if not enabled:
        raise ApiError(409, f"That {role.value} is disabled: enable them first")
    code = secrets.token_urlsafe(CODE_BYTES)
    expires = datetime.now(UTC) + timedelta(seconds=body.ttl_s)
    await users.add_link(
        db, code=code, tenant=principal.tenant, role=role, subject=body.subject,
        created_by=principal.actor, expires_at=expires,
    )  # fmt: skip
    base = (state.settings.public_url or str(request.base_url)).rstrip("/")
    url = f"{base}{LINK_PAGES[body.role]}#code={code}"
    log.info("%s made a sign-in link for %s %s", principal.actor, role.value, body.subject)
    data = SignInLink(url=url, code=code, expires_at=expires)
    return Envelope[SignInLink](status=200, message="Sign-in link created", data=data)


@router.post("/auth/redeem")
async def redeem(body: Redeem, state: StateDep, db: DbDep) -> Envelope[Session]:
    """Trade a sign-in link's code for a session token: once, before it expires (401
    otherwise, and for a technician or customer disabled since)."""
    found = await users.redeem_link(db, body.code)
    if found is None:
        raise unauthorized("This sign-in link is unknown, used or expired: ask for a new one")
    tenant, role, subject = found
    if await users.subject_enabled(db, tenant, role, subject) is not True:
        raise unauthorized("Your account is disabled")
    data = _session(state.settings, role, tenant, str(subject))
    return Envelope[Session](status=200, message="Signed in", data=data)
