"""bench/ingest: how fast does a fixgate gateway store fixes, and does it lose any?

    eval "$(fixgate stack env)"; python bench/ingest.py [--mode mqtt|mqtt-batch|tcp|all] [--fixes N]

Runs against the stack's real Mosquitto, TimescaleDB and Redis on this machine, in a
fresh database of its own (dropped afterwards unless --keep). It starts its own gateway
process (so it can read its peak RSS) and prints, per mode:

- mqtt: QoS 1, one fix per message. The broker is loaded first, with the gateway's
  persistent session offline, then the gateway is started and drains the queue; the
  same load is drained by a bare paho-mqtt subscriber (receive and count, nothing else)
  first, so both rates come from the same broker, messages and machine, and are
  compared as a ratio. Preloading keeps the publishers' CPU out of both measurements.
- mqtt-batch: the same with 100 fixes per message.
- tcp: 1,000 connections streaming RMC+GGA epochs as fast as the gateway reads them
  (a separate loader process).

Figures: sustained fixes/s stored in TimescaleDB (from the gateway's counter, scraped
every second, over the whole drain), live updates/s to Redis, p50/p99 receive-to-stored
(from the gateway's histogram), peak RSS, and lost/duplicated fixes checked in the
database against what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho
import psycopg
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devices.fix import Fix, Protocol  # noqa: E402
from devices.jsonfix import encode_json_fixes  # noqa: E402
from devices.nmea_write import rmc_gga  # noqa: E402
from devices.registry import add_device  # noqa: E402
from devices.tcp_nmea import login_sentence  # noqa: E402
from gateway.config import Settings, mqtt_address  # noqa: E402
from gateway.migrate import migrate  # noqa: E402

FIXGATE = str(Path(sys.executable).parent / "fixgate")
TOPIC_PREFIX = "bench/"
MAX_UNACKED_PUBLISHES = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- metrics scraping --------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def quantile(before: dict[str, float], after: dict[str, float], name: str, q: float) -> float:
    """A quantile from a Prometheus histogram's bucket deltas (linear within a bucket)."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{le="):
            le = key.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1]
    if total <= 0:
        return float("nan")
    rank, lower, seen = q * total, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            in_bucket = cumulative - seen
            return lower + (upper - lower) * ((rank - seen) / in_bucket if in_bucket else 1.0)
        lower, seen = upper, cumulative
    return lower


# ---- the gateway under test ----------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    tcp_port: int
    started_at: float

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)


def start_gateway(env: dict[str, str], log: Path, tcp_port: int, metrics_port: int) -> Gateway:
    full = {**env, "FIXGATE_TCP_PORT": str(tcp_port), "FIXGATE_METRICS_PORT": str(metrics_port)}
    with open(log, "ab") as out:
        proc = subprocess.Popen([FIXGATE, "gateway"], env=full, stdout=out, stderr=out)
    # The clock starts when the process does: /readyz says "not ready" while the ingest
    # queue is full, which a gateway draining a backlog may be from its first second.
    gw = Gateway(proc, metrics_port, tcp_port, time.monotonic())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port}/healthz", timeout=2
        ) as r:
            if r.status == 200:
                return gw
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"gateway did not become ready; see {log}")


# ---- load ------------------------------------------------------------------------------


def fixes_for(device: str, n: int, t0: datetime, per_message: int) -> list[bytes]:
    payloads = []
    for start in range(0, n, per_message):
        batch = [
            Fix(device_id=device, tenant_id="bench", time=t0 + timedelta(seconds=i), lat=48.0 + i * 1e-6,
                lon=11.0 + (hash(device) % 1000) * 1e-4, speed=10.0, heading=90.0, protocol=Protocol.JSON)
            for i in range(start, min(n, start + per_message))
        ]  # fmt: skip
        payload = encode_json_fixes(batch)
        payloads.append(payload[1:-1] if per_message == 1 else payload)  # a lone object, not [obj]
    return payloads


