"""Real services for the tests: where they come from (given URLs, testcontainers, or the
native stack) and how a test reaches them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools.stack import stack_env
from devtools.stack.settings import StackSettings


@dataclass(frozen=True)
class Services:
    admin_database_url: str  # a URL whose database is `postgres`, for CREATE DATABASE
    redis_url: str
    mqtt_url: str
    # OSRM on the stack's extract (`FIXGATE_ROUTING_PBF`); None: not given, so the
    # `routing_url` fixture starts the native stack's OSRM when a test asks for it.
    routing_url: str | None = None
    # The broker's dynamic-security admin (accounts for devices and gateways) and its TLS
    # listener with the CA that signed it.
    mqtt_admin_url: str | None = None
    mqtt_tls_url: str | None = None
    mqtt_ca_file: str | None = None

    def database_url(self, name: str) -> str:
        return self.admin_database_url.rsplit("/", 1)[0] + f"/{name}"


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def native_osrm() -> Iterator[str]:
    """The native stack's OSRM (it needs no Docker, only the unpacked wheel), started when
    it is not running and then stopped again at the end; its base URL."""
    from devtools.stack.native import _locked
    from devtools.stack.osrm import OsrmService

    settings = StackSettings()
    osrm = OsrmService(settings)
    # Under the stack's lock, like `stack up`: two runs must not prepare at once.
    with _locked(settings.stack_dir):
        was_running = osrm.pid() is not None
        osrm.start()
    try:
        yield stack_env(settings)["FIXGATE_ROUTING_URL"]
    finally:
        if not was_running:
            with _locked(settings.stack_dir):
                osrm.stop()


@contextlib.contextmanager
def from_testcontainers() -> Iterator[Services]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    from devtools.stack.broker_init import init_broker_dir
    from devtools.stack.native import mosquitto_conf

    conf = Path(os.environ.get("TMPDIR", "/tmp")) / f"fixgate-mosquitto-{os.getpid()}.conf"
    conf.write_text(mosquitto_conf(1883, None, 8883))
    # The same accounts and certificates as the stack's, made here and mounted.
    broker_dir = conf.with_suffix(".d")
    creds = init_broker_dir(broker_dir)
    broker_dir.chmod(0o777)
    for path in broker_dir.iterdir():
        path.chmod(0o666)  # the image's mosquitto user reads and saves them
    pg = PostgresContainer(
        "timescale/timescaledb-ha:pg17", username="postgres", password="postgres", dbname="postgres"
    )
    rd = RedisContainer("redis:7")
    mq = (
        DockerContainer("eclipse-mosquitto:2")
        .with_volume_mapping(str(conf), "/mosquitto/config/mosquitto.conf")
        .with_volume_mapping(str(broker_dir), "/mosquitto/data", "rw")
        .with_exposed_ports(1883, 8883)
    )
    with pg, rd, mq:
        wait_for_logs(mq, "running")
        host, port = mq.get_container_host_ip(), mq.get_exposed_port(1883)
        gateway = f"{creds['gateway_user']}:{creds['gateway_password']}"
        yield Services(
            admin_database_url=pg.get_connection_url(driver=None),
            redis_url=f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(6379)}/0",
            mqtt_url=f"mqtt://{gateway}@{host}:{port}",
            mqtt_admin_url=f"mqtt://{creds['admin_user']}:{creds['admin_password']}@{host}:{port}",
            mqtt_tls_url=f"mqtts://{gateway}@localhost:{mq.get_exposed_port(8883)}",
            mqtt_ca_file=str(broker_dir / "ca.crt"),
        )


@contextlib.contextmanager
def from_native_stack() -> Iterator[Services]:
    """The native stack; its local Redis Cluster instead of its Redis when
    `FIXGATE_TEST_REDIS_CLUSTER` is set (`./run test` runs a part of the suite so)."""
    from devtools.stack.native import NativeStack

    settings = StackSettings()
    stack = NativeStack(settings)
    cluster = bool(os.environ.get("FIXGATE_TEST_REDIS_CLUSTER"))
    was_running = all(s.running for s in stack.status()) and (stack.cluster_wanted() or not cluster)
    stack.up(redis_cluster=cluster)
    env = stack_env(settings)
    redis_port = stack.cluster_ports[0] if cluster else settings.stack_redis_port
    try:
        yield Services(
            admin_database_url=with_database(env["FIXGATE_DATABASE_URL"], "postgres"),
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
            mqtt_url=env["FIXGATE_MQTT_URL"],
            routing_url=env["FIXGATE_ROUTING_URL"],
            mqtt_admin_url=env["FIXGATE_MQTT_ADMIN_URL"],
            mqtt_tls_url=env["FIXGATE_MQTT_TLS_URL"],
            mqtt_ca_file=env.get("FIXGATE_MQTT_CA_FILE"),
        )
    finally:
        if not was_running:
            stack.down()
