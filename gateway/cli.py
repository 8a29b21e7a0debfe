"""The `fixgate` command (Typer): the stack, migrations, the device registry and the processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Annotated, Concatenate, ParamSpec, TypeVar

import asyncpg
import typer

from devices.fix import Protocol
from gateway.config import Settings
from gateway.engine.cli import engine_app, eta_app, geofence_app, trip_app
from gateway.migrate import migrate as apply_migrations
from gateway.migrate import migrations_dir
from gateway.registry import store as registry
from gateway.registry.broker import (
    BrokerError,
    BrokerSync,
    register_device,
    remove_device,
    set_device_enabled,
)
from gateway.registry.tokens import BadToken, new_traccar_id

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
device_app = typer.Typer(no_args_is_help=True, help="The device registry.")
app.add_typer(device_app, name="device")
app.add_typer(geofence_app, name="geofence")
app.add_typer(trip_app, name="trip")
app.add_typer(eta_app, name="eta")
app.add_typer(engine_app, name="engine")

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


def _broker_sync() -> BrokerSync | None:
    sync = BrokerSync.from_settings(Settings())
    if sync is None:
        typer.echo(
            "fixgate: FIXGATE_MQTT_ADMIN_URL is not set: the broker's accounts are not changed"
            " (`fixgate stack env` prints the stack's)",
            err=True,
        )
    return sync


TRACCAR_ID_NEW = "new"
"""`--traccar-id new` draws a long random id (the app's default is a short number)."""


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
        str | None,
        typer.Option(
            help=f"Device identifier set in the Traccar Client app; `{TRACCAR_ID_NEW}` generates a long random one (printed)."
        ),
    ] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A protocol the device may send with (repeat for several): {', '.join(p.value for p in Protocol)}; none given: any."
        ),
    ] = None,
) -> None:
    """Register a device (and its broker account) and print its token once (alone on the last line)."""
    protocols = tuple(protocol or ())
    unknown = set(protocols) - {p.value for p in Protocol}
    if unknown:
        raise fail(f"unknown protocol(s): {', '.join(sorted(unknown))}")
    if traccar_id == TRACCAR_ID_NEW:
        traccar_id = new_traccar_id()
        typer.echo(f"Traccar Client id (set it in the app): {traccar_id}")
    try:
        issued = asyncio.run(
            _with_conn(
                register_device,
                _broker_sync(),
                device_id,
                tenant_id=tenant,
                kind=kind,
                token=token,
                owntracks=owntracks,
                imei=imei,
                traccar_id=traccar_id,
                protocols=protocols,
            )
        )
    except (
        registry.DeviceExists,
        registry.OwnTracksIdentityTaken,
        registry.OwnTracksUserTaken,
        registry.LoginTaken,
        registry.IdentifierTaken,
        BadToken,
        BrokerError,
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


def _set_enabled(device_id: str, enabled: bool) -> bool:
    try:
        return asyncio.run(_with_conn(set_device_enabled, _broker_sync(), device_id, enabled))
    except BrokerError as e:
        raise fail(f"the registry changed, the broker did not: {e}") from None


@device_app.command("disable")
def device_disable(device_id: str) -> None:
    """Disable a device: its fixes and logins are refused from now on (the broker
    disconnects it at once)."""
    if not _set_enabled(device_id, False):
        raise fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} disabled")


@device_app.command("enable")
def device_enable(device_id: str) -> None:
    """Enable a disabled device again."""
    if not _set_enabled(device_id, True):
        raise fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} enabled")


@device_app.command("remove")
def device_remove(device_id: str) -> None:
    """Remove a device and its broker account; its stored fixes stay."""
    try:
        removed = asyncio.run(_with_conn(remove_device, _broker_sync(), device_id))
    except asyncpg.ForeignKeyViolationError:
        raise fail(f"device {device_id!r} has engine trips: disable it instead") from None
    except BrokerError as e:
        raise fail(f"the registry changed, the broker did not: {e}") from None
    if not removed:
        raise fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} removed")


# ---- processes -----------------------------------------------------------------------


@app.command()
def gateway() -> None:
    """Run the listeners (MQTT, TCP NMEA), the ingest pipeline and the metrics endpoint."""
    from gateway.service import main as run

    run(Settings())


def _add_plugin_commands() -> None:
    """Commands other packages register through the `fixgate.commands` entry point group
    (the dispatch API's `api` and `token`; the developer tooling in devtools/: stack,
    simulate, demo), so the gateway imports neither the API nor the tooling."""
    for entry in entry_points(group="fixgate.commands"):
        try:
            register: Callable[[typer.Typer], None] = entry.load()
        except ModuleNotFoundError:
            continue  # declared but not installed (the product's Docker image has no devtools)
        register(app)


_add_plugin_commands()


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
