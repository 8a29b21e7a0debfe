"""`fixgate api` (serve the dispatch API) and `fixgate token issue` (a bearer token)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.auth import MAX_TTL_S, issue_token
from api.principal import Role
from api.settings import MIN_SECRET_CHARS, ApiSettings

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


def register(app: typer.Typer) -> None:
    """The API's commands in `fixgate` (the `fixgate.commands` entry point group)."""
    app.command("api")(api)
    app.add_typer(token_app, name="token")
