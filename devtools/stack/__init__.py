"""The service stack (TimescaleDB with PostGIS, Redis, Mosquitto, OSRM) for development, demos and tests.

Two ways to run it, one interface: docker compose when a Docker engine answers, else the
native stack (Debian packages, and TimescaleDB from a Debian trixie root file system run
under chroot, as ../shared/STACK.md describes). Both listen on loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

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
        **broker_env(settings),
        "FIXGATE_ROUTING_URL": f"http://127.0.0.1:{settings.stack_osrm_port}",
    }


COMPOSE_MQTT_PASSWORDS = {
    "admin_password": "fixgate-compose-admin-change-me",
    "gateway_password": "fixgate-compose-gateway-change-me",
}
"""docker-compose.yml's defaults (FIXGATE_MQTT_ADMIN_PASSWORD, FIXGATE_MQTT_GATEWAY_PASSWORD):
its ports are on loopback only; set your own before publishing them."""


def broker_env(settings: StackSettings) -> dict[str, str]:
    """The broker's URLs with the gateway's and the registry's accounts, and the stack's CA.

    The native stack's accounts are in its broker folder (devtools/stack/broker_init.py);
    the compose stack's passwords are its environment's (or its defaults)."""
    import json

    from devtools.stack.broker_init import ADMIN_USER, GATEWAY_USER

    creds_file = settings.mqtt_dir / "credentials.json"
    if creds_file.exists():
        creds = json.loads(creds_file.read_text())
    else:
        creds = {
            key: os.environ.get(f"FIXGATE_MQTT_{key.upper()}", default)
            for key, default in COMPOSE_MQTT_PASSWORDS.items()
        }
    gateway = f"{GATEWAY_USER}:{quote(creds['gateway_password'], safe='')}"
    admin = f"{ADMIN_USER}:{quote(creds['admin_password'], safe='')}"
    host = "127.0.0.1"
    env = {
        "FIXGATE_MQTT_URL": f"mqtt://{gateway}@{host}:{settings.stack_mqtt_port}",
        "FIXGATE_MQTT_ADMIN_URL": f"mqtt://{admin}@{host}:{settings.stack_mqtt_port}",
        "FIXGATE_MQTT_TLS_URL": f"mqtts://{gateway}@localhost:{settings.mqtt_tls_port}",
    }
    ca = settings.mqtt_dir / "ca.crt"
    if ca.exists():
        env["FIXGATE_MQTT_CA_FILE"] = str(ca)
    return env
