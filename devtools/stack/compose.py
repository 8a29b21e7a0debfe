"""The stack through docker compose, for machines with a Docker engine.

docker-compose.yml publishes the services on the same loopback ports as the native
stack, so `fixgate stack env` prints the same URLs either way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from devtools.stack import ServiceStatus
from devtools.stack.native import StackError
from devtools.stack.osrm_extracts import EXTRACTS
from devtools.stack.settings import StackSettings

REPO_ROOT = Path(__file__).resolve().parents[2]

SERVICES = ("timescaledb", "redis", "mosquitto", "osrm")


class ComposeStack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.env = {
            **os.environ,
            "FIXGATE_STACK_PG_PORT": str(settings.stack_pg_port),
            "FIXGATE_STACK_REDIS_PORT": str(settings.stack_redis_port),
            "FIXGATE_STACK_MQTT_PORT": str(settings.stack_mqtt_port),
            "FIXGATE_STACK_OSRM_PORT": str(settings.stack_osrm_port),
            "FIXGATE_ROUTING_PBF": settings.routing_pbf,
        }

    def _compose(self, *args: str) -> str:
        cmd = ["docker", "compose", "-f", str(REPO_ROOT / "docker-compose.yml"), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{done.stderr}")
        return done.stdout

    def up(self, redis_cluster: bool = False) -> None:
        if redis_cluster:
            raise StackError(
                "--redis-cluster runs Debian's redis-server: use FIXGATE_STACK_MODE=native"
            )
        if self.settings.routing_pbf not in EXTRACTS:
            raise StackError(
                f"the compose stack routes on a named extract ({', '.join(EXTRACTS)}), not "
                f"FIXGATE_ROUTING_PBF={self.settings.routing_pbf!r}: use FIXGATE_STACK_MODE=native"
            )
        # The one-shot fetch first: `up --wait` would count its exit as a failure.
        self._compose("run", "--rm", "osrm-extract")
        self._compose("up", "-d", "--wait", *SERVICES)

    def down(self) -> list[str]:
        self._compose("stop", *SERVICES)
        return list(SERVICES)

    def status(self) -> list[ServiceStatus]:
        running = set(self._compose("ps", "--services", "--status", "running").split())
        ports = {
            "timescaledb": self.settings.stack_pg_port,
            "redis": self.settings.stack_redis_port,
            "mosquitto": self.settings.stack_mqtt_port,
            "osrm": self.settings.stack_osrm_port,
        }
        return [
            ServiceStatus(name, name in running, f"127.0.0.1:{ports[name]} (docker)")
            for name in SERVICES
        ]
