"""Fault injection: TimescaleDB and Redis stopped and started, the gateway killed with
SIGKILL, the spool filled, all under a numbered QoS 1 stream of fixes.

These tests run on a native stack of their own (the ports below), so stopping its
TimescaleDB or Redis never disturbs other tests. Services are stopped and started by PID
through `NativeStack`, exactly as `fixgate stack` does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import redis

from contracts.keys import Keys
from devices.tcp_nmea import login_sentence
from devtools.stack.native import NativeStack
from devtools.trackers import Record, recv_exactly, teltonika_login, teltonika_packet
from tests.support.gateway import GatewayProcess, free_port, running_gateway, wait_for
from tests.support.ingest import NumberedPublisher, count, live, register, register_fleet, rmc_gga
from tests.support.paths import FIXGATE_BIN

pytestmark = pytest.mark.fault


def base_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def topic(env: dict[str, str]) -> str:
    return env["FIXGATE_MQTT_TOPIC_PREFIX"] + "fixgate/acme/{device}/fix"


def readyz(gw: GatewayProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{gw.metrics_port}/readyz", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def assert_exactly_once(pub: NumberedPublisher, db_url: str, device: str = "dev-0") -> None:
    acknowledged = pub.acknowledged(device)
    stored = pub.stored(db_url, device)
    assert len(stored) == len(set(stored)), "a fix was stored twice"
    missing = acknowledged - set(stored)
    assert not missing, (
        f"{len(missing)} acknowledged fixes are not in positions, e.g. {sorted(missing)[:10]}"
    )
    assert set(stored) <= {n for n, d, _ in pub.sent if d == device}, "a fix nobody sent was stored"


def test_database_outage_mid_stream_loses_no_acknowledged_fix(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    with running_gateway(fault_env, tmp_path) as gw:
        pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time())
        pub.start(count=2400, rate=200)  # 12 s
        time.sleep(3)
        fault_stack.stop_pg()
        assert wait_for(
            lambda: (
                readyz(gw)[0] == 200 and gw.metric("fixgate_sink_down", sink="timescaledb") == 1
            ),
            10,
        )
        time.sleep(4)  # publishing goes on; batches go to the spool and are acknowledged
        spooled = gw.metric("fixgate_spool_written_fixes_total")
        assert spooled > 0, gw.log()
        fault_stack.start_pg()
        pub.join()
        assert len(pub.acknowledged()) == 2400
        assert wait_for(lambda: count(db_url, "dev-0") == 2400, 60), gw.log()
        assert wait_for(lambda: gw.metric("fixgate_spool_fixes") == 0, 10)
        assert gw.metric("fixgate_spool_replayed_fixes_total") == gw.metric(
            "fixgate_spool_written_fixes_total"
        )
        assert gw.metric("fixgate_sink_down", sink="timescaledb") == 0
        assert gw.metric("fixgate_outage_seconds_total", sink="timescaledb") > 1
        assert readyz(gw)[0] == 200
        assert (
            "timescaledb: write failed" in gw.log() and "timescaledb: writes work again" in gw.log()
        )
    assert_exactly_once(pub, db_url)


def test_redis_outage_keeps_history_and_live_positions_catch_up(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url, redis_url, prefix = register_fleet(fault_env)
    with running_gateway(fault_env, tmp_path) as gw:
        pub = NumberedPublisher(
            fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time(), devices=3
        )
        pub.start(count=1000, rate=100)  # 10 s, 3 devices
        time.sleep(2)
        fault_stack.stop_redis()
        backlog = []
        for _ in range(30):  # 3 s of outage, publishing goes on
            backlog.append(gw.metric("fixgate_live_backlog_devices"))
            time.sleep(0.1)
        assert gw.metric("fixgate_sink_down", sink="redis") == 1
        assert max(backlog) <= 3, "the live backlog is bounded by the number of devices"
        fault_stack.start_redis()  # empty: Redis keeps no data across restarts here
        pub.join()
        for d in range(3):
            assert wait_for(lambda d=d: count(db_url, f"dev-{d}") == 1000, 30), gw.log()
        newest = (pub.base + timedelta(seconds=999)).isoformat()
        for d in range(3):
            assert wait_for(
                lambda d=d: live(redis_url, prefix, f"dev-{d}").get("time") == newest, 15
            ), gw.log()
        client = redis.Redis.from_url(redis_url)
        members = [m for key in Keys(prefix).all_geo("acme") for m in client.zrange(key, 0, -1)]
        assert sorted(members) == [b"dev-0", b"dev-1", b"dev-2"]
        assert gw.metric("fixgate_sink_down", sink="redis") == 0
    for d in range(3):
        assert_exactly_once(pub, db_url, f"dev-{d}")


def test_kill_9_mid_stream_loses_no_acknowledged_fix(
    fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    spool_dir = str(tmp_path / "spool")
    pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time())
    with running_gateway(fault_env, tmp_path, spool_dir=spool_dir) as gw:
        pub.start(count=2000, rate=250)  # 8 s
        time.sleep(3)
        assert count(db_url, "dev-0") > 0
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(5)
    time.sleep(1)  # the broker queues for the absent persistent session
    with running_gateway(fault_env, tmp_path, spool_dir=spool_dir) as gw:
        pub.join()
        assert len(pub.acknowledged()) == 2000
        assert wait_for(lambda: count(db_url, "dev-0") == 2000, 60), gw.log()
        assert (
            gw.metric("fixgate_mqtt_messages_received_total") > 0
        )  # the rest came after the restart
    assert_exactly_once(pub, db_url)


def test_kill_9_while_spooling_then_the_spool_is_replayed_first(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    spool_dir = str(tmp_path / "spool")
    pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time())
    with running_gateway(fault_env, tmp_path, spool_dir=spool_dir) as gw:
        fault_stack.stop_pg()
        pub.start(count=500, rate=500)
        pub.join()
        assert len(pub.acknowledged()) == 500
        # Acknowledged to the broker only once fsynced in the spool.
        assert wait_for(lambda: gw.metric("fixgate_spool_fixes") == 500, 20), gw.log()
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(5)
    assert any(p.suffix == ".fgs" for p in Path(spool_dir).iterdir())
    fault_stack.start_pg()
    with running_gateway(fault_env, tmp_path, spool_dir=spool_dir) as gw:
        # Ready only after the replay: the fixes are in before the listeners start.
        assert count(db_url, "dev-0") == 500
        assert gw.metric("fixgate_spool_replayed_fixes_total") == 500
        time.sleep(1)
        assert gw.metric("fixgate_mqtt_messages_received_total") == 0, (
            "the broker had nothing left to redeliver"
        )
        assert "from an earlier run wait in" in gw.log()
    assert not any(p.suffix == ".fgs" for p in Path(spool_dir).iterdir())
    assert_exactly_once(pub, db_url)


def test_a_full_spool_pauses_intake_and_loses_nothing(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time())
    with running_gateway(
        fault_env, tmp_path, spool_max_bytes="16384", max_queued_fixes="200"
    ) as gw:
        fault_stack.stop_pg()
        pub.start(count=1500, rate=1000)
        pub.join()
        assert (
            len(pub.acknowledged()) == 1500
        )  # the broker took them all; it keeps what fixgate does not ack
        assert wait_for(lambda: gw.metric("fixgate_spool_full") == 1, 20), gw.log()
        status, body = readyz(gw)
        assert status == 503 and "spool full" in body, body
        assert "spool: full" in gw.log()
        time.sleep(2)
        assert gw.proc.poll() is None
        assert gw.metric("fixgate_spool_bytes") <= 16384
        assert gw.metric("fixgate_ingest_queue_fixes") <= 400  # intake paused, not growing
        fault_stack.start_pg()
        assert wait_for(lambda: count(db_url, "dev-0") == 1500, 60), gw.log()
        assert wait_for(lambda: readyz(gw)[0] == 200, 15), readyz(gw)
        assert gw.metric("fixgate_spool_full") == 0
        assert gw.metric("fixgate_spool_fixes") == 0
    assert_exactly_once(pub, db_url)


def test_sigterm_during_an_outage_drains_to_the_spool_within_the_bound(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    token = register(db_url, "truck-1", "acme")
    spool_dir = str(tmp_path / "spool")
    base = base_time()
    epochs = b"".join(
        rmc_gga(base + timedelta(seconds=n), 47.0 + n * 1e-5, 8.0) for n in range(100)
    )
    pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base)
    settings = {"spool_dir": spool_dir, "shutdown_timeout_s": "5"}
    with running_gateway(fault_env, tmp_path, **settings) as gw:
        fault_stack.stop_pg()
        truck = socket.create_connection(("127.0.0.1", gw.tcp_port), timeout=10)
        truck.sendall(login_sentence("truck-1", token) + epochs)
        assert wait_for(lambda: gw.metric("fixgate_fixes_received_total", protocol="nmea") >= 99), (
            gw.log()
        )
        pub.start(count=1500, rate=500)  # 3 s
        time.sleep(1)
        started = time.monotonic()
        os.kill(gw.proc.pid, signal.SIGTERM)  # in the middle of the MQTT stream
        assert gw.proc.wait(10) == 0
        assert time.monotonic() - started < 5 + 2
        truck.close()
        pub.join()
        assert "wait in the spool for the next start" in gw.log()
    fault_stack.start_pg()
    with running_gateway(fault_env, tmp_path, **settings) as gw:
        assert wait_for(lambda: count(db_url, "dev-0") == 1500, 30), gw.log()
        # The truck's last epoch has no successor to close it until the connection ends;
        # closing the connection flushed it, so all 100 are in.
        assert count(db_url, "truck-1") == 100
    assert_exactly_once(pub, db_url)


def test_a_gateway_started_while_the_database_is_away_serves_its_devices_from_the_snapshot(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "dev-0", "acme")
    state = tmp_path / "state"
    with running_gateway(fault_env, tmp_path, spool_dir=str(state)):
        pass  # a first run, with the database: it leaves the registry snapshot
    snapshot = state / "registry.json"
    assert snapshot.stat().st_mode & 0o777 == 0o600  # token hashes only, still private
    fault_stack.stop_pg()
    with running_gateway(fault_env, tmp_path, spool_dir=str(state)) as gw:
        assert "serving 1 devices from the snapshot" in gw.log()
        pub = NumberedPublisher(fault_env["FIXGATE_MQTT_URL"], topic(fault_env), base_time())
        pub.start(count=400, rate=200)
        pub.join()
        assert len(pub.acknowledged()) == 400
        assert wait_for(lambda: gw.metric("fixgate_spool_fixes") == 400, 20), (
            gw.log()
        )  # durable without the database
        fault_stack.start_pg()
        assert wait_for(lambda: count(db_url, "dev-0") == 400, 60), gw.log()
        assert wait_for(lambda: "loaded from the database again" in gw.log(), 30), gw.log()
    assert_exactly_once(pub, db_url)


def test_without_database_or_snapshot_the_gateway_says_why_it_cannot_start(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    fault_stack.stop_pg()
    env = {
        **fault_env, "FIXGATE_SPOOL_DIR": str(tmp_path / "empty"),
        "FIXGATE_TCP_PORT": str(free_port()), "FIXGATE_METRICS_PORT": str(free_port()),
    }  # fmt: skip
    done = subprocess.run([FIXGATE_BIN, "gateway"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "cannot start" in err and "no registry snapshot" in err and "Traceback" not in err, err


# ---- Teltonika: acknowledged only once durable, across a kill -9 and an outage ----------

TRUCK_IMEI = "356307042441013"


def _truck_records(t0: datetime, first: int, n: int) -> list[Record]:
    return [
        Record(time=t0 + timedelta(seconds=i), lat=52.5 + i * 1e-5, lon=13.4, io={239: 1})
        for i in range(first, first + n)
    ]


def _truck(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(teltonika_login(TRUCK_IMEI))
    assert recv_exactly(sock, 1) == b"\x01"
    return sock


def _stored_seconds(db_url: str, device: str, t0: datetime) -> list[int]:
    with psycopg.connect(db_url) as conn:
        times = conn.execute(
            "SELECT time FROM positions WHERE device_id = %s", (device,)
        ).fetchall()
    return sorted(round((t - t0).total_seconds()) for (t,) in times)


def test_teltonika_kill_9_before_the_ack_then_the_resend_is_stored_exactly_once(
    fault_env: dict[str, str], tmp_path: Path
) -> None:
    """A batch of 50 fixes is written at once; the second packet's 20 records wait in an
    open batch (30 s) when the gateway is killed: no ack, so the unit sends it again."""
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "truck-k", "acme", "tow_truck", imei=TRUCK_IMEI)
    t0 = base_time()
    first, second = _truck_records(t0, 0, 50), _truck_records(t0, 50, 20)
    settings = {
        "spool_dir": str(tmp_path / "spool"),
        "batch_max_fixes": "50",
        "batch_max_age_s": "30",
    }
    with running_gateway(fault_env, tmp_path, **settings) as gw, _truck(gw.teltonika_port) as sock:
        sock.sendall(teltonika_packet(first))
        assert recv_exactly(sock, 4) == (50).to_bytes(4, "big")
        sock.sendall(teltonika_packet(second))
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(4)  # received, in the open batch, not acknowledged
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(5)
        assert recv_exactly(sock, 4) == b""  # the connection died with no ack
    assert _stored_seconds(db_url, "truck-k", t0) == list(range(50))
    with running_gateway(fault_env, tmp_path, spool_dir=settings["spool_dir"]) as gw:
        with _truck(gw.teltonika_port) as sock:
            sock.sendall(teltonika_packet(second))  # the unit still holds them: sent again
            assert recv_exactly(sock, 4) == (20).to_bytes(4, "big")
            sock.sendall(teltonika_packet(first[-10:] + second[:5]))  # overlapping resend
            assert recv_exactly(sock, 4) == (15).to_bytes(4, "big")
        assert _stored_seconds(db_url, "truck-k", t0) == list(range(70))


def test_teltonika_ack_comes_once_spooled_while_the_database_is_away(
    fault_stack: NativeStack, fault_env: dict[str, str], tmp_path: Path
) -> None:
    db_url = fault_env["FIXGATE_DATABASE_URL"]
    register(db_url, "truck-o", "acme", "tow_truck", imei=TRUCK_IMEI)
    t0 = base_time()
    with (
        running_gateway(fault_env, tmp_path, spool_after_s="2") as gw,
        _truck(gw.teltonika_port) as sock,
    ):
        sock.sendall(teltonika_packet(_truck_records(t0, 0, 30)))
        assert recv_exactly(sock, 4) == (30).to_bytes(4, "big")
        fault_stack.stop_pg()
        for p in range(1, 5):  # 4 packets of 30 during the outage, each acknowledged
            sock.sendall(teltonika_packet(_truck_records(t0, 30 * p, 30)))
            assert recv_exactly(sock, 4) == (30).to_bytes(4, "big")
        assert gw.metric("fixgate_spool_written_fixes_total") >= 120
        fault_stack.start_pg()
        assert wait_for(lambda: count(db_url, "truck-o") == 150, 60), gw.log()
        assert wait_for(lambda: gw.metric("fixgate_spool_fixes") == 0, 10)
    assert _stored_seconds(db_url, "truck-o", t0) == list(range(150))
