"""`fixgate demo`: the whole flow on the routing extract's roads.

The gateway, the position engine and the dispatch API run as child processes (each waited
for on its `/readyz`); a simulated fleet drives the extract's roads (trucks over NMEA and
Teltonika, technicians' phones over MQTT); the technicians are registered in the dispatch
API through its REST endpoints with an admin token, each with a WebSocket open as their
app would have (so the ring finds them connected); then a scripted scenario runs every
minute or so through the real API (`devtools.scenario`).

Order matters both ways: each process is ready before the next needs it, and on the way
out the fleet stops first (its connections close, so the gateway stores their last
fixes), then the API, the engine and the gateway get SIGTERM, in that order. Children run
in their own process groups, so a Ctrl-C in the terminal reaches only the demo, which
stops them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import asyncpg
import httpx

from api.passwords import generate_password, hash_password
from api.principal import Role
from api.settings import DEMO_API_SECRET, ApiSettings
from api.store import users
from devtools.demo_geofences import ensure_geofences, print_engine_events
from devtools.driving import RoadPlanner
from devtools.scenario import DispatchSetup, ScenarioOptions, run_scenarios, technician_apps
from devtools.simulate import Counters, FleetOptions, drive_fleet, prepare_fleet
from devtools.stack import stack_env
from devtools.stack.settings import StackSettings
from gateway.config import Settings, mqtt_address
from gateway.engine.settings import EngineSettings
from gateway.registry.broker import apply_gateway, broker_admin

READY_TIMEOUT_S: Final = 30.0
LOG_TAIL_CHARS: Final = 3000
"""FIXGATE_API_SECRET of the demo's API when none is set: 46 characters (the API wants 32
or more). Anyone who knows it can mint tokens, so it is for a demo on loopback only."""
ROAD_SAMPLE_ROUTES: Final = 80
"""Routes sampled to draw the extract's road network on the console's plain background
(without a tile server): enough to cover Monaco's main streets."""
STOP_ORDER: Final = ("api", "engine", "gateway")


class DemoError(Exception):
    """Why the demo cannot run (printed as is)."""


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


@dataclass(frozen=True)
class Child:
    name: str
    args: tuple[str, ...]
    ready_url: str
    log_path: Path


def _ports(
    settings: Settings, engine: EngineSettings, api: ApiSettings
) -> list[tuple[str, int, str]]:
    ports = [
        (settings.tcp_host, settings.tcp_port, "FIXGATE_TCP_PORT"),
        (settings.metrics_host, settings.metrics_port, "FIXGATE_METRICS_PORT"),
        (settings.teltonika_host, settings.teltonika_port, "FIXGATE_TELTONIKA_PORT"),
        (settings.gt06_host, settings.gt06_port, "FIXGATE_GT06_PORT"),
        (settings.osmand_host, settings.osmand_port, "FIXGATE_OSMAND_PORT"),
        (engine.engine_host, engine.engine_port, "FIXGATE_ENGINE_PORT"),
        (api.api_host, api.api_port, "FIXGATE_API_PORT"),
    ]
    return [p for p in ports if p[1] != 0]


def check_ports_free(settings: Settings, engine: EngineSettings, api: ApiSettings) -> None:
    """Fail early and clearly when another gateway, engine or API (or anything) holds a port."""
    for host, port, var in _ports(settings, engine, api):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise DemoError(
                    f"port {port} on {host} is in use ({e.strerror}); is fixgate already running? "
                    f"Pick another with {var}=..."
                ) from None


def _fixgate_command() -> list[str]:
    """The `fixgate` of this interpreter's environment (the venv need not be on PATH)."""
    script = Path(sys.executable).parent / "fixgate"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import app; app()"]


def _open_log(log_path: Path) -> BinaryIO:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return log_path.open("ab")


async def start_child(child: Child, env: dict[str, str]) -> asyncio.subprocess.Process:
    with _open_log(child.log_path) as log:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            *_fixgate_command(), *child.args,
            stdout=log, stderr=log, env=env,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the children in order
        )  # fmt: skip


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(
    proc: asyncio.subprocess.Process,
    child: Child,
    stop: asyncio.Event,
    timeout_s: float = READY_TIMEOUT_S,
) -> bool:
    """True once /readyz answers 200; False when stopped (Ctrl-C) first."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(_ready, child.ready_url):
        if proc.returncode is not None:
            raise DemoError(
                f"fixgate {child.name} exited with code {proc.returncode} before it was ready"
                f"\n--- its log ({child.log_path}) ---\n{_tail(child.log_path)}"
            )
        if time.monotonic() > deadline:
            raise DemoError(
                f"fixgate {child.name} was not ready after {timeout_s:.0f} s ({child.ready_url})"
                f"\n--- its log ({child.log_path}) ---\n{_tail(child.log_path)}"
            )
        if stop.is_set():
            return False
        await asyncio.sleep(0.2)
    return True


async def stop_child(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """SIGTERM by PID (it drains), SIGKILL if it overstays; its exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    code = proc.returncode if proc.returncode is not None else -1
    # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly (`fixgate api`).
    return 0 if code == -signal.SIGTERM else code


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    return ""


