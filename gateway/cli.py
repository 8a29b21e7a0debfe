"""The `fixgate` command (Typer): the stack, migrations, the device registry and the processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Annotated, Concatenate, ParamSpec, TypeVar

import asyncpg
import typer

from api.cli import api as dispatch_api
from api.cli import token_app, user_app
from gateway.config import Settings
from gateway.engine.cli import engine as engine_command
from gateway.engine.cli import eta_app, geofence_app, trip_app
from gateway.migrate import migrate as apply_migrations
from gateway.migrate import migrations_dir
from gateway.registry import store as registry
from gateway.registry.tokens import BadToken

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
device_app = typer.Typer(no_args_is_help=True, help="The device registry.")
app.add_typer(device_app, name="device")
app.add_typer(geofence_app, name="geofence")
app.add_typer(trip_app, name="trip")
app.add_typer(eta_app, name="eta")
app.command("engine")(engine_command)
app.command("api")(dispatch_api)
app.add_typer(token_app, name="token")
app.add_typer(user_app, name="user")

P = ParamSpec("P")
T = TypeVar("T")

DB_HINT = "is the stack up and migrated? (fixgate stack up && fixgate migrate)"


def fail(message: str) -> typer.Exit:
    typer.echo(f"fixgate: {message}", err=True)
    return typer.Exit(code=1)


# ---- schema --------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Apply pending migrations (a no-op when up to date)."""
    settings = Settings()
    try:
        applied = apply_migrations(settings.database_url, migrations_dir())
    except Exception as e:  # the driver's own message is the useful part
        raise fail(f"migration failed: {e}") from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


# ---- device registry -----------------------------------------------------------------


async def _with_conn(
    fn: Callable[Concatenate[asyncpg.Connection, P], Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    conn = await asyncpg.connect(Settings().database_url)
    try:
        return await fn(conn, *args, **kwargs)
    finally:
        await conn.close()


@device_app.command("add")
def device_add(
    device_id: str,
    tenant: Annotated[str, typer.Option(help="Tenant (fleet operator) the device belongs to.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(registry.DEVICE_KINDS)}.")],
    token: Annotated[
        str | None, typer.Option(help="Use this token instead of generating one.")
    ] = None,
    owntracks: Annotated[
        str | None, typer.Option(help="OwnTracks identity <user>/<device> mapped to this device.")
    ] = None,
    imei: Annotated[
        str | None, typer.Option(help="IMEI (15 digits) a Teltonika or GT06 tracker logs in with.")
    ] = None,
    traccar_id: Annotated[
        str | None, typer.Option(help="Device identifier set in the Traccar Client app.")
    ] = None,
) -> None:
    """Register a device and print its token once (alone on the last line)."""
    try:
        issued = asyncio.run(
            _with_conn(
                registry.add_device,
                device_id,
                tenant_id=tenant,
                kind=kind,
                token=token,
                owntracks=owntracks,
                imei=imei,
                traccar_id=traccar_id,
            )
        )
    except (
        registry.DeviceExists,
        registry.OwnTracksIdentityTaken,
        registry.IdentifierTaken,
        BadToken,
        ValueError,
    ) as e:
        raise fail(str(e)) from None
    typer.echo(f"device {device_id} added to tenant {tenant}; its token (shown only now):")
    typer.echo(issued)


@device_app.command("list")
def device_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
) -> None:
    """List registered devices."""
    devices = asyncio.run(_with_conn(registry.list_devices, tenant))
    typer.echo(
        f"{'id':24} {'tenant':16} {'kind':12} {'enabled':8} {'imei':16} {'traccar id':16} owntracks"
    )
    for d in devices:
        ot = f"{d.owntracks_user}/{d.owntracks_device}" if d.owntracks_user else "-"
        enabled = "yes" if d.enabled else "no"
        typer.echo(
            f"{d.id:24} {d.tenant_id:16} {d.kind:12} {enabled:8} {d.imei or '-':16}"
            f" {d.traccar_id or '-':16} {ot}"
        )


@device_app.command("disable")
def device_disable(device_id: str) -> None:
    """Disable a device: its fixes and logins are refused from now on."""
    if not asyncio.run(_with_conn(registry.set_enabled, device_id, False)):
        raise fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} disabled")


@device_app.command("enable")
def device_enable(device_id: str) -> None:
    """Enable a disabled device again."""
    if not asyncio.run(_with_conn(registry.set_enabled, device_id, True)):
        raise fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} enabled")


# ---- processes -----------------------------------------------------------------------


@app.command()
def gateway() -> None:
    """Run the listeners (MQTT, TCP NMEA), the ingest pipeline and the metrics endpoint."""
    from gateway.service import main as run

    run(Settings())


def _add_plugin_commands() -> None:
    """Commands other packages register through the `fixgate.commands` entry point group
    (the developer tooling in devtools/: stack, simulate, demo), so the product packages
    never import them."""
    for entry in entry_points(group="fixgate.commands"):
        try:
            register: Callable[[typer.Typer], None] = entry.load()
        except ModuleNotFoundError:
            continue  # declared but not installed (the product's Docker image has no devtools)
        register(app)


_add_plugin_commands()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
