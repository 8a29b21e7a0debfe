"""The developer commands of `fixgate`: the service stack, the simulated fleet, the demo.

Registered into the `fixgate` command through the `fixgate.commands` entry point group
(pyproject.toml), so gateway/ never imports devtools/.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import asyncpg
import typer

from devtools.stack import stack_env, use_docker
from devtools.stack.native import StackError
from devtools.stack.settings import StackSettings
from gateway.cli import DB_HINT, fail
from gateway.config import Settings

if TYPE_CHECKING:
    from devtools.simulate import FleetOptions
    from devtools.stack import Stack

stack_app = typer.Typer(
    no_args_is_help=True, help="The service stack: TimescaleDB, Redis, Mosquitto, OSRM."
)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
    app.command()(simulate)
    app.command()(demo)


def _stack(settings: StackSettings) -> Stack:
    if use_docker(settings):
        from devtools.stack.compose import ComposeStack

        return ComposeStack(settings)
    from devtools.stack.native import NativeStack

    return NativeStack(settings)


# ---- stack ---------------------------------------------------------------------------


@stack_app.command("up")
def stack_up(
    redis_cluster: Annotated[
        bool,
        typer.Option(
            "--redis-cluster",
            help="Also a local three-master Redis Cluster (ports FIXGATE_STACK_REDIS_PORT+10..12); `stack env` points at it until `stack down`.",
        ),
    ] = False,
) -> None:
    """Start TimescaleDB, Redis, Mosquitto and OSRM (idempotent: a second run changes nothing)."""
    settings = StackSettings()
    try:
        _stack(settings).up(redis_cluster=redis_cluster)
    except StackError as e:
        raise fail(str(e)) from None
    for status in _stack(settings).status():
        typer.echo(f"{status.name:12} {'up' if status.running else 'DOWN':5} {status.where}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop what `stack up` started, by PID."""
    try:
        stopped = _stack(StackSettings()).down()
    except StackError as e:
        raise fail(str(e)) from None
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Say what runs where; exit 1 when anything is down."""
    statuses = _stack(StackSettings()).status()
    for status in statuses:
        pid = f" pid {status.pid}" if status.pid else ""
        typer.echo(f"{status.name:12} {'up' if status.running else 'down':5} {status.where}{pid}")
    if not all(s.running for s in statuses):
        raise typer.Exit(code=1)


@stack_app.command("env")
def stack_env_cmd() -> None:
    """Print `export FIXGATE_...` lines: eval "$(fixgate stack env)"."""
    for name, value in stack_env(StackSettings()).items():
        typer.echo(f"export {name}={shlex.quote(value)}")


def quiet_http_clients() -> None:
    """httpx logs every request at INFO: hundreds of OSRM lookups a minute drown the summary."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def routing_url(roads: bool) -> str | None:
    """OSRM's URL when the fleet drives on roads: `FIXGATE_ROUTING_URL`, unless --no-roads."""
    from gateway.engine.settings import EngineSettings

    return EngineSettings().routing_url if roads else None


def _fleet_options(
    trucks: int,
    phones: int,
    rate: float,
    tenant: str,
    center: str | None,
    radius_km: float | None,
    seed: int | None,
    state: Path | None,
    *,
    teltonika: int = 0,
    trips: int = 0,
    routing: str | None = None,
    walkers: bool = True,
) -> FleetOptions:
    """The simulator's options, checked; a usage error names the bad one. The area
    defaults to the routing extract's when the fleet drives on roads, else Berlin."""
    from devtools.simulate import (
        DEFAULT_CENTER,
        DEFAULT_RADIUS_KM,
        TENANT_PATTERN,
        FleetOptions,
        parse_center,
    )
    from devtools.stack.osrm_extracts import EXTRACTS

    if not TENANT_PATTERN.fullmatch(tenant):
        raise typer.BadParameter(
            "letters, digits, '_', '.', '-' only (at most 40)", param_hint="--tenant"
        )
    if trips and routing is None:
        raise typer.BadParameter(
            'trips drive on roads: set FIXGATE_ROUTING_URL (eval "$(fixgate stack env)")',
            param_hint="--trips",
        )
    default_center, default_radius = DEFAULT_CENTER, DEFAULT_RADIUS_KM
    if routing is not None:
        extract = EXTRACTS.get(StackSettings().routing_pbf)
        if extract is None and center is None:
            raise typer.BadParameter(
                "the routing extract is your own file: say where its roads are",
                param_hint="--center",
            )
        if extract is not None:
            default_center, default_radius = extract.center, extract.radius_km
    try:
        where = parse_center(center) if center is not None else default_center
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--center") from None
    return FleetOptions(
        trucks=trucks, phones=phones, rate=rate, tenant=tenant, center=where,
        radius_km=radius_km if radius_km is not None else default_radius, seed=seed,
        state_path=state, teltonika=teltonika, trips=trips, routing_url=routing, walkers=walkers,
    )  # fmt: skip