def publish_worker(mqtt_url: str, jobs: list[tuple[str, int, int]], per_message: int, t0: float, done: mp.Queue) -> None:
    """Publish (device, n, _) jobs at QoS 1 and wait for every PUBACK from the broker."""
    host, port, _, _ = mqtt_address(mqtt_url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = 0
    all_acked = threading.Event()
    sent = -1

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == sent:
            all_acked.set()

    client.on_publish = on_publish
    client.connect(host, port)
    client.loop_start()
    payloads = [
        (device, payload)
        for device, n, _ in jobs
        for payload in fixes_for(device, n, datetime.fromtimestamp(t0, UTC), per_message)
    ]
    sent = len(payloads)
    for i, (device, payload) in enumerate(payloads):
        # paho gives each unacknowledged message one of 65,535 ids: stay well below.
        while i - acked > MAX_UNACKED_PUBLISHES:
            time.sleep(0.001)
        client.publish(f"{TOPIC_PREFIX}fixgate/bench/{device}/fix", payload, qos=1)
    if acked < sent:
        all_acked.wait(900)
    client.loop_stop()
    client.disconnect()
    done.put(sent)


def preload(mqtt_url: str, devices: list[str], per_device: int, per_message: int, t0: float, workers: int = 2) -> int:
    jobs = [(d, per_device, 0) for d in devices]
    done: mp.Queue = mp.Queue()
    procs = [
        mp.Process(target=publish_worker, args=(mqtt_url, jobs[i::workers], per_message, t0, done)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    sent = sum(done.get() for _ in procs)
    for p in procs:
        p.join()
    return sent


def ensure_session(mqtt_url: str, client_id: str) -> None:
    """Create the persistent session (subscribed, QoS 1) that the broker queues for."""
    host, port, _, _ = mqtt_address(mqtt_url)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect(host, port)
    c.loop_start()
    c.subscribe(f"{TOPIC_PREFIX}fixgate/+/+/fix", qos=1)
    subscribed.wait(10)
    c.loop_stop()
    c.disconnect()


def drop_session(mqtt_url: str, client_id: str) -> None:
    """Connecting with a clean session makes the broker forget the queued one."""
    host, port, _, _ = mqtt_address(mqtt_url)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    c.connect(host, port)
    c.loop_start()
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


def bare_paho_drain(mqtt_url: str, client_id: str, expected: int) -> float:
    """Messages/s a bare paho QoS 1 subscriber drains from its queued persistent session."""
    host, port, _, _ = mqtt_address(mqtt_url)
    count = 0
    first = last = 0.0
    finished = threading.Event()

    def on_message(_c: object, _u: object, _m: object) -> None:
        nonlocal count, first, last
        count += 1
        last = time.perf_counter()
        if count == 1:
            first = last
        if count >= expected:
            finished.set()

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    finished.wait(900)
    c.loop_stop()
    c.disconnect()
    return (count - 1) / (last - first) if count > 1 else float("nan")


# ---- one run ---------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    sent_fixes: int
    stored_rate: float
    live_rate: float
    p50: float
    p99: float
    peak_rss_mib: float
    lost: int
    duplicated: int
    seconds: float
    extra: str = ""


def watch_drain(gw: Gateway, expected: int, timeout_s: float) -> tuple[float, dict[str, float], dict[str, float]]:
    """Scrape until `expected` fixes are stored; return (seconds from the gateway's start
    to the last fix stored, before, after).
    The gateway is fresh, so its counters start at zero."""
    started = gw.started_at
    deadline = time.monotonic() + timeout_s
    last_value, last_change = 0.0, time.monotonic()
    while time.monotonic() < deadline:
        now_metrics = scrape(gw.metrics_port)
        stored = now_metrics.get("fixgate_fixes_stored_total", 0.0)
        now = time.monotonic()
        if stored != last_value:
            last_value, last_change = stored, now
        if stored >= expected:
            return now - started, {}, now_metrics
        if now - last_change > 30:
            break  # stalled
        time.sleep(0.1)
    return float("nan"), {}, scrape(gw.metrics_port)


def check_db(db_url: str, sent: int) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM positions").fetchone()[0]  # type: ignore[index]
        distinct = conn.execute("SELECT count(*) FROM (SELECT DISTINCT device_id, time FROM positions) d").fetchone()[0]  # type: ignore[index]
    return sent - distinct, rows - distinct


def run_mqtt(args: argparse.Namespace, env: dict[str, str], db_url: str, devices: list[str], per_message: int, label: str) -> Result:
    mqtt_url = Settings().mqtt_url
    per_device = args.fixes // len(devices)
    sent_fixes = per_device * len(devices)
    messages = sent_fixes // per_message
    t0 = time.time() - 86400 * 10  # ten days back: stays within retention, never "future"

    # 1. the bare paho baseline, on the same queued load
    bare_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
    ensure_session(mqtt_url, bare_id)
    started = time.monotonic()
    preload(mqtt_url, devices, per_device, per_message, t0)
    print(f"  [{label}] preloaded {messages} messages for the bare subscriber in {time.monotonic() - started:.1f} s", flush=True)
    bare_rate = bare_paho_drain(mqtt_url, bare_id, messages)
    print(f"  [{label}] bare paho QoS 1 subscriber drained {bare_rate:,.0f} msg/s", flush=True)

    # 2. the gateway, on the same load
    gw_id = f"bench-gw-{uuid.uuid4().hex[:6]}"
    env = {**env, "FIXGATE_MQTT_CLIENT_ID": gw_id}
    log = Path(args.log_dir) / f"gateway-{label}.log"
    tcp_port, metrics_port = free_port(), free_port()
    ensure_session(mqtt_url, gw_id)  # the gateway's persistent session, queued for
    preload(mqtt_url, devices, per_device, per_message, t0)
    gw = start_gateway(env, log, tcp_port, metrics_port)
    try:
        seconds, before, after = watch_drain(gw, sent_fixes, args.timeout)
        rss = gw.peak_rss_mib()
    finally:
        gw.stop()
        for client_id in (bare_id, gw_id):
            drop_session(mqtt_url, client_id)
    lost, dup = check_db(db_url, sent_fixes)
    stored = after.get("fixgate_fixes_stored_total", 0) - before.get("fixgate_fixes_stored_total", 0)
    live = after.get("fixgate_live_updates_total", 0) - before.get("fixgate_live_updates_total", 0)
    rate = stored / seconds if seconds else float("nan")
    extra = ""
    if per_message == 1:
        extra = f"bare paho {bare_rate:,.0f} msg/s; ratio {rate / bare_rate:.2f}"
    else:
        extra = f"bare paho {bare_rate:,.0f} msg/s = {bare_rate * per_message:,.0f} fixes/s"
    return Result(
        label, sent_fixes, rate, live / seconds if seconds else float("nan"),
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.5),
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.99),
        rss, lost, dup, seconds, extra,
    )  # fmt: skip


def tcp_loader(port: int, jobs: list[tuple[str, str, int]], t0: float, ready: mp.Event, go: mp.Event, done: mp.Queue) -> None:
    """One process: a connection per device, each streaming its epochs as fast as it may."""

    async def one(device: str, token: str, n: int) -> int:
        start = datetime.fromtimestamp(t0, UTC)
        lat = 48.0 + (hash(device) % 1000) * 1e-3
        payload = login_sentence(device, token) + b"".join(
            rmc_gga(start + timedelta(seconds=i), lat + i * 1e-6, 11.0) for i in range(n)
        )
        return payload  # type: ignore[return-value]

    async def main() -> None:
        payloads = [await one(d, tok, n) for d, tok, n in jobs]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in jobs]
        ready.set()
        await asyncio.to_thread(go.wait)

        async def send(i: int) -> None:
            _, writer = conns[i]
            data = payloads[i]
            for k in range(0, len(data), 8192):
                writer.write(data[k : k + 8192])
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(send(i) for i in range(len(jobs))))
        done.put(sum(n for *_, n in jobs))

    asyncio.run(main())