def _say(line: str) -> None:
    print(line, flush=True)


def demo_env(stack: StackSettings, roads_path: Path | None) -> dict[str, str]:
    """The children's environment: ours, with the demo's defaults where nothing is set
    (the API secret, OSRM from the stack, the road network drawing)."""
    env = dict(os.environ)
    env.setdefault("FIXGATE_API_SECRET", DEMO_API_SECRET)
    # Not the gateway's default client id: a broker drops one of two clients with the same
    # id, so a demo next to a running gateway would cut both off every half second (a
    # broker naming sessions after accounts: `demo_gateway_account`).
    env.setdefault("FIXGATE_MQTT_CLIENT_ID", DEMO_GATEWAY_ACCOUNT)
    env.setdefault("FIXGATE_ROUTING_URL", stack_env(stack)["FIXGATE_ROUTING_URL"])
    if roads_path is not None and "FIXGATE_MAP_TILES_URL" not in env:
        env.setdefault("FIXGATE_MAP_ROADS_PATH", str(roads_path))
    return env


async def demo_dispatcher(database_url: str, tenant: str) -> tuple[str, str]:
    """The demo's dispatcher who logs in at /login: (e-mail, a password new each run)."""
    email, password = f"dispatcher@{tenant}.example", generate_password()
    conn = await asyncpg.connect(database_url)
    try:
        if not await users.set_password(conn, email, hash_password(password)):
            await users.add(conn, tenant=tenant, role=Role.DISPATCHER, email=email,
                            password_hash=hash_password(password))  # fmt: skip
    finally:
        await conn.close()
    return email, password


DEMO_GATEWAY_ACCOUNT = "fixgate-demo-gateway"
"""The demo's gateway logs in to the broker under an account of its own: the broker names
a session after its account, so sharing the stack's with a gateway already running would
cut both off by turns."""


async def demo_gateway_account(settings: Settings) -> str:
    """The broker URL the demo's gateway uses: its own account (made anew with a fresh
    password) when the broker's admin account is known, else the configured one."""
    if not settings.mqtt_admin_url:
        return settings.mqtt_url
    password = secrets.token_urlsafe(32)
    async with broker_admin(settings.mqtt_admin_url, settings.mqtt_ca_file) as admin:
        await apply_gateway(admin, DEMO_GATEWAY_ACCOUNT, password, settings.mqtt_topic_prefix)
    host, port, _, _ = mqtt_address(settings.mqtt_url)
    scheme = settings.mqtt_url.split("://", 1)[0]
    return f"{scheme}://{DEMO_GATEWAY_ACCOUNT}:{password}@{host}:{port}"


async def road_network(
    planner: RoadPlanner, path: Path, count: int = ROAD_SAMPLE_ROUTES
) -> Path | None:
    """A GeoJSON drawing of the extract's roads for the console's plain background, from
    routes between random road points (kept in the stack directory and reused)."""
    if await asyncio.to_thread(path.exists):
        return path
    rng = random.Random(1)
    features = []
    for _ in range(count):
        start = await planner.road_point(rng)
        r = None if start is None else await planner.random_route(start, rng, (300.0, 6000.0))
        if r is None:
            continue
        coords = [[round(lon, 6), round(lat, 6)] for lat, lon in r.points]
        features.append(
            {
                "type": "Feature",
                "properties": {"highway": "residential"},
                "geometry": {"type": "LineString", "coordinates": coords},
            }
        )
    if not features:
        return None
    text = json.dumps({"type": "FeatureCollection", "features": features})

    def write() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    await asyncio.to_thread(write)
    return path


async def _watch(procs: dict[str, asyncio.subprocess.Process], stop: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(p.wait()) for p in procs.values()]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    stop.set()  # a child died under us: end the demo (and say so)


