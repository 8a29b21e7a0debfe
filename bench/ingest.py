"""bench/ingest: how fast does a fixgate gateway store fixes, how late, and does it lose any?

    eval "$(fixgate stack env)"
    python bench/ingest.py --mode mqtt|mqtt-batch|tcp|all [--fixes N]      # drain / flood
    python bench/ingest.py --mode mqtt|tcp --rate 5000 [--duration 60]      # fixed rate
    python bench/ingest.py --mode outage [--rate 10000] [--outage 20]       # database outage
    python bench/ingest.py --mode replay [--fixes N] [--record-fixes 500]   # spool replay
    python bench/ingest.py --mode teltonika [--rate 10000] [--duration 60]  # Codec 8E units

Runs against the stack's real Mosquitto, TimescaleDB and Redis on this machine, in a
fresh database of its own (dropped afterwards unless --keep). It starts its own gateway
process (so it can read its peak RSS). Modes:

- mqtt: QoS 1, one fix per message. The broker is loaded first, with the gateway's
  persistent session offline, then the gateway is started and drains the queue; the
  same load is drained by a bare paho-mqtt subscriber (receive and count, nothing else)
  first, so both rates come from the same broker, messages and machine, and are
  compared as a ratio. Preloading keeps the publishers' CPU out of both measurements.
- mqtt-batch: the same with 100 fixes per message.
- tcp: 1,000 connections streaming RMC+GGA epochs as fast as the gateway reads them,
  from sender processes whose payloads are encoded before the clock starts.
- replay: a spool of --fixes fixes in records of --record-fixes (an outage's batches) is
  written before the gateway starts; the gateway replays it into TimescaleDB before its
  listeners open. Figure: fixes/s replayed, from the first replayed to the spool empty.
- teltonika: 1,000 Teltonika units over TCP, packets of 10-50 records, each waiting for
  its acknowledgement (bench/teltonika.py says how and what is measured).
- --rate N (with --mode mqtt or tcp): N fixes/s offered for --duration seconds by paced
  publishers (one fix per message, QoS 1) or paced TCP connections (one RMC+GGA epoch
  per second each), with the gateway live; this is where receive-to-stored latency means
  something (in the drain modes fixes queue by design).

Figures: fixes/s stored in TimescaleDB, from the first fix received to the last stored;
fixes/s reaching Redis (a device's live position covers all its fixes up to that fix's
time, read back from Redis) and how long after the last store Redis caught up; live
position writes/s (the gateway's counter: one per device per Redis round, coalesced by
design); p50/p99 receive-to-stored (the gateway's histogram, over the measured window);
peak RSS; lost/duplicated fixes counted in the database against what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho
import psycopg
import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.load import TOPIC_PREFIX, TcpLoad, publish  # noqa: E402
from contracts.keys import Keys  # noqa: E402
from gateway.config import Settings, mqtt_address  # noqa: E402
from gateway.migrate import migrate, migrations_dir  # noqa: E402
from gateway.registry.broker import apply_account, apply_gateway, broker_admin, forget_account  # noqa: E402
from gateway.registry.store import Device, add_device  # noqa: E402

FIXGATE = str(Path(sys.executable).parent / "fixgate")
WARMUP_S = 5.0
"""Fixed-rate mode: latency and rate are measured after this much of the run."""


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


def received(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith("fixgate_fixes_received_total{"))


def share_over(before: dict[str, float], after: dict[str, float], name: str, bound: float) -> float:
    """Fraction of a histogram's observations (bucket deltas) above `bound`, a bucket bound."""
    at = f'{name}_bucket{{le="{bound}"}}'
    total = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    below = after.get(at, 0.0) - before.get(at, 0.0)
    return (total - below) / total if total > 0 else float("nan")


def quantile(before: dict[str, float], after: dict[str, float], name: str, q: float) -> float:
    """A quantile from a Prometheus histogram's bucket deltas (linear within a bucket)."""
    buckets = []
    for key, value in after.items():
        if key.startswith(f"{name}_bucket{{le="):
            le = key.split('le="')[1].split('"')[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), value - before.get(key, 0.0))
            )
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


