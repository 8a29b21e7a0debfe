"""The native stack: TimescaleDB + PostGIS from a Debian trixie root (chroot), Redis and
Mosquitto from Debian packages, OSRM from the osrm-bindings wheel (devtools/stack/osrm.py),
each started as our own process on a loopback port.

Everything lives under `settings.stack_dir` (outside the clone, so repeated runs reuse
the ~1 GB root): `trixie-root/` (built once with debootstrap; PostgreSQL's data is inside
it under /data/pg), `redis/`, `mosquitto/`, `osrm/`. Processes are tracked by their pid
files and stopped by PID only.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from devtools.stack import CLUSTER_PORT_OFFSET, ServiceStatus, cluster_marker
from devtools.stack.broker_init import init_broker_dir
from devtools.stack.settings import StackSettings

TRIXIE_PACKAGES = ("postgresql-17", "postgresql-17-timescaledb", "postgresql-17-postgis-3")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PG_BIN = "/usr/lib/postgresql/17/bin"
# Host packages the native stack needs, by the command that proves each is there.
HOST_PACKAGES = {
    "debootstrap": "debootstrap",
    "redis-server": "redis-server",
    "mosquitto": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "psql": "postgresql-client",
    "openssl": "openssl",
}
REDIS_DURABLE = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
"""Redis holds what the engine has not read yet, its state and the events the API has not
fanned out: an append-only file fsynced every second, so a restart (even after kill -9)
loses at most the last second. No RDB snapshots: the AOF is the one copy."""
CLUSTER_MASTERS = 3
# A cold PostgreSQL start with timescaledb preloaded takes ~2 s here; crash recovery
# after a kill can take longer, so wait generously before calling it failed.
TIMEOUT_START_S = 90.0
TIMEOUT_STOP_S = 30.0


class StackError(RuntimeError):
    """The stack could not be brought up or down; the message says what to do."""


def _run(cmd: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise StackError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


@contextlib.contextmanager
def _locked(stack_dir: Path) -> Iterator[None]:
    """One `stack up`/`down` at a time per machine (tests in parallel sessions, CI...)."""
    stack_dir.mkdir(parents=True, exist_ok=True)
    with open(stack_dir / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _read_pid(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().split()[0]
        return int(first)
    except (OSError, ValueError, IndexError):
        return None


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _spawn(
    cmd: list[str],
    log: Path,
    port: int,
    what: str,
    on_spawn: Callable[[int], object] | None = None,
) -> None:
    """Start a server detached from us (own session, so it outlives this command), then
    wait for its port; fail at once with its log when it exits instead. `on_spawn` gets
    the PID at once (to record it for a server that writes no pid file of its own)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    if on_spawn is not None:
        on_spawn(proc.pid)

    def ready() -> bool:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise StackError(f"{what} exited with {proc.returncode}:\n{tail}")
        return _port_open(port)

    _wait(ready, TIMEOUT_START_S, f"{what} on 127.0.0.1:{port}")


def _stop_pid(pid: int | None, sig: signal.Signals, what: str) -> bool:
    """Signal one process by PID and wait for it to go; True when something was stopped."""
    if pid is None or not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    try:
        _wait(lambda: not _pid_alive(pid), TIMEOUT_STOP_S, f"{what} (pid {pid}) to stop")
    except StackError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _pid_alive(pid), 5, f"{what} (pid {pid}) to die")
    return True


class NativeStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.dir = settings.stack_dir
        self.root = self.dir / "trixie-root"
        # State is per port, so a second stack (a test's, say) can share the root.
        self.pg_data_in_root = f"/data/pg-{settings.stack_pg_port}"
        self.pg_data = self.root / self.pg_data_in_root.lstrip("/")
        self.redis_dir = self.dir / f"redis-{settings.stack_redis_port}"
        self.mqtt_dir = settings.mqtt_dir
        # Imported here: devtools.stack.osrm builds on this module's process helpers.
        from devtools.stack.osrm import OsrmService

        self.osrm = OsrmService(settings)

    # ---- host packages -------------------------------------------------------------

    def ensure_host_packages(self) -> None:
        missing = sorted({pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None})
        if not missing:
            return
        if os.geteuid() != 0:
            raise StackError(
                f"missing Debian packages: {' '.join(missing)}; run: sudo apt-get install -y {' '.join(missing)}"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], env=env)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)

    # ---- TimescaleDB ---------------------------------------------------------------

    def _root_ready(self) -> bool:
        return (self.root / ".fixgate-ready").exists()

    def build_root(self) -> None:
        """debootstrap a trixie root with PostgreSQL 17, TimescaleDB and PostGIS (~1 min, ~1 GB).

        Built beside its final place and renamed when complete, so an interrupted build is
        never mistaken for a finished one.
        """
        if self._root_ready():
            return
        building = self.dir / "trixie-root.building"
        if building.exists():
            shutil.rmtree(building)
        self.dir.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(TRIXIE_PACKAGES)}",
                "trixie",
                str(building),
                DEBIAN_MIRROR,
            ]
        )
        (building / ".fixgate-ready").write_text("trixie root for fixgate's TimescaleDB\n")
        if self.root.exists():
            shutil.rmtree(self.root)
        building.rename(self.root)

    def _chroot_postgres(self, command: str) -> subprocess.CompletedProcess[str]:
        return _run(["chroot", str(self.root), "su", "postgres", "-s", "/bin/sh", "-c", command])

    def _init_pg(self) -> None:
        if (self.pg_data / "PG_VERSION").exists():
            return
        for d in ("data", "run/postgresql"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        _run(["chroot", str(self.root), "chown", "postgres:postgres", "/data", "/run/postgresql"])
        self._chroot_postgres(
            f"{PG_BIN}/initdb -D {self.pg_data_in_root} -A trust -U postgres -E UTF8 --locale=C.UTF-8"
        )
        with open(self.pg_data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# fixgate native stack\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = '/run/postgresql'\n"
                "shared_preload_libraries = 'timescaledb'\n"
                # No internet here, and none of our business anyway.
                "timescaledb.telemetry_level = off\n"
                # /dev/shm may be missing inside the chroot; mmap works everywhere.
                "dynamic_shared_memory_type = mmap\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
                "timescaledb.max_background_workers = 4\n"
                "max_worker_processes = 16\n"
            )

    def pg_pid(self) -> int | None:
        pid = _read_pid(self.pg_data / "postmaster.pid")
        return pid if pid is not None and _pid_alive(pid) else None

    def start_pg(self) -> None:
        port = self.settings.stack_pg_port
        if self.pg_pid() is not None and _port_open(port):
            return
        self._init_pg()
        (self.root / "run/postgresql").mkdir(parents=True, exist_ok=True)
        _run(["chroot", str(self.root), "chown", "postgres:postgres", "/run/postgresql"])
        self._chroot_postgres(
            f"{PG_BIN}/pg_ctl -D {self.pg_data_in_root} -l {self.pg_data_in_root}.log -w -t {int(TIMEOUT_START_S)} "
            f"start -o '-p {port}'"
        )
        _wait(lambda: _port_open(port), TIMEOUT_START_S, f"TimescaleDB on 127.0.0.1:{port}")
        self._ensure_database()

    def _ensure_database(self) -> None:
        port = self.settings.stack_pg_port
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        exists = _run(
            ["psql", url, "-tAc", "SELECT 1 FROM pg_database WHERE datname = 'fixgate'"]
        ).stdout.strip()
        if exists != "1":
            _run(["psql", url, "-c", "CREATE DATABASE fixgate"])

    def stop_pg(self) -> bool:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        return _stop_pid(self.pg_pid(), signal.SIGINT, "TimescaleDB")

    # ---- Redis ---------------------------------------------------------------------

    def redis_pid(self) -> int | None:
        pid = _read_pid(self.redis_dir / "redis.pid")
        return pid if pid is not None and _pid_alive(pid) else None

    def start_redis(self) -> None:
        port = self.settings.stack_redis_port
        if self.redis_pid() is not None and _port_open(port):
            return
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            *REDIS_DURABLE,
            "--pidfile", str(self.redis_dir / "redis.pid"),
            "--dir", str(self.redis_dir),
        ]  # fmt: skip
        _spawn(cmd, self.redis_dir / "redis.log", port, "Redis")

    def stop_redis(self) -> bool:
        return _stop_pid(self.redis_pid(), signal.SIGTERM, "Redis")

    # ---- Redis Cluster (`fixgate stack up --redis-cluster`) ----------------------------

    @property
    def cluster_ports(self) -> list[int]:
        first = self.settings.stack_redis_port + CLUSTER_PORT_OFFSET
        return [first + n for n in range(CLUSTER_MASTERS)]

    @property
    def cluster_dir(self) -> Path:
        return self.dir / f"redis-cluster-{self.cluster_ports[0]}"

    def cluster_pids(self) -> list[int | None]:
        pids = [_read_pid(self.cluster_dir / f"{p}" / "redis.pid") for p in self.cluster_ports]
        return [pid if pid is not None and _pid_alive(pid) else None for pid in pids]

    def cluster_wanted(self) -> bool:
        """`up --redis-cluster` ran and `down` has not: `stack env` points at the cluster."""
        return cluster_marker(self.settings).exists()

    def start_redis_cluster(self) -> None:
        """Three masters (Debian's redis-server, cluster mode, AOF), joined once with
        `redis-cli --cluster create`; their nodes.conf keeps the cluster across restarts."""
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        for port, pid in zip(self.cluster_ports, self.cluster_pids(), strict=True):
            if pid is not None and _port_open(port):
                continue
            node = self.cluster_dir / f"{port}"
            node.mkdir(exist_ok=True)
            cmd = [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
                *REDIS_DURABLE,
                "--pidfile", str(node / "redis.pid"),
                "--dir", str(node),
            ]  # fmt: skip
            _spawn(cmd, node / "redis.log", port, f"Redis Cluster node {port}")
        first = self.cluster_ports[0]
        if "cluster_state:ok" not in self._redis_cli(first, "cluster", "info"):
            if self._redis_cli(first, "cluster", "info").count("cluster_known_nodes:1") == 1:
                _run(
                    ["redis-cli", "--cluster", "create",
                     *[f"127.0.0.1:{p}" for p in self.cluster_ports], "--cluster-yes"]
                )  # fmt: skip
            _wait(
                lambda: all(
                    "cluster_state:ok" in self._redis_cli(p, "cluster", "info")
                    for p in self.cluster_ports
                ),
                TIMEOUT_START_S,
                "Redis Cluster state ok",
            )
        cluster_marker(self.settings).write_text("fixgate stack up --redis-cluster\n")

    def _redis_cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=False
        )
        return done.stdout

    def stop_redis_cluster(self) -> bool:
        cluster_marker(self.settings).unlink(missing_ok=True)
        stopped = [
            _stop_pid(pid, signal.SIGTERM, "Redis Cluster node") for pid in self.cluster_pids()
        ]
        return any(stopped)

    # ---- Mosquitto -----------------------------------------------------------------

    def mosquitto_pid(self) -> int | None:
        pid = _read_pid(self.mqtt_dir / "mosquitto.pid")
        return pid if pid is not None and _pid_alive(pid) else None

    def write_mosquitto_conf(self) -> Path:
        self.mqtt_dir.mkdir(parents=True, exist_ok=True)
        conf = self.mqtt_dir / "mosquitto.conf"
        conf.write_text(
            mosquitto_conf(
                self.settings.stack_mqtt_port, self.mqtt_dir, self.settings.mqtt_tls_port
            )
        )
        return conf

    def start_mosquitto(self) -> None:
        port = self.settings.stack_mqtt_port
        init_broker_dir(self.mqtt_dir)
        conf = self.mqtt_dir / "mosquitto.conf"
        before = conf.read_text() if conf.exists() else None
        self.write_mosquitto_conf()
        if self.mosquitto_pid() is not None and _port_open(port):
            if conf.read_text() == before:
                return
            # Started with an older configuration (an open broker): restart it with ours.
            self.stop_mosquitto()
        _spawn(["mosquitto", "-c", str(conf)], self.mqtt_dir / "mosquitto.log", port, "Mosquitto")
        _wait(
            lambda: _port_open(self.settings.mqtt_tls_port),
            TIMEOUT_START_S,
            f"Mosquitto's TLS listener on 127.0.0.1:{self.settings.mqtt_tls_port}",
        )

    def stop_mosquitto(self) -> bool:
        return _stop_pid(self.mosquitto_pid(), signal.SIGTERM, "Mosquitto")

    # ---- the whole stack -----------------------------------------------------------

    def up(self, redis_cluster: bool = False) -> None:
        with _locked(self.dir):
            self.ensure_host_packages()
            self.build_root()
            self.start_pg()
            self.start_redis()
            if redis_cluster or self.cluster_wanted():
                self.start_redis_cluster()
            self.start_mosquitto()
            self.osrm.start()

    def down(self) -> list[str]:
        with _locked(self.dir):
            stopped = []
            for name, stop in (
                ("osrm", self.osrm.stop),
                ("mosquitto", self.stop_mosquitto),
                ("redis", self.stop_redis),
                ("redis-cluster", self.stop_redis_cluster),
                ("timescaledb", self.stop_pg),
            ):
                if stop():
                    stopped.append(name)
            return stopped

    def status(self) -> list[ServiceStatus]:
        s = self.settings
        return [
            ServiceStatus("timescaledb", self.pg_pid() is not None, f"127.0.0.1:{s.stack_pg_port}", self.pg_pid()),
            ServiceStatus("redis", self.redis_pid() is not None, f"127.0.0.1:{s.stack_redis_port}", self.redis_pid()),
            ServiceStatus("mosquitto", self.mosquitto_pid() is not None, f"127.0.0.1:{s.stack_mqtt_port}", self.mosquitto_pid()),
            ServiceStatus("osrm", self.osrm.pid() is not None, f"127.0.0.1:{s.stack_osrm_port}", self.osrm.pid()),
        ] + ([
            ServiceStatus("redis-cluster", all(self.cluster_pids()), ",".join(f"127.0.0.1:{p}" for p in self.cluster_ports), self.cluster_pids()[0]),
        ] if self.cluster_wanted() else [])  # fmt: skip


