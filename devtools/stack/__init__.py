"""The service stack (TimescaleDB with PostGIS, Redis, Mosquitto, OSRM) for development, demos and tests.

Two ways to run it, one interface: docker compose when a Docker engine answers, else the
native stack (Debian packages, and TimescaleDB from a Debian trixie root file system run
under chroot, as ../shared/STACK.md describes). Both listen on loopback only.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devtools.stack.settings import StackSettings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    where: str
    pid: int | None = None


class Stack(Protocol):
    """The native stack and the compose stack, one interface."""

    def up(self, redis_cluster: bool = False) -> None: ...
    def down(self) -> list[str]: ...
    def status(self) -> list[ServiceStatus]: ...


def docker_engine_answers() -> bool:
    """True when `docker info` reaches an engine (the client alone is not enough)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def use_docker(settings: StackSettings) -> bool:
    if settings.stack_mode == "docker":
        return True
    if settings.stack_mode == "native":
        return False
    return docker_engine_answers()


CLUSTER_PORT_OFFSET = 10
"""The local Redis Cluster's first master listens this far above `stack_redis_port`."""


def cluster_marker(settings: StackSettings) -> Path:
    """Present while `fixgate stack up --redis-cluster`'s cluster is wanted."""
    first = settings.stack_redis_port + CLUSTER_PORT_OFFSET
    return settings.stack_dir / f"redis-cluster-{first}" / "cluster.on"


def stack_env(settings: StackSettings) -> dict[str, str]:
    """The URLs a shell needs to talk to the stack (same ports in both modes); Redis is the
    local cluster's first master once `stack up --redis-cluster` started it."""
    redis_port = settings.stack_redis_port
    if cluster_marker(settings).exists():
        redis_port += CLUSTER_PORT_OFFSET
    return {
        "FIXGATE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{settings.stack_pg_port}/fixgate",
        "FIXGATE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "FIXGATE_MQTT_URL": f"mqtt://127.0.0.1:{settings.stack_mqtt_port}",
        "FIXGATE_ROUTING_URL": f"http://127.0.0.1:{settings.stack_osrm_port}",
    }
