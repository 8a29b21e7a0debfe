"""The `fixgate` command (Typer): the stack, migrations, the device registry and the processes."""

from __future__ import annotations

import asyncio
import shlex
import sys
from typing import Annotated

import asyncpg
import typer

from devices import registry
from devices.tokens import BadToken
from gateway.config import Settings
from gateway.migrate import migrate as apply_migrations
from gateway.stack import stack_env, use_docker
from gateway.stack.native import StackError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The service stack: TimescaleDB, Redis, Mosquitto.")
device_app = typer.Typer(no_args_is_help=True, help="The device registry.")
app.add_typer(stack_app, name="stack")
app.add_typer(device_app, name="device")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"fixgate: {message}", err=True)
    return typer.Exit(code=1)


def _stack(settings: Settings):  # type: ignore[no-untyped-def]
    if use_docker(settings):
        from gateway.stack.compose import ComposeStack

        return ComposeStack(settings)
    from gateway.stack.native import NativeStack

    return NativeStack(settings)


# ---- stack ---------------------------------------------------------------------------


@stack_app.command("up")
def stack_up() -> None:
    """Start TimescaleDB, Redis and Mosquitto (idempotent: a second run changes nothing)."""
    settings = Settings()
    try:
        _stack(settings).up()
    except StackError as e:
        raise _fail(str(e)) from None
    for status in _stack(settings).status():
        typer.echo(f"{status.name:12} {'up' if status.running else 'DOWN':5} {status.where}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, by PID."""
    try:
        stopped = _stack(Settings()).down()
    except StackError as e:
        raise _fail(str(e)) from None
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Say what runs where; exit 1 when anything is down."""
    statuses = _stack(Settings()).status()
    for status in statuses:
        pid = f" pid {status.pid}" if status.pid else ""
        typer.echo(f"{status.name:12} {'up' if status.running else 'down':5} {status.where}{pid}")
    if not all(s.running for s in statuses):
        raise typer.Exit(code=1)


@stack_app.command("env")
def stack_env_cmd() -> None:
    """Print `export FIXGATE_...` lines: eval "$(fixgate stack env)"."""
    for name, value in stack_env(Settings()).items():
        typer.echo(f"export {name}={shlex.quote(value)}")


# ---- schema --------------------------------------------------------------------------


@app.command()
def migrate() -> None:
    """Apply pending migrations (a no-op when up to date)."""
    settings = Settings()
    try:
        applied = apply_migrations(settings.database_url, settings.migrations_dir)
    except Exception as e:  # the driver's own message is the useful part
        raise _fail(f"migration failed: {e}") from None
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


# ---- device registry -----------------------------------------------------------------


async def _with_conn(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
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
    token: Annotated[str | None, typer.Option(help="Use this token instead of generating one.")] = None,
    owntracks: Annotated[
        str | None, typer.Option(help="OwnTracks identity <user>/<device> mapped to this device.")
    ] = None,
) -> None:
    """Register a device and print its token once (alone on the last line)."""
    try:
        issued = asyncio.run(
            _with_conn(
                registry.add_device, device_id, tenant_id=tenant, kind=kind, token=token, owntracks=owntracks
            )
        )
    except (registry.DeviceExists, registry.OwnTracksIdentityTaken, BadToken, ValueError) as e:
        raise _fail(str(e)) from None
    typer.echo(f"device {device_id} added to tenant {tenant}; its token (shown only now):")
    typer.echo(issued)


@device_app.command("list")
def device_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
    """List registered devices."""
    devices = asyncio.run(_with_conn(registry.list_devices, tenant))
    typer.echo(f"{'id':24} {'tenant':16} {'kind':12} {'enabled':8} owntracks")
    for d in devices:
        ot = f"{d.owntracks_user}/{d.owntracks_device}" if d.owntracks_user else "-"
        typer.echo(f"{d.id:24} {d.tenant_id:16} {d.kind:12} {'yes' if d.enabled else 'no':8} {ot}")


@device_app.command("disable")
def device_disable(device_id: str) -> None:
    """Disable a device: its fixes and logins are refused from now on."""
    if not asyncio.run(_with_conn(registry.set_enabled, device_id, False)):
        raise _fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} disabled")


@device_app.command("enable")
def device_enable(device_id: str) -> None:
    """Enable a disabled device again."""
    if not asyncio.run(_with_conn(registry.set_enabled, device_id, True)):
        raise _fail(f"no device {device_id!r}")
    typer.echo(f"device {device_id} enabled")


# ---- processes -----------------------------------------------------------------------


@app.command()
def gateway() -> None:
    """Run the listeners (MQTT, TCP NMEA), the ingest pipeline and the metrics endpoint."""
    from gateway.service import main as run

    run(Settings())


@app.command()
def api() -> None:
    """Run the dispatch API."""
    raise _fail("the dispatch API is not built yet (a later issue)")


@app.command()
def demo() -> None:
    """Run fixgate's main job: gateway and a simulated fleet against the stack."""
    raise _fail("the demo is not built yet (issue: ingest path)")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
