"""`fixgate demo`: the gateway (a child process) fed by a simulated fleet, and where to look.

Order matters both ways: the gateway must be ready before the fleet drives, and on the
way out the fleet stops first (its TCP connections close, so the gateway stores their
last epochs), then the gateway gets SIGTERM and drains. The gateway runs in its own
process group, so a Ctrl-C in the terminal reaches only the demo, which then stops the
gateway itself, in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import urlsplit

import asyncpg

from devtools.simulate import Counters, FleetOptions, SimDevice, drive_fleet, prepare_fleet
from devtools.stack.settings import StackSettings
from gateway.config import Settings

READY_TIMEOUT_S: Final = 30.0
LOG_TAIL_CHARS: Final = 3000


class DemoError(Exception):
    """Why the demo cannot run (printed as is)."""


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def check_ports_free(settings: Settings) -> None:
    """Fail early and clearly when another gateway (or anything) holds our ports."""
    for port, var in (
        (settings.tcp_port, "FIXGATE_TCP_PORT"),
        (settings.metrics_port, "FIXGATE_METRICS_PORT"),
    ):
        host = settings.tcp_host if var == "FIXGATE_TCP_PORT" else settings.metrics_host
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                raise DemoError(
                    f"port {port} on {host} is in use ({e.strerror}); is a gateway already running? "
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


async def start_gateway(log_path: Path) -> asyncio.subprocess.Process:
    with _open_log(log_path) as log:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            *_fixgate_command(), "gateway",
            stdout=log, stderr=log,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the gateway in order
        )  # fmt: skip


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(
    proc: asyncio.subprocess.Process,
    url: str,
    stop: asyncio.Event,
    timeout_s: float = READY_TIMEOUT_S,
) -> bool:
    """True once /readyz answers 200; False when stopped (Ctrl-C) first."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(_ready, url):
        if proc.returncode is not None:
            raise DemoError(f"the gateway exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise DemoError(f"the gateway was not ready after {timeout_s:.0f} s ({url})")
        if stop.is_set():
            return False
        await asyncio.sleep(0.2)
    return True


async def stop_gateway(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """SIGTERM by PID (the gateway drains), SIGKILL if it overstays; its exit code."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


def redis_cli(redis_url: str) -> str:
    """`redis-cli` with the connection options of `FIXGATE_REDIS_URL`."""
    parts = urlsplit(redis_url)
    args = ["redis-cli"]
    if parts.hostname and parts.hostname not in ("127.0.0.1", "localhost"):
        args += ["-h", parts.hostname]
    args += ["-p", str(parts.port or 6379)]
    db = parts.path.lstrip("/")
    if db and db != "0":
        args += ["-n", db]
    if parts.password:
        args += ["-a", parts.password]
    return shlex.join(args)


def where_to_look(
    settings: Settings, options: FleetOptions, devices: list[SimDevice], log_path: Path
) -> str:
    metrics = f"http://{_connect_host(settings.metrics_host)}:{settings.metrics_port}"
    query = (
        "SELECT time, device_id, protocol, round(lat::numeric, 5) AS lat, round(lon::numeric, 5) AS lon,"
        f" round(speed::numeric, 1) AS speed_mps FROM positions WHERE tenant_id = '{options.tenant}'"
        " ORDER BY time DESC LIMIT 10"
    )
    cli = redis_cli(settings.redis_url)
    prefix = settings.redis_prefix
    lat, lon = options.center
    radius = round(options.radius_km * 1.5)
    sample = next((d.id for d in devices), "sim-demo-truck-01")
    rows = [
        ("metrics", f"{metrics}/metrics   (health: {metrics}/readyz)"),
        ("", f"curl -s {metrics}/metrics | grep ^fixgate_fixes"),
        # Double quotes: the query holds single quotes, and no $, ` or " (the tenant is checked).
        ("history", f'psql {shlex.quote(settings.database_url)} -c "{query}"'),
        (
            "live, all",
            f"{cli} GEOSEARCH {prefix}live:{options.tenant} FROMLONLAT {lon} {lat} BYRADIUS {radius} km ASC WITHCOORD",
        ),
        ("live, one", f"{cli} HGETALL {prefix}device:{sample}"),
        ("gateway log", str(log_path)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:{width}}  {text}" for name, text in rows]
    return "\n".join(lines)


async def stored_since(database_url: str, tenant: str, since: datetime) -> int | None:
    """Positions stored for the tenant since `since` (None when the database is away)."""
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM positions WHERE tenant_id = $1 AND received_at >= $2",
                    tenant,
                    since,
                )
            )
        finally:
            await conn.close()
    return None


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    return ""


def _say(line: str) -> None:
    print(line, flush=True)


async def _watch_gateway(proc: asyncio.subprocess.Process, stop: asyncio.Event) -> None:
    await proc.wait()
    stop.set()  # the gateway died under us: end the demo (and say so)


async def run_demo(settings: Settings, options: FleetOptions, duration_s: float | None) -> int:
    """The whole demo; its exit code."""
    check_ports_free(settings)
    devices, state = await prepare_fleet(settings, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log_path = StackSettings().stack_dir / "demo-gateway.log"
    started = datetime.now(UTC)
    proc = await start_gateway(log_path)
    metrics = f"http://{_connect_host(settings.metrics_host)}:{settings.metrics_port}"
    counters: Counters | None = None
    watcher: asyncio.Task[None] | None = None
    try:
        if await wait_ready(proc, f"{metrics}/readyz", stop):
            watcher = asyncio.create_task(_watch_gateway(proc, stop))
            _say(_banner(settings, options, proc.pid, duration_s))
            _say(where_to_look(settings, options, devices, log_path))
            counters = await drive_fleet(
                settings, options, devices, state, stop, duration_s, out=_say
            )
    except DemoError as e:
        raise DemoError(f"{e}\n--- gateway log ({log_path}) ---\n{_tail(log_path)}") from None
    finally:
        if watcher is not None:
            watcher.cancel()
        died = proc.returncode  # set only if the gateway ended before we stopped it
        code = await stop_gateway(proc, settings.shutdown_timeout_s + 5)
    if died is not None:
        _say(
            f"fixgate demo: the gateway exited on its own (code {died}); its log:\n{_tail(log_path)}"
        )
        return 1
    if counters is not None:
        _report_end(
            counters, await stored_since(settings.database_url, options.tenant, started), code
        )
    return 0 if code == 0 else 1


def _banner(settings: Settings, options: FleetOptions, pid: int, duration_s: float | None) -> str:
    until = "Ctrl-C stops it" if duration_s is None else f"it stops after {duration_s:g} s"
    return (
        f"fixgate demo: gateway (pid {pid}) ready, TCP NMEA on {settings.tcp_host}:{settings.tcp_port}.\n"
        f"Simulated fleet of tenant {options.tenant!r} around {options.center[0]:.4f},{options.center[1]:.4f}:"
        f" {options.trucks} trucks over TCP NMEA, {options.phones} phones over MQTT (OwnTracks and fixgate"
        f" JSON), {options.rate:g} fix/s each; {until}.\nWhere to look:"
    )


def _report_end(counters: Counters, stored: int | None, gateway_code: int) -> None:
    sent = sum(counters.sent.values())
    stored_text = "unknown (database unreachable)" if stored is None else str(stored)
    _say(
        f"fixgate demo: stopped; gateway exit code {gateway_code}; fixes sent {sent}, positions stored {stored_text}"
    )