def run_tcp(args: argparse.Namespace, env: dict[str, str], db_url: str, tokens: dict[str, str]) -> Result:
    devices = list(tokens)
    per_device = args.fixes // len(devices)
    sent = per_device * len(devices)
    t0 = time.time() - 86400 * 20
    log = Path(args.log_dir) / "gateway-tcp.log"
    gw = start_gateway(env, log, free_port(), free_port())
    try:
        ready, go, done = mp.Event(), mp.Event(), mp.Queue()
        jobs = [(d, tokens[d], per_device) for d in devices]
        loader = mp.Process(target=tcp_loader, args=(gw.tcp_port, jobs, t0, ready, go, done))
        loader.start()
        ready.wait(600)
        go.set()
        seconds, before, after = watch_drain(gw, sent, args.timeout)
        rss = gw.peak_rss_mib()
        done.get(timeout=60)
        loader.join()
    finally:
        gw.stop()
    lost, dup = check_db(db_url, sent)
    stored = after.get("fixgate_fixes_stored_total", 0) - before.get("fixgate_fixes_stored_total", 0)
    live = after.get("fixgate_live_updates_total", 0) - before.get("fixgate_live_updates_total", 0)
    return Result(
        "tcp", sent, stored / seconds if seconds else float("nan"), live / seconds if seconds else float("nan"),
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.5),
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.99),
        rss, lost, dup, seconds, f"{len(devices)} connections",
    )  # fmt: skip