class LiveProbe:
    """How many sent fixes the live positions in Redis cover: a device whose live fix is
    its i-th (fix time t0 + i s) covers its first i + 1 fixes, superseded ones included."""

    def __init__(self, redis_url: str, prefix: str, devices: list[str], t0: int) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.keys = [Keys(prefix).device(d) for d in devices]
        self.t0 = t0

    def covered(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.hget(key, "ts")
        return sum(round(float(ts) - self.t0) + 1 for ts in pipe.execute() if ts is not None)

    def close(self) -> None:
        self.client.close()


# ---- the broker -------------------------------------------------------------------------


@dataclass
class Broker:
    """The broker a run talks to: its address (`url`, the stack's by default), the admin
    account that makes accounts (None: a broker without authentication, `--broker
    anonymous`), and the devices' tokens (each publishes as itself when there are some)."""

    url: str
    admin_url: str | None = None
    tokens: dict[str, str] | None = None
    pid: int | None = None
    """A broker this benchmark started (the anonymous one), stopped at the end by PID."""

    def account(self, name: str) -> str:
        """The URL of a new gateway account `name` reading TOPIC_PREFIX (anonymous: the URL)."""
        if self.admin_url is None:
            return self.url
        password = secrets.token_urlsafe(24)

        async def make() -> None:
            async with broker_admin(self.admin_url or "") as admin:
                await apply_gateway(admin, name, password, TOPIC_PREFIX)

        asyncio.run(make())
        host, port, _, _ = mqtt_address(self.url)
        return f"mqtt://{name}:{password}@{host}:{port}"

    def forget(self, url: str) -> None:
        _, _, name, _ = mqtt_address(url)
        if self.admin_url is None or name is None:
            return

        async def drop() -> None:
            async with broker_admin(self.admin_url or "") as admin:
                await forget_account(admin, name)

        asyncio.run(drop())

    def devices(self, devices: dict[str, str]) -> None:
        """The devices' broker accounts (one admin connection; tokens kept for publishing)."""
        self.tokens = devices if self.admin_url is not None else None
        if self.admin_url is None:
            return
        now = datetime.now(UTC)

        async def make() -> None:
            async with broker_admin(self.admin_url or "") as admin:
                for device_id, token in devices.items():
                    device = Device(
                        id=device_id, tenant_id="bench", kind="tracker", token_hash="",
                        enabled=True, created_at=now,
                    )  # fmt: skip
                    await apply_account(
                        admin, device_id, [device], token=token, prefix=TOPIC_PREFIX
                    )

        asyncio.run(make())

    def forget_devices(self) -> None:
        if self.admin_url is None or not self.tokens:
            return

        async def drop() -> None:
            async with broker_admin(self.admin_url or "") as admin:
                for device_id in self.tokens or {}:
                    await forget_account(admin, device_id)

        asyncio.run(drop())


BROKER = Broker(os.environ.get("FIXGATE_MQTT_URL", ""), os.environ.get("FIXGATE_MQTT_ADMIN_URL"))
"""The run's broker (main() may replace it with an anonymous one of its own)."""


def anonymous_broker(log_dir: Path) -> Broker:
    """A Mosquitto of our own on a free port, configured as the stack's but without
    authentication: what the gateway ran against before issue 20, for the comparison."""
    from devtools.stack.native import mosquitto_conf

    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="fixgate-bench-mqtt-"))
    auth = (
        "per_listener_settings",
        "allow_anonymous",
        "plugin",
        "use_username_as_clientid",
        "listener",
    )
    lines = [line for line in mosquitto_conf(port, state).splitlines() if not line.startswith(auth)]
    lines += ["allow_anonymous true", f"listener {port} 127.0.0.1"]
    conf = state / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    with open(log_dir / "mosquitto-anonymous.log", "ab") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=out, stderr=out)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return Broker(f"mqtt://127.0.0.1:{port}", pid=proc.pid)
        time.sleep(0.1)
    raise RuntimeError(f"the anonymous Mosquitto did not start; see {log_dir}")


def stop_broker(broker: Broker) -> None:
    if broker.pid is not None:
        os.kill(broker.pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(broker.pid, 0)


# ---- the gateway under test ----------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    metrics_port: int
    tcp_port: int
    started_at: float
    mqtt_client_id: str
    mqtt_url: str

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        # Its persistent session would queue every later run's messages.
        drop_session(self.mqtt_url, self.mqtt_client_id)
        BROKER.forget(self.mqtt_url)


def start_gateway(env: dict[str, str], log: Path, tcp_port: int, metrics_port: int) -> Gateway:
    client_id = env.get("FIXGATE_MQTT_CLIENT_ID") or f"bench-gw-{uuid.uuid4().hex[:6]}"
    # An account of its own (the broker names the session after it), unless given one.
    mqtt_url = env.get("FIXGATE_BENCH_GATEWAY_URL") or BROKER.account(client_id)
    full = {
        **env, "FIXGATE_TCP_PORT": str(tcp_port), "FIXGATE_METRICS_PORT": str(metrics_port),
        "FIXGATE_MQTT_CLIENT_ID": client_id, "FIXGATE_MQTT_URL": mqtt_url,
        "FIXGATE_MQTT_ADMIN_URL": "",
    }  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen([FIXGATE, "gateway"], env=full, stdout=out, stderr=out)
    # The clock starts when the process does: /readyz says "not ready" while the ingest
    # queue is full, which a gateway draining a backlog may be from its first second.
    gw = Gateway(proc, metrics_port, tcp_port, time.monotonic(), client_id, mqtt_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=2) as r,
        ):
            if r.status == 200:
                return gw
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"gateway did not become ready; see {log}")


