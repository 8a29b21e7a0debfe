"""`fixgate stack`: idempotent up, status, env, and a down that leaves nothing behind.

Runs a second native stack on its own ports (sharing the cached root file system), so
the stack the other tests use is never disturbed.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time

import pytest

from devtools.stack import docker_engine_answers
from devtools.stack.settings import StackSettings
from tests.support.paths import FIXGATE_BIN

pytestmark = pytest.mark.skipif(
    docker_engine_answers(), reason="with a Docker engine the stack is docker compose's"
)

_MAIN = StackSettings()
PORTS = {
    "FIXGATE_STACK_PG_PORT": _MAIN.stack_pg_port - 29990,
    "FIXGATE_STACK_REDIS_PORT": _MAIN.stack_redis_port - 29990,
    "FIXGATE_STACK_MQTT_PORT": _MAIN.stack_mqtt_port - 29990,
    "FIXGATE_STACK_OSRM_PORT": _MAIN.stack_osrm_port - 29990,
}
"""Below Linux's ephemeral range (32768-60999; 25442, 26389, 21893, 25010 by default): this
stack starts late in the run, when a client socket of an earlier test could hold a port in
that range as its local port (osrm-routed once failed to bind 55010: "Address already in
use"). Relative to the main stack's, so two checkouts with moved stacks can test at once."""


def stack(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIXGATE_STACK_MODE": "native", **{k: str(v) for k, v in PORTS.items()}}
    return subprocess.run(
        [FIXGATE_BIN, "stack", *args], env=env, capture_output=True, text=True, timeout=600
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_up_twice_then_down_leaves_no_process_of_ours() -> None:
    first = stack("up")
    if first.returncode != 0:
        stack("down")  # what it did start goes too
        pytest.fail(first.stderr)
    try:
        started = time.monotonic()
        second = stack("up")
        took = time.monotonic() - started
        assert second.returncode == 0, second.stderr
        assert took < 15, f"second `stack up` took {took:.1f} s"

        status = stack("status")
        assert status.returncode == 0, status.stdout
        pids = [int(line.split("pid")[1]) for line in status.stdout.splitlines()]
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)
        assert all(port_open(p) for p in PORTS.values())

        env = stack("env").stdout
        assert (
            f"export FIXGATE_DATABASE_URL=postgresql://postgres@127.0.0.1:{PORTS['FIXGATE_STACK_PG_PORT']}/fixgate"
            in env
        )
        assert f"FIXGATE_REDIS_URL=redis://127.0.0.1:{PORTS['FIXGATE_STACK_REDIS_PORT']}/0" in env
        mqtt_port = PORTS["FIXGATE_STACK_MQTT_PORT"]
        # The broker authenticates: the URLs carry the gateway's and the admin's accounts.
        assert re.search(
            rf"FIXGATE_MQTT_URL=mqtt://fixgate-gateway:[\w-]+@127\.0\.0\.1:{mqtt_port}\b", env
        )
        assert re.search(
            rf"FIXGATE_MQTT_ADMIN_URL=mqtt://fixgate-admin:[\w-]+@127\.0\.0\.1:{mqtt_port}\b", env
        )
        assert f"@localhost:{mqtt_port + 1}" in env and "FIXGATE_MQTT_CA_FILE=" in env
        assert f"FIXGATE_ROUTING_URL=http://127.0.0.1:{PORTS['FIXGATE_STACK_OSRM_PORT']}" in env
    finally:
        down = stack("down")
    assert down.returncode == 0, down.stderr
    for name in ("timescaledb", "redis", "mosquitto", "osrm"):
        assert name in down.stdout
    # Every PostgreSQL child goes with the postmaster.
    assert not any(pid_alive(p) for p in pids)
    assert not any(port_open(p) for p in PORTS.values())
    assert stack("status").returncode == 1
