"""docker-compose.yml cannot run here (no Docker engine); keep it correct by structure."""

from __future__ import annotations

import yaml

from devtools.stack.native import REDIS_DURABLE, mosquitto_conf
from devtools.stack.osrm_extracts import EXTRACTS
from devtools.stack.settings import StackSettings
from gateway.config import STACK_MQTT_PORT, STACK_OSRM_PORT, STACK_PG_PORT, STACK_REDIS_PORT
from tests.support.paths import REPO_ROOT


def load() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_services_images_and_loopback_ports() -> None:
    services = load()["services"]
    expected = {"timescaledb", "redis", "mosquitto", "osrm", "gateway", "api", "migrate"}
    assert expected <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb-ha:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published)
    # The stack's host ports are the native stack's, so `fixgate stack env` fits both.
    assert (
        f"127.0.0.1:${{FIXGATE_STACK_PG_PORT:-{STACK_PG_PORT}}}:5432"
        in services["timescaledb"]["ports"]
    )
    assert (
        f"127.0.0.1:${{FIXGATE_STACK_REDIS_PORT:-{STACK_REDIS_PORT}}}:6379"
        in services["redis"]["ports"]
    )
    assert (
        f"127.0.0.1:${{FIXGATE_STACK_MQTT_PORT:-{STACK_MQTT_PORT}}}:1883"
        in services["mosquitto"]["ports"]
    )
    assert (
        f"127.0.0.1:${{FIXGATE_STACK_OSRM_PORT:-{STACK_OSRM_PORT}}}:5000"
        in services["osrm"]["ports"]
    )


def test_fixgate_services_build_here_and_wait_for_their_dependencies() -> None:
    services = load()["services"]
    for name in ("gateway", "api", "migrate"):
        svc = services[name]
        assert svc["build"] == "."
        assert svc["command"][0] == "fixgate"
        assert svc["environment"]["FIXGATE_DATABASE_URL"].startswith("postgresql://")
    assert (
        services["gateway"]["depends_on"]["migrate"]["condition"]
        == "service_completed_successfully"
    )
    assert services["migrate"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name in ("timescaledb", "redis", "mosquitto", "osrm"):
        assert services[name]["healthcheck"]["test"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for package in ("gateway", "devices", "ingest", "geofence", "api", "migrations"):
        assert f"COPY {package} {package}" in dockerfile
    assert "COPY devtools" not in dockerfile  # the product image holds no developer tooling
    assert "requirements.lock" in dockerfile


def test_volumes_are_declared() -> None:
    doc = load()
    used = {
        v.split(":")[0]
        for s in doc["services"].values()
        for v in s.get("volumes", [])
        if not v.startswith(".")
    }
    assert used <= set(doc["volumes"])


def test_mosquitto_conf_matches_the_native_stack() -> None:
    text = (REPO_ROOT / "deploy" / "mosquitto.conf").read_text()
    body = "".join(line + "\n" for line in text.splitlines() if not line.startswith("#"))
    assert body == mosquitto_conf(1883, None, 8883)


def test_the_broker_refuses_anonymous_clients_and_gets_the_stacks_accounts() -> None:
    services = load()["services"]
    conf = (REPO_ROOT / "deploy" / "mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf
    assert conf.count("use_username_as_clientid true") == 2  # both listeners
    assert "listener 8883" in conf and "certfile /mosquitto/data/server.crt" in conf
    init = services["mosquitto-init"]
    assert "./devtools/stack/broker_init.py:/broker_init.py:ro" in init["volumes"]
    assert "mosquitto:/mosquitto/data" in init["volumes"]
    assert services["mosquitto"]["depends_on"]["mosquitto-init"]["condition"] == (
        "service_completed_successfully"
    )
    # The gateway logs in with the account the init made, and may change device accounts.
    env = services["gateway"]["environment"]
    assert env["FIXGATE_MQTT_URL"].startswith(
        "mqtt://fixgate-gateway:${FIXGATE_MQTT_GATEWAY_PASSWORD"
    )
    assert env["FIXGATE_MQTT_ADMIN_URL"].startswith("mqtt://fixgate-admin:")


def test_the_gateway_spools_to_its_volume() -> None:
    gateway = load()["services"]["gateway"]
    mounted = {v.split(":")[1] for v in gateway["volumes"]}
    spool_dir = gateway["environment"]["FIXGATE_SPOOL_DIR"]
    assert any(spool_dir.startswith(m + "/") for m in mounted), (spool_dir, mounted)


def test_osrm_prepares_the_native_stacks_extract_for_mld() -> None:
    services = load()["services"]
    fetch, osrm = services["osrm-extract"], services["osrm"]
    # The same fetch script as the native stack's, and its default extract.
    assert "./devtools/stack/osrm_extracts.py:/osrm_extracts.py:ro" in fetch["volumes"]
    default = StackSettings.model_fields["routing_pbf"].default
    assert default in EXTRACTS
    assert f"${{FIXGATE_ROUTING_PBF:-{default}}}" in fetch["command"]
    assert osrm["environment"]["FIXGATE_ROUTING_PBF"] == f"${{FIXGATE_ROUTING_PBF:-{default}}}"
    assert osrm["image"].startswith("ghcr.io/project-osrm/osrm-backend:")
    assert osrm["depends_on"]["osrm-extract"]["condition"] == "service_completed_successfully"
    script = osrm["command"][0]
    for step in ("osrm-extract -p /opt/car.lua", "osrm-partition", "osrm-customize"):
        assert step in script
    assert "exec osrm-routed --algorithm mld -p 5000" in script
    # Prepared once: the steps run only when the dataset is missing.
    assert script.index(".osrm.mldgr") < script.index("osrm-extract")
    # The product's services reach it by its compose name.
    assert services["gateway"]["environment"]["FIXGATE_ROUTING_URL"] == "http://osrm:5000"


def test_redis_is_durable() -> None:
    """Redis keeps an append-only file fsynced every second on a volume, as the native
    stack does (devtools/stack/native.py REDIS_DURABLE)."""
    redis = load()["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[1:] == list(REDIS_DURABLE)
    assert any(v.endswith(":/data") for v in redis["volumes"])
