"""The Grafana dashboard against a real Prometheus (Debian's `prometheus`): it scrapes a
running gateway, engine and API of this test, the test causes the activity the panels
show (fixes over TCP, a ring, an accept, a connected WebSocket client, a short journey
that arrives: trip events and scored ETAs), and every panel's query must parse and return
data."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from api.principal import Role
from devices.tcp_nmea import login_sentence
from devtools.ws_client import ws_url_sync
from tests.support.api import SECRET, raw_token
from tests.support.broker import gateway_account
from tests.support.browser import api_process, free_port, wait_ready
from tests.support.gateway import running_gateway
from tests.support.ingest import register, rmc_gga
from tests.support.paths import FIXGATE_BIN, REPO_ROOT
from tests.support.services import Services

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "fixgate.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE_S = 1
"""Scrape every second, so a rate over the window below has several samples in seconds."""
RATE_WINDOW = "1m"
"""What the test puts for Grafana's `$__rate_interval`."""
SETTLE_S = 5 * SCRAPE_S
"""After the activity: enough scrapes for rates and increases to see it."""
READY_TIMEOUT_S = 30.0
ORIGIN = (43.7384, 7.4246)
FIXES = 20
JOURNEY_FIXES = 20
"""Fixes of each short journey to the customer (about 450 m, one a second of fix time)."""
JOURNEY_PAUSE_S = 0.25
"""Wall time between them: the journey spans several scrapes, so trip events have a rate."""


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


QUERIES = panel_queries()


