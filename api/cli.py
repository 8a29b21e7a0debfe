"""`fixgate api` (serve the dispatch API), `fixgate token issue` (a bearer token for scripts)
and `fixgate user` (staff who log in)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer

from api.auth import MAX_TTL_S, issue_token
from api.passwords import check_password, generate_password, hash_password
from api.principal import Role
from api.settings import MIN_SECRET_CHARS, ApiSettings
from api.store import users

T = TypeVar("T")

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the dispatch API.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"fixgate: {message}", err=True)
    return typer.Exit(code=1)


def api() -> None:
    """Run the dispatch API (FIXGATE_API_HOST:FIXGATE_API_PORT)."""
    import uvicorn

    from api import redact
    from api.app import ConfigError, create_app
    from gateway.logs import setup_logging

    settings = ApiSettings()
    setup_logging("INFO")
    redact.install()
    try:
        app = create_app(settings)
    except ConfigError as e:
        raise _fail(str(e)) from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        # The event loop and the HTTP/1.1 parser in C: under load every request's share
        # of the loop is what the next one waits behind.
        loop="uvloop",
        http="httptools",
        # uvicorn's 5 s closes the connection of an app whose user reads for a few seconds
        # between two calls, and a call sent as it closes fails; nginx's default is 75 s.
        timeout_keep_alive=settings.api_keepalive_s,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # Compression is per connection: with one event going to many sockets it would
        # cost the fan-out a deflate per client; the messages are small JSON.
        ws_per_message_deflate=False,
    )


@token_app.command("issue")
def token_issue(
    tenant: Annotated[str, typer.Option(help="Tenant the token acts in.")],
    role: Annotated[Role, typer.Option(help="admin, dispatcher, technician or customer.")],
    subject: Annotated[
        str, typer.Option(help="Who: a customerId for a customer, a technicianId for a technician.")
    ],
    ttl_s: Annotated[int, typer.Option(min=1, max=MAX_TTL_S, help="Lifetime, seconds.")] = 3600,
) -> None:
    """Print a signed token (alone on the last line)."""
    settings = ApiSettings()
    if len(settings.api_secret) < MIN_SECRET_CHARS:
        raise _fail(f"FIXGATE_API_SECRET must be at least {MIN_SECRET_CHARS} characters")
    if not tenant or not subject:
        raise _fail("--tenant and --subject must not be empty")
    typer.echo(f"token for {role.value} {subject} in tenant {tenant}, valid {ttl_s} s:")
    typer.echo(
        issue_token(settings.api_secret, subject=subject, tenant=tenant, role=role, ttl_s=ttl_s)
    )


# ---- staff users ---------------------------------------------------------------------------

user_app = typer.Typer(no_args_is_help=True, help="Staff who log in (admins, dispatchers).")

STAFF_CHOICES = ("admin", "dispatcher")


def _run_db(fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    async def run() -> T:
        conn = await asyncpg.connect(ApiSettings().database_url)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


def _password(read: bool) -> tuple[str, bool]:
    """(password, generated): read from standard input, else a new one."""
    if not read:
        return generate_password(), True
    given = sys.stdin.readline().rstrip("\n")
    try:
        return check_password(given), False
    except ValueError as e:
        raise _fail(str(e)) from None


@user_app.command("add")
def user_add(
    tenant: Annotated[str, typer.Option(help="Tenant the user works in.")],
    role: Annotated[str, typer.Option(help="admin or dispatcher.")],
    email: Annotated[str, typer.Option(help="E-mail address they log in with.")],
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of generating one.")
    ] = False,
) -> None:
    """Add a staff user; print their generated password once (alone on the last line)."""
    if role not in STAFF_CHOICES:
        raise _fail(f"--role must be admin or dispatcher, got {role!r}")
    if not tenant or "@" not in email:
        raise _fail("--tenant must not be empty and --email must be an e-mail address")
    password, generated = _password(password_stdin)
    hashed = hash_password(password)
    try:
        user_id = _run_db(
            lambda c: users.add(
                c, tenant=tenant, role=Role(role), email=email, password_hash=hashed
            )
        )
    except users.UserExists as e:
        raise _fail(str(e)) from None
    typer.echo(f"{role} {users.normal_email(email)} added to tenant {tenant} (user {user_id})")
    if generated:
        typer.echo("their password (shown only now; log in at /login):")
        typer.echo(password)


@user_app.command("password")
def user_password(
    email: str,
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of generating one.")
    ] = False,
) -> None:
    """Set a new password for a user (a forgotten one); a generated one is printed once."""
    password, generated = _password(password_stdin)
    hashed = hash_password(password)
    if not _run_db(lambda c: users.set_password(c, email, hashed)):
        raise _fail(f"no user {users.normal_email(email)}")
    typer.echo(f"password of {users.normal_email(email)} changed")
    if generated:
        typer.echo(password)


@user_app.command("list")
def user_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
    for u in _run_db(lambda c: users.listed(c, tenant)):
        last = u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "never"
        state = "enabled" if u.enabled else "disabled"
        typer.echo(
            f"{u.tenant}\t{u.email}\t{u.role.value}\t{state}\tlast login {last}\t{u.user_id}"
        )


def _set_enabled(email: str, enabled: bool) -> None:
    if not _run_db(lambda c: users.set_enabled(c, email, enabled)):
        raise _fail(f"no user {users.normal_email(email)}")
    typer.echo(f"{users.normal_email(email)} {'enabled' if enabled else 'disabled'}")


@user_app.command("disable")
def user_disable(email: str) -> None:
    """Refuse the user's logins, and their session tokens at once (every API process)."""
    _set_enabled(email, False)


@user_app.command("enable")
def user_enable(email: str) -> None:
    _set_enabled(email, True)


def register(app: typer.Typer) -> None:
    """The API's commands in `fixgate` (the `fixgate.commands` entry point group)."""
    app.command("api")(api)
    app.add_typer(token_app, name="token")
    app.add_typer(user_app, name="user")
