"""The `fixgate` command (Typer): the stack, migrations, the device registry and the processes."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import asyncpg
import typer

from devices import registry
from devices.tokens import BadToken
from gateway.config import Settings
from gateway.engine.cli import engine as engine_command
from gateway.engine.cli import eta_app, geofence_app, trip_app
from gateway.migrate import migrate as apply_migrations
from gateway.stack import stack_env, use_docker
from gateway.stack.native import StackError

if TYPE_CHECKING:
    from gateway.simulate import FleetOptions

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The service stack: TimescaleDB, Redis, Mosquitto.")
device_app = typer.Typer(no_args_is_help=True, help="The device registry.")
app.add_typer(stack_app, name="stack")
app.add_typer(device_app, name="device")
app.add_typer(geofence_app, name="geofence")
app.add_typer(trip_app, name="trip")
app.add_typer(eta_app, name="eta")
app.command("engine")(engine_command)


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


def _fleet_options(
    trucks: int, phones: int, rate: float, tenant: str, center: str, radius_km: float, seed: int | None,
    state: Path | None,
) -> FleetOptions:
    """The simulator's options, checked; a usage error names the bad one."""
    from gateway.simulate import TENANT_PATTERN, FleetOptions, parse_center

    if not TENANT_PATTERN.fullmatch(tenant):
        raise typer.BadParameter("letters, digits, '_', '.', '-' only (at most 40)", param_hint="--tenant")
    try:
        where = parse_center(center)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--center") from None
    return FleetOptions(
        trucks=trucks, phones=phones, rate=rate, tenant=tenant, center=where, radius_km=radius_km,
        seed=seed, state_path=state,
    )  # fmt: skip


_DB_HINT = "is the stack up and migrated? (fixgate stack up && fixgate migrate)"
_TRUCKS = Annotated[int, typer.Option(min=0, max=999, help="Trucks sending NMEA over TCP.")]
_PHONES = Annotated[
    int, typer.Option(min=0, max=999, help="Phones over MQTT, split between OwnTracks and fixgate JSON.")
]
_RATE = Annotated[float, typer.Option(min=0.001, max=50.0, help="Fixes per second per device.")]
_DURATION = Annotated[
    float | None, typer.Option(min=0.0, help="Stop after this many seconds (default: run until Ctrl-C/SIGTERM).")
]


@app.command()
def simulate(
    trucks: _TRUCKS = 5,
    phones: _PHONES = 5,
    rate: _RATE = 1.0,
    duration: _DURATION = None,
    tenant: Annotated[str, typer.Option(help="Tenant the simulated devices belong to.")] = "demo",
    center: Annotated[str, typer.Option(help="LAT,LON the fleet drives around (Berlin by default).")] = "52.5200,13.4050",
    radius_km: Annotated[float, typer.Option(min=0.1, max=500.0, help="Radius of the area the fleet drives in.")] = 8.0,
    seed: Annotated[int | None, typer.Option(help="Seed for repeatable paths (default: random).")] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="File keeping the devices' tokens and last positions (default: simulator.json in FIXGATE_STACK_DIR)."),
    ] = None,
) -> None:
    """Simulated devices driving around: trucks over TCP NMEA, phones over MQTT; they register themselves."""
    from gateway.logs import setup_logging
    from gateway.simulate import FleetError
    from gateway.simulate import simulate as run

    options = _fleet_options(trucks, phones, rate, tenant, center, radius_km, seed, state)
    settings = Settings()
    setup_logging(settings.log_level)
    try:
        asyncio.run(run(settings, options, duration))
    except FleetError as e:
        raise _fail(str(e)) from None
    except (OSError, asyncpg.PostgresError) as e:
        raise _fail(f"cannot register the simulated devices: {e}; {_DB_HINT}") from None


@app.command()
def demo(
    trucks: _TRUCKS = 5,
    phones: _PHONES = 5,
    rate: _RATE = 1.0,
    duration: _DURATION = None,
) -> None:
    """Run fixgate's main job: the gateway fed by a simulated fleet, and where to look."""
    from gateway.demo import DemoError, run_demo
    from gateway.logs import setup_logging
    from gateway.simulate import FleetError

    options = _fleet_options(trucks, phones, rate, "demo", "52.5200,13.4050", 8.0, None, None)
    settings = Settings()
    setup_logging(settings.log_level)
    try:
        code = asyncio.run(run_demo(settings, options, duration))
    except (DemoError, FleetError) as e:
        raise _fail(str(e)) from None
    except (OSError, asyncpg.PostgresError) as e:
        raise _fail(f"cannot register the simulated devices: {e}; {_DB_HINT}") from None
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