# ---- setup ---------------------------------------------------------------------------------


def make_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url, Settings().migrations_dir)
    return url


def register_all(db_url: str, devices: list[str]) -> dict[str, str]:
    async def go() -> dict[str, str]:
        conn = await asyncpg.connect(db_url)
        try:
            return {d: await add_device(conn, d, tenant_id="bench", kind="tracker") for d in devices}
        finally:
            await conn.close()

    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["mqtt", "mqtt-batch", "tcp", "all"], default="all")
    parser.add_argument("--fixes", type=int, default=1_000_000, help="fixes per mode (tcp: spread over --connections)")
    parser.add_argument("--devices", type=int, default=1000, help="MQTT devices")
    parser.add_argument("--connections", type=int, default=1000, help="TCP connections (one device each)")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    settings = Settings()
    admin = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_{uuid.uuid4().hex[:8]}"
    db_url = make_database(admin, name)
    env = {
        **os.environ,
        "FIXGATE_DATABASE_URL": db_url,
        "FIXGATE_REDIS_PREFIX": f"{name}:",
        "FIXGATE_MQTT_TOPIC_PREFIX": TOPIC_PREFIX,
        "FIXGATE_RETENTION_DAYS": "3650",
        "FIXGATE_LOG_LEVEL": "WARNING",
    }
    results: list[Result] = []
    try:
        modes = ["mqtt", "mqtt-batch", "tcp"] if args.mode == "all" else [args.mode]
        mqtt_devices = [f"m{i:05d}" for i in range(args.devices)]
        tcp_devices = [f"t{i:05d}" for i in range(args.connections)]
        tokens = register_all(db_url, mqtt_devices + (tcp_devices if "tcp" in modes else []))
        for mode in modes:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("TRUNCATE positions")
            print(f"== {mode}: {args.fixes:,} fixes", flush=True)
            if mode == "mqtt":
                results.append(run_mqtt(args, env, db_url, mqtt_devices, 1, "mqtt"))
            elif mode == "mqtt-batch":
                results.append(run_mqtt(args, env, db_url, mqtt_devices, 100, "mqtt-batch"))
            else:
                results.append(run_tcp(args, env, db_url, {d: tokens[d] for d in tcp_devices}))
            r = results[-1]
            print(
                f"  stored {r.stored_rate:,.0f} fixes/s over {r.seconds:.1f} s; live {r.live_rate:,.0f}/s; "
                f"receive-to-stored p50 {r.p50 * 1000:.0f} ms p99 {r.p99 * 1000:.0f} ms; peak RSS {r.peak_rss_mib:.0f} MiB; "
                f"lost {r.lost}, duplicated {r.duplicated}; {r.extra}",
                flush=True,
            )
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            live = redis.Redis.from_url(settings.redis_url)
            for key in live.scan_iter(match=f"{name}:*", count=1000):
                live.delete(key)
            live.close()
    print("\nmode        fixes      stored/s  live/s   p50 ms  p99 ms  RSS MiB  lost  dup  notes")
    for r in results:
        print(
            f"{r.mode:11} {r.sent_fixes:>9,} {r.stored_rate:>9,.0f} {r.live_rate:>7,.0f} {r.p50 * 1000:>7.0f} "
            f"{r.p99 * 1000:>7.0f} {r.peak_rss_mib:>8.0f} {r.lost:>5} {r.duplicated:>4}  {r.extra}"
        )


if __name__ == "__main__":
    main()