MAX_MQTT_PACKET_BYTES = 1024 * 1024 + 4096
"""The broker's bound on one MQTT packet: the largest payload the gateway takes (a fixgate
JSON batch, 1 MiB: devices.jsonfix.MAX_PAYLOAD_BYTES) and room for the topic and header.
A client sending more is disconnected by the broker; the message never reaches anyone."""
COMPOSE_DYNSEC_PLUGIN = "/usr/lib/mosquitto_dynamic_security.so"
"""Where the eclipse-mosquitto image keeps the plugin (Debian: /usr/lib/<triplet>/)."""


def dynsec_plugin() -> str:
    """The dynamic-security plugin of Debian's mosquitto package."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    if not found:
        raise StackError(
            "mosquitto_dynamic_security.so not found under /usr/lib (Debian's mosquitto ships it)"
        )
    return str(found[0])


def mosquitto_conf(port: int, state_dir: Path | None, tls_port: int | None = None) -> str:
    """Mosquitto's configuration, shared by the native stack and docker-compose's file.

    fixgate's gateway holds a persistent session with QoS 1: the broker must keep every
    message queued for it while it is away or slow. Mosquitto drops past
    `max_queued_messages` (default 1000), so the queue is unbounded by count and bounded
    by bytes instead, generously, and `persistence` keeps it across broker restarts.

    Every client logs in (docs/security.md): the dynamic-security plugin holds the
    accounts and their ACLs (devtools/stack/broker_init.py makes the first two, the
    registry adds the devices), and the client id is the account's name, so nobody can
    take another's session. A second listener speaks TLS with the stack's own CA.
    """
    data = f"{state_dir}/" if state_dir is not None else "/mosquitto/data/"
    lines = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {dynsec_plugin() if state_dir is not None else COMPOSE_DYNSEC_PLUGIN}",
        f"plugin_opt_config_file {data}dynamic-security.json",
        f"max_packet_size {MAX_MQTT_PACKET_BYTES}",
        "persistence true",
        "max_queued_messages 0",
        "max_queued_bytes 0",
        # The gateway acknowledges only after a fix is durable, so acks lag by a batch;
        # this window must cover ~1 s of the target rate, and bounds what one client
        # holds in memory (MQTT 5 clients may lower it with Receive Maximum).
        "max_inflight_messages 20000",
        "persistent_client_expiration 7d",
        "autosave_interval 30",
        "set_tcp_nodelay true",
    ]
    if state_dir is not None:
        lines += [
            # Run as whoever started it: as root, Mosquitto would otherwise switch to the
            # `mosquitto` user, who cannot write into our state folder.
            f"user {getpass.getuser()}",
            f"persistence_location {data}",
            f"pid_file {data}mosquitto.pid",
            "log_dest stdout",
        ]
    else:
        lines += [f"persistence_location {data}", "log_dest stdout"]
    bind = " 127.0.0.1" if state_dir is not None else ""
    # A listener's own settings follow its line (use_username_as_clientid is one).
    lines += [f"listener {port}{bind}", "use_username_as_clientid true"]
    if tls_port is not None:
        lines += [
            f"listener {tls_port}{bind}",
            "use_username_as_clientid true",
            f"certfile {data}server.crt",
            f"keyfile {data}server.key",
        ]
    return "\n".join(lines) + "\n"