_TRUCKS = Annotated[int, typer.Option(min=0, max=999, help="Trucks sending NMEA over TCP.")]
_PHONES = Annotated[
    int,
    typer.Option(
        min=0, max=999, help="Phones over MQTT, split between OwnTracks and fixgate JSON."
    ),
]
_TELTONIKA = Annotated[
    int, typer.Option(min=0, max=999, help="Teltonika trucks sending Codec 8E over TCP.")
]
_ROADS = Annotated[
    bool,
    typer.Option(
        help="Drive on OSRM's roads when FIXGATE_ROUTING_URL is set (--no-roads: great circles)."
    ),
]
_RATE = Annotated[float, typer.Option(min=0.001, max=50.0, help="Fixes per second per device.")]
_DURATION = Annotated[
    float | None,
    typer.Option(min=0.0, help="Stop after this many seconds (default: run until Ctrl-C/SIGTERM)."),
]


def simulate(
    trucks: _TRUCKS = 5,
    phones: _PHONES = 5,
    teltonika: _TELTONIKA = 0,
    rate: _RATE = 1.0,
    duration: _DURATION = None,
    trips: Annotated[
        int,
        typer.Option(
            min=0,
            max=100_000,
            help="Trips to drive (engine trips to random destinations, handed round the fleet); without --duration the run ends when they are driven.",
        ),
    ] = 0,
    roads: _ROADS = True,
    tenant: Annotated[str, typer.Option(help="Tenant the simulated devices belong to.")] = "demo",
    center: Annotated[
        str | None,
        typer.Option(
            help="LAT,LON the fleet drives around (default: the routing extract's middle on roads, else Berlin)."
        ),
    ] = None,
    radius_km: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            max=500.0,
            help="Radius of the area the fleet drives in (default: the extract's, else 8).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for repeatable paths (default: random).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            help="File keeping the devices' tokens and last positions (default: simulator.json in FIXGATE_STACK_DIR)."
        ),
    ] = None,
) -> None:
    """Simulated devices driving around: trucks over TCP NMEA and Teltonika, phones over MQTT; they register themselves."""
    from devtools.simulate import FleetError
    from devtools.simulate import simulate as run
    from gateway.logs import setup_logging

    options = _fleet_options(
        trucks, phones, rate, tenant, center, radius_km, seed, state,
        teltonika=teltonika, trips=trips, routing=routing_url(roads),
    )  # fmt: skip
    settings = Settings()
    setup_logging(settings.log_level)
    quiet_http_clients()
    try:
        asyncio.run(run(settings, options, duration))
    except FleetError as e:
        raise fail(str(e)) from None
    except (OSError, asyncpg.PostgresError) as e:
        raise fail(f"cannot register the simulated devices: {e}; {DB_HINT}") from None


def demo(
    trucks: _TRUCKS = 2,
    teltonika: _TELTONIKA = 2,
    technicians: Annotated[
        int,
        typer.Option(
            min=1,
            max=50,
            help="Technicians: phones over MQTT, registered in the dispatch API with their app's WebSocket open.",
        ),
    ] = 4,
    rate: _RATE = 1.0,
    duration: _DURATION = None,
    every_s: Annotated[
        float, typer.Option(min=10.0, help="A new customer request this often (seconds).")
    ] = 60.0,
    job_m: Annotated[
        float,
        typer.Option(
            min=100.0,
            max=10_000.0,
            help="Longest road distance from a technician to a customer, metres (the shortest is a third of it).",
        ),
    ] = 1500.0,
    work_s: Annotated[
        float, typer.Option(min=0.0, help="Seconds between start of work and completion.")
    ] = 15.0,
    tenant: Annotated[str, typer.Option(help="Tenant of the demo's fleet and dispatch.")] = "demo",
) -> None:
    """The whole flow: gateway, engine and dispatch API with a fleet on the extract's roads and a customer request every minute."""
    from devtools.demo import DemoError, run_demo
    from devtools.scenario import ScenarioError, ScenarioOptions
    from devtools.simulate import FleetError
    from devtools.stack import stack_env
    from gateway.logs import setup_logging

    routing = routing_url(True) or stack_env(StackSettings())["FIXGATE_ROUTING_URL"]
    options = _fleet_options(
        trucks, technicians, rate, tenant, None, None, None, None,
        teltonika=teltonika, routing=routing, walkers=False,
    )  # fmt: skip
    scenario = ScenarioOptions(every_s=every_s, job_m=(job_m / 3.0, job_m), work_s=work_s)
    settings = Settings()
    setup_logging(settings.log_level)
    quiet_http_clients()
    try:
        code = asyncio.run(run_demo(settings, options, duration, scenario))
    except (DemoError, FleetError, ScenarioError) as e:
        raise fail(str(e)) from None
    except (OSError, asyncpg.PostgresError) as e:
        raise fail(f"cannot register the simulated devices: {e}; {DB_HINT}") from None
    raise typer.Exit(code)
