"""Run a real `fixgate gateway` process for a test, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import FIXGATE_BIN
from tests.support.ports import free_port


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    tcp_port: int
    metrics_port: int
    log_path: Path
    teltonika_port: int = 0
    gt06_port: int = 0
    osmand_port: int = 0

    def metrics_text(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series (0 when it has not appeared yet)."""
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            if _normalize(series) == want:
                return float(value)
        return 0.0

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2
            ) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _normalize(series: str) -> str:
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    labels = sorted(rest.rstrip("}").split(","))
    return name + "{" + ",".join(labels) + "}"


@contextlib.contextmanager
def running_gateway(
    env: dict[str, str], tmp_path: Path, **settings: str
) -> Iterator[GatewayProcess]:
    tcp_port, metrics_port = free_port(), free_port()
    # Each listener on a free port of its own: tests run gateways side by side. Teltonika's
    # UDP takes the same number as its TCP: free_port checks both.
    device_ports = {name: free_port() for name in ("teltonika_port", "gt06_port", "osmand_port")}
    full_env = {
        **env,
        "FIXGATE_TCP_PORT": str(tcp_port),
        "FIXGATE_METRICS_PORT": str(metrics_port),
        "FIXGATE_SPOOL_DIR": str(tmp_path / f"spool-{tcp_port}"),
        **{f"FIXGATE_{k.upper()}": str(v) for k, v in device_ports.items()},
        **{f"FIXGATE_{k.upper()}": v for k, v in settings.items()},
    }
    device_ports.update({k: int(v) for k, v in settings.items() if k in device_ports})
    log_path = tmp_path / f"gateway-{tcp_port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([FIXGATE_BIN, "gateway"], env=full_env, stdout=log, stderr=log)
    gw = GatewayProcess(proc, tcp_port, metrics_port, log_path, **device_ports)
    try:
        deadline = time.monotonic() + 30
        while not gw.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not become ready:\n{gw.log()}")
            time.sleep(0.1)
        yield gw
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_for(predicate, timeout_s: float = 15.0, interval_s: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