# ---- MQTT sessions and the bare subscriber ---------------------------------------------


def _client(mqtt_url: str, client_id: str, clean_session: bool) -> paho.Client:
    """A paho client logged in as the URL's account (the broker may name it after that)."""
    _, _, user, password = mqtt_address(mqtt_url)
    c = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
    )
    if user is not None:
        c.username_pw_set(user, password)
    return c


def ensure_session(mqtt_url: str, client_id: str) -> None:
    """Create the persistent session (subscribed, QoS 1) that the broker queues for."""
    host, port, _, _ = mqtt_address(mqtt_url)
    c = _client(mqtt_url, client_id, clean_session=False)
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
    c = _client(mqtt_url, client_id, clean_session=True)
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

    c = _client(mqtt_url, client_id, clean_session=False)
    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    finished.wait(900)
    c.loop_stop()
    c.disconnect()
    return (count - 1) / (last - first) if count > 1 else float("nan")


# ---- watching a run ----------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    sent_fixes: int
    stored_rate: float
    redis_rate: float
    redis_lag_s: float
    live_writes_rate: float
    p50: float
    p99: float
    peak_rss_mib: float
    lost: int
    duplicated: int
    seconds: float
    extra: str = ""


@dataclass
class Drain:
    first_received: float  # monotonic
    stored_done: float
    redis_done: float
    metrics: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.stored_done - self.first_received


def watch(gw: Gateway, expected: int, probe: LiveProbe, timeout_s: float) -> Drain:
    """Scrape every 0.1 s until `expected` fixes are stored, then read Redis until its live
    positions cover them all. Times are monotonic; the gateway's counters start at zero."""
    nan = float("nan")
    first = stored_done = redis_done = nan
    deadline = time.monotonic() + timeout_s
    last_value, last_change = 0.0, time.monotonic()
    metrics: dict[str, float] = {}
    next_probe = 0.0
    while time.monotonic() < deadline:
        metrics = scrape(gw.metrics_port)
        now = time.monotonic()
        if first != first and received(metrics) > 0:
            first = now
        stored = metrics.get("fixgate_fixes_stored_total", 0.0)
        if stored != last_value:
            last_value, last_change = stored, now
        if stored_done != stored_done and stored >= expected:
            stored_done = now
        if now >= next_probe and first == first:
            # Redis is read at most twice a second: 1,000 HGETs are not free either.
            next_probe = now + 0.5
            if probe.covered() >= expected:
                redis_done = now
                if stored_done != stored_done:
                    stored_done = now  # the scrape just missed it
                break
        if stored_done == stored_done and now - stored_done > 60:
            break  # Redis never caught up
        if now - last_change > 30 and stored_done != stored_done:
            break  # stalled
        time.sleep(0.1)
    return Drain(first, stored_done, redis_done, metrics)


def check_db(db_url: str, sent: int) -> tuple[int, int]:
    """(lost, duplicated). `positions` is unique on (device_id, time) and holds this mode's
    fixes only, so a row is a distinct sent fix: lost = sent - rows; a row beyond what
    was sent would be a duplicate the index could not see (a mangled time). (SELECT
    DISTINCT over a million rows took minutes here, and could only ever say 0.)"""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT count(*) FROM positions").fetchone()[0]  # type: ignore[index]
    return max(0, sent - rows), max(0, rows - sent)


def drain_result(
    label: str, sent: int, drain: Drain, gw: Gateway, rss: float, db_url: str, extra: str
) -> Result:
    lost, dup = check_db(db_url, sent)
    m = drain.metrics
    secs = drain.seconds
    redis_secs = drain.redis_done - drain.first_received
    return Result(
        label, sent, sent / secs if secs else float("nan"), sent / redis_secs if redis_secs else float("nan"),
        drain.redis_done - drain.stored_done, m.get("fixgate_live_updates_total", 0) / secs if secs else float("nan"),
        quantile({}, m, "fixgate_receive_to_stored_seconds", 0.5),
        quantile({}, m, "fixgate_receive_to_stored_seconds", 0.99),
        rss, lost, dup, secs, extra,
    )  # fmt: skip