@pytest.fixture(scope="module")
def database(services: Services, template_db: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield services.database_url(name)
    with psycopg.connect(services.admin_database_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _prometheus_config(path: Path, targets: dict[str, str]) -> None:
    jobs = [
        {"job_name": job, "static_configs": [{"targets": [target]}]}
        for job, target in targets.items()
    ]
    config = {"global": {"scrape_interval": f"{SCRAPE_S}s"}, "scrape_configs": jobs}
    path.write_text(json.dumps(config))  # JSON is YAML


def _wait(check: Any, what: str, timeout_s: float = READY_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (httpx.TransportError, ValueError):  # not up yet, or not yet answering JSON
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


def _rung(app: Any, request_id: str) -> None:
    """Read the technician's socket up to its ring for `request_id` (other events pass)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        message = json.loads(app.recv(timeout=READY_TIMEOUT_S))
        info = message.get("data", {}).get("serviceRequestInfo", {})
        if message["event"] == "ring_notification_received" and info.get("requestId") == request_id:
            return
    raise AssertionError(f"no ring for {request_id}")


def _journey(
    s: socket.socket, start: tuple[float, float], end: tuple[float, float], t0: datetime
) -> datetime:
    """The van drives from start to end, a fix a second of fix time, then stops there."""
    for i in range(1, JOURNEY_FIXES + 1):
        f = i / JOURNEY_FIXES
        at = (start[0] + (end[0] - start[0]) * f, start[1] + (end[1] - start[1]) * f)
        s.sendall(rmc_gga(t0 + timedelta(seconds=i), *at, knots=40.0, course=180.0))
        time.sleep(JOURNEY_PAUSE_S)
    for i in range(1, 3):
        s.sendall(rmc_gga(t0 + timedelta(seconds=JOURNEY_FIXES + i), *end, knots=0.0))
    return t0 + timedelta(seconds=JOURNEY_FIXES + 3)


def _activity(api: str, gateway_tcp_port: int, database: str) -> None:
    """What the panels show: fixes of a technician's van over TCP (ingest, latency, live
    position), a customer's request that rings the connected technician, an accept, and
    the journey: trip updates, the arrival and its scored ETAs (engine panels); twice."""
    admin = {"Authorization": f"Bearer {raw_token(Role.ADMIN, 'admin-1', 'acme')}"}

    def post(path: str, body: dict[str, Any], headers: dict[str, str] = admin) -> Any:
        response = httpx.post(f"{api}{path}", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    device_token = register(database, "van-prom", "acme", "service_van")
    technician = post(
        "/technicians",
        {"technicianCode": "T-1", "firstName": "Ana", "lastName": "Lima",
         "availabilityStatus": "Available", "deviceId": "van-prom"},
    )["id"]  # fmt: skip
    customer = post(
        "/customers", {"customerCode": "C-1", "firstName": "Jo", "lastName": "Doe", "email": "j@x.org"}
    )["id"]  # fmt: skip
    vehicle = post(f"/customers/{customer}/vehicles", {"vin": "WBADT43452G915187", "make": "BMW"})[
        "id"
    ]
    service = post(
        "/services",
        {"serviceCode": "S-1", "serviceName": "Battery", "servicePrice": 49.0, "durationMinutes": 30},
    )["id"]  # fmt: skip
    tech_token = raw_token(Role.TECHNICIAN, technician, "acme")
    with ws_connect(
        ws_url_sync(api, tech_token)
    ) as app:  # connected: the ring rings it; the clients gauge counts it
        assert json.loads(app.recv(timeout=10))["event"] == "welcome"
        t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=FIXES)
        lines = b"".join(
            rmc_gga(t0 + timedelta(seconds=i), ORIGIN[0] + 0.004 + i * 1e-5, ORIGIN[1])
            for i in range(FIXES)
        )
        with socket.create_connection(("127.0.0.1", gateway_tcp_port), timeout=10) as s:
            s.sendall(login_sentence("van-prom", device_token) + lines)

            def stored() -> bool:
                with psycopg.connect(database) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM positions WHERE device_id = 'van-prom'"
                    ).fetchone()
                    return row is not None and row[0] >= FIXES

            _wait(stored, "the van's fixes stored")
            customer_headers = {
                "Authorization": f"Bearer {raw_token(Role.CUSTOMER, customer, 'acme')}"
            }
            tech = {"Authorization": f"Bearer {tech_token}"}
            van_at = (ORIGIN[0] + 0.004 + (FIXES - 1) * 1e-5, ORIGIN[1])
            fix_time = t0 + timedelta(seconds=FIXES)
            # Two requests rung, accepted, driven to and served, scrapes apart: a histogram
            # series that first appears has no rate yet; the second round moves it.
            for k in range(2):
                # Each customer ~450 m from where the van is: ETAs in two distance bands.
                customer_at = (van_at[0] - 0.004, van_at[1])
                request = post(
                    "/service-request",
                    {"vehicleId": vehicle, "latitude": customer_at[0],
                     "longitude": customer_at[1], "location": f"Place du Casino {k}",
                     "services": [service]},
                    customer_headers,
                )["requestId"]  # fmt: skip
                _rung(app, request)
                put = f"{api}/service-request/{request}"
                accept = httpx.put(f"{put}/1", headers=tech)
                assert accept.status_code == 200, accept.text
                journey = httpx.post(f"{put}/start-journey", headers=tech)
                assert journey.status_code == 200, journey.text
                time.sleep(1.0)  # the engine learns of the trip (NOTIFY)
                fix_time = _journey(s, van_at, customer_at, fix_time)
                van_at = customer_at

                def arrived(request: str = request) -> bool:
                    got = httpx.get(f"{api}/service-request/{request}", headers=admin)
                    return got.json()["data"]["arrivedAt"] is not None

                _wait(arrived, "the technician's arrival")
                assert httpx.put(put, params={"workAction": 1}, headers=tech).status_code == 200
                done = httpx.put(
                    put,
                    params={"workAction": 2},
                    json={"mileage": 1, "evidences": ["e.jpg"], "completedServices": [service]},
                    headers=tech,
                )
                assert done.status_code == 200, done.text
                time.sleep(3 * SCRAPE_S)
        time.sleep(SETTLE_S)  # scraped while the technician is still connected


@pytest.fixture(scope="module")
def prometheus(
    services: Services, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    topic_prefix = f"t{uuid.uuid4().hex[:10]}/"
    with gateway_account(services.mqtt_url, topic_prefix) as gateway_url:
        env = {
            **__import__("os").environ,
            "FIXGATE_DATABASE_URL": database,
            "FIXGATE_REDIS_URL": services.redis_url,
            "FIXGATE_REDIS_PREFIX": prefix,
            "FIXGATE_MQTT_URL": gateway_url,
            "FIXGATE_MQTT_ADMIN_URL": "",
            "FIXGATE_MQTT_TOPIC_PREFIX": topic_prefix,
            "FIXGATE_MQTT_CLIENT_ID": f"fixgate-{uuid.uuid4().hex[:8]}",
            "FIXGATE_API_SECRET": SECRET,
        }
        yield from _with_processes(env, tmp, database)


def _with_processes(env: dict[str, str], tmp: Path, database: str) -> Iterator[str]:
    with running_gateway(env, tmp) as gateway, api_process(env) as api, _engine(env) as engine:
        targets = {
            "gateway": f"127.0.0.1:{gateway.metrics_port}",
            "api": api[len("http://") :],
            "engine": engine,
        }
        config = tmp / "prometheus.yml"
        _prometheus_config(config, targets)
        port = free_port()
        with tempfile.TemporaryDirectory(prefix="fixgate-prom-") as data:
            prom = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                cwd=tmp,
            )  # fmt: skip
            base = f"http://127.0.0.1:{port}"
            try:

                def all_up() -> bool:
                    found = httpx.get(f"{base}/api/v1/targets").json()["data"]["activeTargets"]
                    return len(found) == len(targets) and all(t["health"] == "up" for t in found)

                _wait(all_up, "Prometheus scraping every target")
                _activity(api, gateway.tcp_port, database)
                yield base
            finally:
                prom.terminate()
                prom.wait(timeout=15)


@contextlib.contextmanager
def _engine(env: dict[str, str]) -> Iterator[str]:
    """A `fixgate engine` (local ETAs: no routing URL) on a free port; its host:port."""
    port = free_port()
    engine_env = {**env, "FIXGATE_ENGINE_HOST": "127.0.0.1", "FIXGATE_ENGINE_PORT": str(port)}
    engine_env.pop("FIXGATE_ROUTING_URL", None)
    engine = subprocess.Popen([FIXGATE_BIN, "engine"], env=engine_env, cwd=REPO_ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", engine, "fixgate engine")
        yield f"127.0.0.1:{port}"
    finally:
        engine.terminate()
        try:
            engine.wait(timeout=15)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait(timeout=5)


def test_the_dashboard_is_provisioned_with_the_prometheus_datasource() -> None:
    import yaml

    datasources = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"]["uid"] in uids for p in panels)
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    mounts = " ".join(compose["grafana"]["volumes"] + compose["prometheus"]["volumes"])
    assert "./deploy/grafana/provisioning:" in mounts and "./deploy/grafana/dashboards:" in mounts
    assert "./deploy/prometheus.yml:" in mounts


@pytest.mark.parametrize(("panel", "expr"), QUERIES, ids=[name for name, _ in QUERIES])
def test_every_panels_query_parses_and_returns_data(prometheus: str, panel: str, expr: str) -> None:
    query = expr.replace("$__rate_interval", RATE_WINDOW)
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": query})
    assert response.status_code == 200, response.text  # a query that does not parse: 400
    body = response.json()
    assert body["status"] == "success", body
    values = [float(sample["value"][1]) for sample in body["data"]["result"]]
    assert any(math.isfinite(v) for v in values), f"{panel}: no data for {query}: {body['data']}"