async def run_demo(
    settings: Settings,
    options: FleetOptions,
    duration_s: float | None,
    scenario: ScenarioOptions,
) -> int:
    """The whole demo; its exit code."""
    stack = StackSettings()
    engine_settings, api_settings = EngineSettings(), ApiSettings()
    check_ports_free(settings, engine_settings, api_settings)
    assert options.routing_url is not None
    async with httpx.AsyncClient() as client:
        planner = RoadPlanner(client, options.routing_url, options.area())
        roads = await road_network(
            planner, stack.stack_dir / f"demo-roads-{stack.routing_pbf}.geojson"
        )
    env = demo_env(stack, roads)
    env["FIXGATE_MQTT_URL"] = await demo_gateway_account(settings)
    api_port = api_settings.api_port
    # The technician app (/tech, the API's page) posts its fixes to the gateway's HTTP
    # listener: that listener answers the browser's preflight for the API's address.
    env.setdefault(
        "FIXGATE_HTTP_CORS_ORIGINS",
        f"http://{_connect_host(api_settings.api_host)}:{api_port},http://localhost:{api_port}",
    )
    secret = env["FIXGATE_API_SECRET"]
    devices, state = await prepare_fleet(settings, options)
    login = await demo_dispatcher(settings.database_url, options.tenant)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    api_base = f"http://{_connect_host(api_settings.api_host)}:{api_settings.api_port}"
    children = [
        Child("gateway", ("gateway",),
              f"http://{_connect_host(settings.metrics_host)}:{settings.metrics_port}/readyz",
              stack.stack_dir / "demo-gateway.log"),
        Child("engine", ("engine",),
              f"http://{_connect_host(engine_settings.engine_host)}:{engine_settings.engine_port}/readyz",
              stack.stack_dir / "demo-engine.log"),
        Child("api", ("api",), f"{api_base}/readyz", stack.stack_dir / "demo-api.log"),
    ]  # fmt: skip
    procs: dict[str, asyncio.subprocess.Process] = {}
    counters: Counters | None = None
    tasks: list[asyncio.Task[None]] = []
    died: list[str] = []
    try:
        for child in children:
            procs[child.name] = await start_child(child, env)
            if not await wait_ready(procs[child.name], child, stop):
                return 130
        tasks.append(asyncio.create_task(_watch(dict(procs), stop)))
        fleet = asyncio.create_task(
            drive_fleet(settings, options, devices, state, stop, duration_s, out=_say)
        )
        async with httpx.AsyncClient(base_url=api_base, timeout=10.0) as api:
            setup = await DispatchSetup.create(api, secret, options.tenant, devices, _say)
            fences = await ensure_geofences(api, setup.admin, options.area(), _say)
            tasks.append(
                asyncio.create_task(
                    print_engine_events(
                        settings.redis_url, settings.redis_prefix, fences, stop, _say
                    )
                )
            )
            tasks.append(asyncio.create_task(technician_apps(api_base, setup, stop)))
            _say(_banner(options, procs, duration_s, api_base, setup, scenario, children, login))
            tasks.append(
                asyncio.create_task(
                    run_scenarios(api, setup, planner_for(options), scenario, stop, _say)
                )
            )
            counters = await fleet
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        died = [name for name, p in procs.items() if p.returncode is not None]
        codes = {}
        for name in STOP_ORDER:
            if name in procs:
                codes[name] = await stop_child(procs[name], settings.shutdown_timeout_s + 5)
    if died:
        for name in died:
            log_path = next(c.log_path for c in children if c.name == name)
            _say(f"fixgate demo: fixgate {name} exited on its own; its log:\n{_tail(log_path)}")
        return 1
    if counters is not None:
        _say(
            "fixgate demo: stopped; exit codes "
            + ", ".join(f"{n} {c}" for n, c in codes.items())
            + f"; fixes sent {sum(counters.sent.values())}"
        )
    return 0 if all(c == 0 for c in codes.values()) else 1


def planner_for(options: FleetOptions) -> RoadPlanner:
    """The scenario's own planner (its own HTTP client, closed with the process)."""
    assert options.routing_url is not None
    return RoadPlanner(httpx.AsyncClient(), options.routing_url, options.area())


def _banner(
    options: FleetOptions, procs: dict[str, asyncio.subprocess.Process],
    duration_s: float | None, api_base: str, setup: DispatchSetup, scenario: ScenarioOptions,
    children: list[Child], login: tuple[str, str],
) -> str:  # fmt: skip
    until = "Ctrl-C stops it" if duration_s is None else f"it stops after {duration_s:g} s"
    pids = ", ".join(f"{name} pid {p.pid}" for name, p in procs.items())
    logs = "\n".join(f"  {c.name + ' log':12} {c.log_path}" for c in children)
    return (
        f"fixgate demo: {pids}; ready.\n"
        f"Fleet of tenant {options.tenant!r} on the roads around "
        f"{options.center[0]:.4f},{options.center[1]:.4f}: {options.trucks} trucks over NMEA, "
        f"{options.teltonika} Teltonika trucks, {options.phones} technicians' phones over MQTT "
        f"(registered as technicians, each with its app's WebSocket open); {until}.\n"
        f"A customer request every ~{scenario.every_s:g} s: ring, accept, journey, arrival, work, completion, feedback.\n"
        f"  console      {api_base}/console#token={setup.admin_token}\n"
        f"  log in       {api_base}/login as {login[0]}, password {login[1]} (a dispatcher)\n"
        f"{logs}" + (f"\n{setup.guest.banner()}" if setup.guest else "")
    )