# ---- drain and flood modes ------------------------------------------------------------------


def run_mqtt(
    args: argparse.Namespace,
    env: dict[str, str],
    db_url: str,
    devices: list[str],
    per_message: int,
    label: str,
) -> Result:
    per_device = args.fixes // len(devices)
    sent_fixes = per_device * len(devices)
    t0 = int(time.time()) - 86400 * 10  # ten days back: stays within retention, never "future"

    # 1. the bare paho baseline, on the same queued load
    bare_rate = float("nan")
    if not args.no_bare:
        bare_id = f"bench-bare-{uuid.uuid4().hex[:6]}"
        bare_url = BROKER.account(bare_id)
        ensure_session(bare_url, bare_id)
        started = time.monotonic()
        messages, _ = publish(
            BROKER.url, devices, per_device, per_message, t0, tokens=BROKER.tokens
        )
        print(
            f"  [{label}] preloaded {messages:,} messages for the bare subscriber in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        bare_rate = bare_paho_drain(bare_url, bare_id, messages)
        drop_session(bare_url, bare_id)
        BROKER.forget(bare_url)
        print(f"  [{label}] bare paho QoS 1 subscriber drained {bare_rate:,.0f} msg/s", flush=True)

    # 2. the gateway, on the same load
    gw_id = f"bench-gw-{uuid.uuid4().hex[:6]}"
    gw_url = BROKER.account(gw_id)
    env = {**env, "FIXGATE_MQTT_CLIENT_ID": gw_id, "FIXGATE_BENCH_GATEWAY_URL": gw_url}
    log = Path(args.log_dir) / f"gateway-{label}.log"
    ensure_session(gw_url, gw_id)  # the gateway's persistent session, queued for
    started = time.monotonic()
    messages, _ = publish(BROKER.url, devices, per_device, per_message, t0, tokens=BROKER.tokens)
    print(
        f"  [{label}] preloaded {messages:,} messages for the gateway in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    probe = LiveProbe(Settings().redis_url, env["FIXGATE_REDIS_PREFIX"], devices, t0)
    gw = start_gateway(env, log, free_port(), free_port())
    try:
        drain = watch(gw, sent_fixes, probe, args.timeout)
        rss = gw.peak_rss_mib()
    finally:
        gw.stop()
        probe.close()
    rate = sent_fixes / drain.seconds
    if per_message == 1:
        extra = f"bare paho {bare_rate:,.0f} msg/s; ratio {rate / bare_rate:.2f}"
    else:
        extra = f"bare paho {bare_rate:,.0f} msg/s = {bare_rate * per_message:,.0f} fixes/s"
    return drain_result(label, sent_fixes, drain, gw, rss, db_url, extra)


def run_tcp(
    args: argparse.Namespace, env: dict[str, str], db_url: str, tokens: dict[str, str]
) -> Result:
    devices = list(tokens)
    per_device = args.fixes // len(devices)
    sent = per_device * len(devices)
    t0 = int(time.time()) - 86400 * 20
    log = Path(args.log_dir) / "gateway-tcp.log"
    probe = LiveProbe(Settings().redis_url, env["FIXGATE_REDIS_PREFIX"], devices, t0)
    gw = start_gateway(env, log, free_port(), free_port())
    try:
        load = TcpLoad(
            gw.tcp_port, [(d, tokens[d], per_device) for d in devices], t0, 0.0, args.senders
        )
        load.wait_ready(600)
        load.go()
        drain = watch(gw, sent, probe, args.timeout)
        rss = gw.peak_rss_mib()
        load.wait(120)
    finally:
        gw.stop()
        probe.close()
    return drain_result("tcp", sent, drain, gw, rss, db_url, f"{len(devices)} connections")


# ---- fixed-rate mode -----------------------------------------------------------------------


def wait_ready(gw: Gateway, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = f"http://127.0.0.1:{gw.metrics_port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("gateway not ready")


def run_rate(
    args: argparse.Namespace, env: dict[str, str], db_url: str, tokens: dict[str, str], label: str
) -> Result:
    """Offer `--rate` fixes/s for `--duration` s to a live gateway; measure after a warm-up."""
    devices = list(tokens)
    per_device = max(1, round(args.rate * args.duration / len(devices)))
    sent = per_device * len(devices)
    t0 = int(time.time()) - 86400 * 5
    probe = LiveProbe(Settings().redis_url, env["FIXGATE_REDIS_PREFIX"], devices, t0)
    gw = start_gateway(env, Path(args.log_dir) / f"gateway-{label}.log", free_port(), free_port())
    result: list[tuple[int, float]] = []
    try:
        wait_ready(gw, 60)
        if label == "tcp-rate":
            load = TcpLoad(
                gw.tcp_port,
                [(d, tokens[d], per_device) for d in devices],
                t0,
                args.rate,
                args.senders,
            )
            load.wait_ready(600)
            go = load.go()
            waiter = threading.Thread(
                target=lambda: result.append(load.wait(args.duration * 3 + 120))
            )
        else:
            waiter = threading.Thread(
                target=lambda: result.append(
                    publish(BROKER.url, devices, per_device, 1, t0, args.rate, tokens=BROKER.tokens)
                )
            )
            go = time.monotonic()
        waiter.start()
        time.sleep(max(0.0, go + WARMUP_S - time.monotonic()))
        before, t_before = scrape(gw.metrics_port), time.monotonic()
        time.sleep(max(0.0, go + args.duration - time.monotonic()))
        after, t_after = scrape(gw.metrics_port), time.monotonic()
        drain = watch(gw, sent, probe, args.timeout)
        waiter.join()
        rss = gw.peak_rss_mib()
    finally:
        gw.stop()
        probe.close()
    lost, dup = check_db(db_url, sent)
    offered = result[0][0] / result[0][1] if result and result[0][1] else float("nan")
    window = t_after - t_before
    stored = after.get("fixgate_fixes_stored_total", 0) - before.get(
        "fixgate_fixes_stored_total", 0
    )
    live = after.get("fixgate_live_updates_total", 0) - before.get("fixgate_live_updates_total", 0)
    unit = "fixes" if label == "tcp-rate" else "messages"
    over = share_over(before, after, "fixgate_receive_to_stored_seconds", 0.5)
    return Result(
        label, sent, stored / window, sent / (drain.redis_done - go), drain.redis_done - drain.stored_done,
        live / window,
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.5),
        quantile(before, after, "fixgate_receive_to_stored_seconds", 0.99),
        rss, lost, dup, window,
        f"offered {offered:,.0f} {unit}/s to {len(devices)} devices; measured {window:.0f} s after "
        f"{WARMUP_S:.0f} s warm-up; {over:.2%} over 500 ms",
    )  # fmt: skip


# ---- outage mode -------------------------------------------------------------------------

OUTAGE_FIXES_PER_MESSAGE = 10


def count_rows(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM positions").fetchone()[0]  # type: ignore[index,no-any-return]


def run_outage(
    args: argparse.Namespace, env: dict[str, str], db_url: str, devices: list[str]
) -> Result:
    """MQTT at a fixed rate (`--rate` fixes/s, 10 per message) for `--duration` s, with the
    native stack's TimescaleDB stopped (by PID) for `--outage` s from a third of the way
    in. Measures the rate fixes were received and acknowledged at during the outage (all
    of them through the spool), then how long the spool takes to drain once the database
    is back (while the load goes on), and checks that every fix is stored exactly once."""
    from devtools.stack.native import NativeStack
    from devtools.stack.settings import StackSettings

    stack = NativeStack(StackSettings())
    if stack.pg_pid() is None:
        raise SystemExit(
            "outage mode stops and starts the native stack's TimescaleDB: run `fixgate stack up` first"
        )
    rate = args.rate or 10_000.0
    per_message = OUTAGE_FIXES_PER_MESSAGE
    per_device = max(
        per_message, round(rate * args.duration / len(devices) / per_message) * per_message
    )
    sent = per_device * len(devices)
    t0 = int(time.time()) - 86400 * 5
    spool_dir = Path(args.log_dir) / f"outage-spool-{uuid.uuid4().hex[:6]}"
    env = {**env, "FIXGATE_SPOOL_DIR": str(spool_dir)}
    gw = start_gateway(env, Path(args.log_dir) / "gateway-outage.log", free_port(), free_port())
    published: list[tuple[int, float]] = []
    try:
        wait_ready(gw, 60)
        waiter = threading.Thread(
            target=lambda: published.append(
                publish(
                    BROKER.url,
                    devices,
                    per_device,
                    per_message,
                    t0,
                    rate / per_message,
                    tokens=BROKER.tokens,
                )
            )
        )
        go = time.monotonic()
        waiter.start()
        time.sleep(max(0.0, go + args.duration / 3 - time.monotonic()))
        print(f"  [outage] stopping TimescaleDB for {args.outage:.0f} s", flush=True)
        before, t_before = scrape(gw.metrics_port), time.monotonic()
        stack.stop_pg()
        time.sleep(max(0.0, t_before + args.outage - time.monotonic()))
        during, t_during = scrape(gw.metrics_port), time.monotonic()
        stack.start_pg()
        back = time.monotonic()
        print(f"  [outage] TimescaleDB back after {back - t_before:.1f} s", flush=True)
        drained = float("nan")
        deadline = back + args.timeout
        while time.monotonic() < deadline:
            now_metrics = scrape(gw.metrics_port)
            if now_metrics.get("fixgate_spool_fixes", 0) == 0:
                drained = time.monotonic() - back
                break
            time.sleep(0.2)
        after = scrape(gw.metrics_port)
        waiter.join()
        deadline = time.monotonic() + args.timeout
        while count_rows(db_url) < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        done = time.monotonic()
        rss = gw.peak_rss_mib()
    finally:
        gw.stop()
        stack.start_pg()  # whatever happened, leave the database running
    lost, dup = check_db(db_url, sent)
    window = t_during - t_before
    accepted = (received(during) - received(before)) / window
    spooled_total = after.get("fixgate_spool_written_fixes_total", 0.0)
    spooled_during = during.get("fixgate_spool_written_fixes_total", 0.0) - before.get(
        "fixgate_spool_written_fixes_total", 0.0
    )
    offered = (
        published[0][0] * per_message / published[0][1]
        if published and published[0][1]
        else float("nan")
    )
    return Result(
        "outage", sent, accepted, float("nan"), float("nan"), float("nan"),
        quantile({}, after, "fixgate_receive_to_stored_seconds", 0.5),
        quantile({}, after, "fixgate_receive_to_stored_seconds", 0.99),
        rss, lost, dup, done - go,
        f"offered {offered:,.0f} fixes/s; during the {window:.0f} s outage {accepted:,.0f} fixes/s received and "
        f"{spooled_during / window:,.0f} fixes/s spooled; {spooled_total:,.0f} fixes spooled in all, drained "
        f"{drained:.1f} s after the database was back ({spooled_total / drained if drained else float('nan'):,.0f} fixes/s "
        f"replayed while the load went on)",
    )  # fmt: skip


def write_spool(
    directory: Path, devices: list[str], per_device: int, record_fixes: int, t0: int
) -> int:
    """What an outage leaves: records of `record_fixes`, each a slice of time across devices."""
    from datetime import UTC, datetime, timedelta

    from devices.fix import Fix, Protocol
    from gateway.sinks.spool import Spool

    base = datetime.fromtimestamp(t0, UTC)

    async def go() -> int:
        spool = Spool(directory, 1 << 40)
        spool.open()
        written = 0
        try:
            record: list[Fix] = []
            for k in range(per_device):
                t = base + timedelta(seconds=k)
                for i, device in enumerate(devices):
                    record.append(Fix(
                        device_id=device, tenant_id="bench", time=t, lat=48.0 + i * 1e-3 + k * 1e-6,
                        lon=11.0 + k * 1e-6, speed=12.0, heading=90.0, satellites=9, hdop=0.9,
                        protocol=Protocol.JSON, received_at=t,
                    ))  # fmt: skip
                    if len(record) == record_fixes:
                        assert await spool.append(record)
                        written += len(record)
                        record = []
            if record:
                assert await spool.append(record)
                written += len(record)
        finally:
            spool.close()
        return written

    return asyncio.run(go())


def run_replay(
    args: argparse.Namespace, env: dict[str, str], db_url: str, devices: list[str]
) -> Result:
    """A spool of `--fixes` fixes, replayed by a gateway at its start."""
    spool_dir = Path(args.log_dir) / f"replay-spool-{uuid.uuid4().hex[:6]}"
    per_device = max(1, args.fixes // len(devices))
    sent = write_spool(
        spool_dir, devices, per_device, args.record_fixes, int(time.time()) - 86400 * 5
    )
    print(f"  [replay] {sent:,} fixes spooled in records of {args.record_fixes}", flush=True)
    gw = start_gateway({**env, "FIXGATE_SPOOL_DIR": str(spool_dir)}, Path(args.log_dir) / "gateway-replay.log",
                       free_port(), free_port())  # fmt: skip
    first = done = float("nan")
    try:
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            m = scrape(gw.metrics_port)
            now = time.monotonic()
            if first != first and m.get("fixgate_spool_replayed_fixes_total", 0) > 0:
                first = now
            if (
                m.get("fixgate_spool_fixes", 1) == 0
                and m.get("fixgate_spool_replayed_fixes_total", 0) > 0
            ):
                done = now
                break
            time.sleep(0.1)
        rss = gw.peak_rss_mib()
    finally:
        gw.stop()
        shutil.rmtree(spool_dir, ignore_errors=True)
    lost, dup = check_db(db_url, sent)
    secs = done - first
    return Result(
        "replay", sent, sent / secs if secs else float("nan"), float("nan"), float("nan"), float("nan"),
        float("nan"), float("nan"), rss, lost, dup, secs,
        f"replayed {sent:,} fixes in {secs:.1f} s ({sent / secs:,.0f} fixes/s), records of {args.record_fixes}",
    )  # fmt: skip


# ---- setup ---------------------------------------------------------------------------------


def make_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    migrate(url, migrations_dir())
    return url


def register_all(db_url: str, devices: list[str]) -> dict[str, str]:
    async def go() -> dict[str, str]:
        conn = await asyncpg.connect(db_url)
        try:
            return {
                d: await add_device(conn, d, tenant_id="bench", kind="tracker") for d in devices
            }
        finally:
            await conn.close()

    return asyncio.run(go())


def run_teltonika(args: argparse.Namespace, env: dict[str, str], db_url: str) -> None:
    from bench.teltonika import imeis
    from bench.teltonika import run as run_units

    async def register() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            for i, imei in enumerate(imeis(args.connections)):
                await add_device(conn, f"u{i:05d}", tenant_id="bench", kind="tracker", imei=imei)
        finally:
            await conn.close()

    asyncio.run(register())
    port = free_port()
    gw = start_gateway(
        {**env, "FIXGATE_TELTONIKA_PORT": str(port)},
        Path(args.log_dir) / "bench-teltonika-gateway.log",
        free_port(),
        free_port(),
    )
    try:
        wait_ready(gw, 60)
        offered = f"{args.rate:,.0f} records/s offered" if args.rate else "as fast as acknowledged"
        print(
            f"== teltonika: {args.connections} units, {offered}, {args.duration:.0f} s", flush=True
        )
        r = run_units(port, db_url, args.connections, args.duration, args.rate)
        print(
            f"  acknowledged (stored) {r.rate:,.0f} records/s ({r.records:,} in {r.seconds:.1f} s); "
            f"send-to-ack p50 {r.p50_ms:.0f} ms p99 {r.p99_ms:.0f} ms; peak RSS {gw.peak_rss_mib():.0f} MiB; "
            f"lost {r.lost}, duplicated {r.duplicated}",
            flush=True,
        )
    finally:
        gw.stop()


def main() -> None:
    global BROKER  # the run's broker, chosen once per pass
    stack_broker = BROKER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=["mqtt", "mqtt-batch", "tcp", "outage", "replay", "teltonika", "all"],
        default="all",
    )
    parser.add_argument(
        "--fixes",
        type=int,
        default=1_000_000,
        help="fixes per drain/flood mode (tcp: spread over --connections)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="fixed-rate mode: fixes/s offered (with --mode mqtt or tcp)",
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="fixed-rate and outage modes: seconds of load"
    )
    parser.add_argument(
        "--outage", type=float, default=20.0, help="outage mode: seconds TimescaleDB is stopped"
    )
    parser.add_argument("--devices", type=int, default=1000, help="MQTT devices")
    parser.add_argument(
        "--record-fixes", type=int, default=500, help="replay mode: fixes per spooled record"
    )
    parser.add_argument(
        "--connections", type=int, default=None,
        help="TCP connections, one device each (default 1,000; fixed rate: one per fix/s, i.e. 1 Hz devices)",
    )  # fmt: skip
    parser.add_argument("--senders", type=int, default=1, help="TCP sender processes")
    parser.add_argument(
        "--no-bare", action="store_true", help="MQTT modes: skip the bare paho baseline"
    )
    parser.add_argument(
        "--broker", choices=["stack", "anonymous", "both"], default="stack",
        help="MQTT modes: the stack's broker (every client logs in), a Mosquitto of our own "
        "without authentication (as before issue 20), or both in turn, with their ratio",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    if args.rate and args.mode not in ("mqtt", "tcp", "outage", "teltonika"):
        parser.error("--rate needs --mode mqtt, tcp, outage or teltonika")
    if args.connections is None:
        args.connections = int(args.rate) if args.rate and args.mode == "tcp" else 1000

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
        # Only the listeners a mode uses: another gateway on this machine may hold the
        # conventional tracker ports.
        "FIXGATE_TELTONIKA_PORT": "0",
        "FIXGATE_GT06_PORT": "0",
        "FIXGATE_OSMAND_PORT": "0",
    }
    if args.mode == "teltonika":
        try:
            run_teltonika(args, env, db_url)
        finally:
            if not args.keep:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    results: list[Result] = []
    try:
        modes = ["mqtt", "mqtt-batch", "tcp"] if args.mode == "all" else [args.mode]
        mqtt_devices = (
            [f"m{i:05d}" for i in range(args.devices)]
            if "tcp" not in modes or len(modes) > 1
            else []
        )
        tcp_devices = [f"t{i:05d}" for i in range(args.connections)] if "tcp" in modes else []
        tokens = register_all(db_url, mqtt_devices + tcp_devices)
        brokers = ["anonymous", "stack"] if args.broker == "both" else [args.broker]
        if "stack" in brokers:
            if stack_broker.admin_url is None:
                parser.error('FIXGATE_MQTT_ADMIN_URL is needed: eval "$(fixgate stack env)"')
            stack_broker.devices({d: tokens[d] for d in mqtt_devices})
        passes = [(m, b) for m in modes for b in (brokers if m.startswith("mqtt") else ["stack"])]
        for mode, which in passes:
            BROKER = anonymous_broker(Path(args.log_dir)) if which == "anonymous" else stack_broker
            if len(brokers) > 1 and mode.startswith("mqtt"):
                print(f"== broker: {which}", flush=True)
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("TRUNCATE positions")
            if mode == "replay":
                print(f"== replay: {args.fixes:,} fixes from the spool", flush=True)
                results.append(run_replay(args, env, db_url, mqtt_devices))
            elif mode == "outage":
                print(
                    f"== outage: MQTT at {args.rate or 10_000:,.0f} fixes/s for {args.duration:.0f} s",
                    flush=True,
                )
                results.append(run_outage(args, env, db_url, mqtt_devices))
            elif args.rate:
                print(
                    f"== {mode} at {args.rate:,.0f} fixes/s for {args.duration:.0f} s", flush=True
                )
                devices = tcp_devices if mode == "tcp" else mqtt_devices
                results.append(
                    run_rate(args, env, db_url, {d: tokens[d] for d in devices}, f"{mode}-rate")
                )
            else:
                print(f"== {mode}: {args.fixes:,} fixes", flush=True)
                if mode == "mqtt":
                    results.append(run_mqtt(args, env, db_url, mqtt_devices, 1, "mqtt"))
                elif mode == "mqtt-batch":
                    results.append(run_mqtt(args, env, db_url, mqtt_devices, 100, "mqtt-batch"))
                else:
                    results.append(run_tcp(args, env, db_url, {d: tokens[d] for d in tcp_devices}))
            r = results[-1]
            print(
                f"  stored {r.stored_rate:,.0f} fixes/s over {r.seconds:.1f} s; reaching Redis {r.redis_rate:,.0f} fixes/s "
                f"(caught up {r.redis_lag_s:.1f} s after the last store; {r.live_writes_rate:,.0f} live writes/s); "
                f"receive-to-stored p50 {r.p50 * 1000:.0f} ms p99 {r.p99 * 1000:.0f} ms; peak RSS {r.peak_rss_mib:.0f} MiB; "
                f"lost {r.lost}, duplicated {r.duplicated}; {r.extra}",
                flush=True,
            )
            if BROKER is not stack_broker:
                stop_broker(BROKER)
                BROKER = stack_broker
        if len(brokers) > 1:
            by_mode: dict[str, list[Result]] = {}
            for r in results:
                by_mode.setdefault(r.mode, []).append(r)
            for mode, (anonymous, authenticated) in (
                (m, rs) for m, rs in by_mode.items() if len(rs) == 2
            ):
                print(
                    f"== {mode}: authenticated {authenticated.stored_rate:,.0f} fixes/s, anonymous "
                    f"{anonymous.stored_rate:,.0f} fixes/s: ratio {authenticated.stored_rate / anonymous.stored_rate:.3f} "
                    f"(bare paho: {authenticated.extra.split(';')[0]} vs {anonymous.extra.split(';')[0]})",
                    flush=True,
                )
    finally:
        if BROKER.pid is not None:
            stop_broker(BROKER)
        stack_broker.forget_devices()
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            live = redis.Redis.from_url(settings.redis_url)
            for key in live.scan_iter(match=f"{name}:*", count=1000):
                live.delete(key)
            live.close()
    print(
        "\nmode        fixes      stored/s  redis/s  lag s  p50 ms  p99 ms  RSS MiB  lost  dup  notes"
    )
    for r in results:
        print(
            f"{r.mode:11} {r.sent_fixes:>9,} {r.stored_rate:>9,.0f} {r.redis_rate:>8,.0f} {r.redis_lag_s:>6.1f} "
            f"{r.p50 * 1000:>7.0f} {r.p99 * 1000:>7.0f} {r.peak_rss_mib:>8.0f} {r.lost:>5} {r.duplicated:>4}  {r.extra}"
        )


if __name__ == "__main__":
    main()
