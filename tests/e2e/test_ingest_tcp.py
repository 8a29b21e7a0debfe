"""End to end over TCP NMEA: raw sockets -> `fixgate gateway` -> TimescaleDB and Redis."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devices.tcp_nmea import login_sentence
from tests.support.gateway import GatewayProcess, running_gateway, wait_for
from tests.support.ingest import count, live, register, rmc_gga, rows, sentence
from tests.support.paths import corpus_file
from tests.support.services import Services

NMEA_CORPUS = corpus_file("nmea", "gpsd-bt451.log").parent
GPSD_LOGS = sorted(p.name.removesuffix(".log") for p in NMEA_CORPUS.glob("gpsd-*.log"))
# The corpus was recorded 2009-2020: keep it all, and judge it by its own times.
CORPUS_SETTINGS = {"retention_days": "36500"}


def stream(port: int, data: bytes, chunk: int = 4096, pause_s: float = 0.0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i in range(0, len(data), chunk):
            s.sendall(data[i : i + chunk])
            if pause_s:
                time.sleep(pause_s)
        s.shutdown(socket.SHUT_WR)
        # Wait for the gateway to close its side: it has read everything by then.
        s.settimeout(10)
        while s.recv(4096):
            pass


@pytest.mark.parametrize("log_name", GPSD_LOGS)
def test_each_gpsd_log_lands_fix_for_fix(
    log_name: str, services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    token = register(db_url, "rx-1", "acme", "tracker")
    # gpsd's comment lines are not NMEA; the corpus README says to drop them before feeding.
    lines = [
        line for line in (NMEA_CORPUS / f"{log_name}.log").read_bytes().splitlines(keepends=True)
        if not line.startswith(b"#")
    ]  # fmt: skip
    expected = [
        json.loads(line)
        for line in (NMEA_CORPUS / f"{log_name}.expected.jsonl").read_text().splitlines()
    ]
    with running_gateway(fixgate_env, tmp_path, **CORPUS_SETTINGS) as gw:
        stream(gw.tcp_port, login_sentence("rx-1", token) + b"".join(lines), chunk=1000)
        assert wait_for(lambda: count(db_url, "rx-1") >= len(expected)), gw.log()
    stored = rows(db_url, "rx-1")
    by_time = {row["time"]: row for row in stored}
    by_time_of_day = {row["time"].time(): row for row in stored}
    for want in expected:
        t = datetime.fromisoformat(want["time"].replace("Z", "+00:00"))
        row = by_time.get(t) if want.get("date_ok", True) else by_time_of_day.get(t.time())
        assert row is not None, f"no stored fix at {want['time']}"
        assert row["valid"], want
        assert abs(row["lat"] - want["lat"]) < 1e-6 and abs(row["lon"] - want["lon"]) < 1e-6, (
            row,
            want,
        )
        # Where gpsd measured speed and track, so must the stored row (the cycle whose date
        # gpsd guessed has only GGA/GLL: gpsd's speed there is carried over, not measured).
        measured = want.get("date_ok", True)
        assert not (measured and "speed" in want) or abs(row["speed"] - want["speed"]) < 0.01, (
            row,
            want,
        )
        assert not (measured and "track" in want) or abs(row["heading"] - want["track"]) < 0.01, (
            row,
            want,
        )


def test_pynmea2_examples_log_does_not_break_the_connection(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    """A GGA, a route, an unknown sentence, a non-NMEA line, a wind sentence: nothing crashes,
    and a good device fix after them on the same connection is stored."""
    token = register(db_url, "rx-2", "acme", "tracker")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
    data = (
        (NMEA_CORPUS / "pynmea2-examples-data.log").read_bytes() + b"\r\n" + rmc_gga(t, 52.5, 13.4)
    )
    with running_gateway(fixgate_env, tmp_path) as gw:
        stream(gw.tcp_port, login_sentence("rx-2", token) + data)
        assert wait_for(lambda: count(db_url, "rx-2") >= 1), gw.log()
    assert t in {row["time"] for row in rows(db_url, "rx-2")}


def corrupt(sentences: bytes) -> bytes:
    """The same sentences, each with a wrong checksum."""
    out = []
    for line in sentences.splitlines():
        body, checksum = line.rsplit(b"*", 1)
        out.append(body + b"*" + f"{int(checksum, 16) ^ 0xFF:02X}".encode() + b"\r\n")
    return b"".join(out)


def _good_device(
    port: int, device_id: str, token: str, n: int, t0: datetime, done: threading.Event
) -> None:
    data = login_sentence(device_id, token) + b"".join(
        rmc_gga(t0 + timedelta(seconds=i), 52.5 + i * 1e-5, 13.4) for i in range(n)
    )
    try:
        stream(port, data, chunk=300, pause_s=0.01)
    finally:
        done.set()


def _send_and_close(port: int, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            while s.recv(4096):
                pass
        except OSError:
            pass  # the gateway may close on us first: that is the point


def test_bad_tcp_input_is_counted_and_harms_no_one(
    services: Services, db_url: str, fixgate_env: dict[str, str], redis_prefix: str, tmp_path: Path
) -> None:
    good_token = register(db_url, "good-1", "acme", "tow_truck")
    bad_token = register(db_url, "victim", "acme", "tow_truck")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    n = 200
    with running_gateway(fixgate_env, tmp_path, tcp_login_timeout_s="1") as gw:
        port = gw.tcp_port
        done = threading.Event()
        good = threading.Thread(target=_good_device, args=(port, "good-1", good_token, n, t0, done))
        good.start()
        silent = socket.create_connection(("127.0.0.1", port))  # connects, says nothing
        _send_and_close(port, os.urandom(64 * 1024))  # binary garbage
        _send_and_close(
            port, login_sentence("victim", bad_token) + b"$GPRMC," + b"9" * (1 << 20) + b"\r\n"
        )
        _send_and_close(port, login_sentence("victim", bad_token[:-1] + "x") + rmc_gga(t0, 1, 2))
        _send_and_close(port, login_sentence("nobody", bad_token) + rmc_gga(t0, 1, 2))
        _send_and_close(port, rmc_gga(t0, 1, 2) * 100)  # no login at all
        bad_checksums = b"".join(
            corrupt(rmc_gga(t0 + timedelta(seconds=i), 1, 2)) for i in range(10)
        )
        _send_and_close(port, login_sentence("victim", bad_token) + bad_checksums)
        assert done.wait(60)
        good.join()
        assert wait_for(
            lambda: (
                gw.metric(
                    "fixgate_tcp_connections_closed_total", protocol="nmea", reason="login_timeout"
                )
                >= 1
            ),
            10,
        )
        silent.close()
        assert wait_for(lambda: count(db_url, "good-1") == n), gw.log()
        assert gw.proc.poll() is None and gw.ready()
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="nmea", reason="line_too_long") >= 1
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="nmea", reason="bad_checksum") == 20
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="nmea", reason="not_logged_in") >= 1
        )
        assert gw.metric("fixgate_auth_refused_total", listener="tcp", reason="wrong_token") == 1
        assert gw.metric("fixgate_auth_refused_total", listener="tcp", reason="unknown_device") == 1
        assert _closed_for_errors(gw) >= 1
    stored = rows(db_url, "good-1")
    assert [r["time"] for r in stored] == [t0 + timedelta(seconds=i) for i in range(n)]
    assert count(db_url, "victim") == 0 and count(db_url, "nobody") == 0
    newest = live(services.redis_url, redis_prefix, "good-1")
    assert datetime.fromisoformat(newest["time"]) == t0 + timedelta(seconds=n - 1)


def _closed_for_errors(gw: GatewayProcess) -> float:
    """Connections the error budget closed (binary garbage, floods of bad lines)."""
    total = 0.0
    for line in gw.metrics_text().splitlines():
        if (
            line.startswith("fixgate_tcp_connections_closed_total{")
            and "timeout" not in line
            and "login_refused" not in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_live_position_follows_the_newest_fix_across_devices(
    services: Services, db_url: str, fixgate_env: dict[str, str], redis_prefix: str, tmp_path: Path
) -> None:
    tokens = {f"truck-{i}": register(db_url, f"truck-{i}", "acme", "tow_truck") for i in range(5)}
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with running_gateway(fixgate_env, tmp_path) as gw:
        for i, (device, token) in enumerate(tokens.items()):
            fixes = [rmc_gga(t0 + timedelta(seconds=k), 50 + i, 10 + k * 1e-4) for k in range(20)]
            # The last one sent is older: a late fix must not move the live position back.
            late = rmc_gga(t0 - timedelta(seconds=30), 50 + i, 10.0)
            stream(gw.tcp_port, login_sentence(device, token) + b"".join(fixes) + late)
        assert wait_for(lambda: count(db_url) == 5 * 21), gw.log()
        assert wait_for(lambda: gw.metric("fixgate_fixes_late_total") == 5)
    for i, device in enumerate(tokens):
        newest = live(services.redis_url, redis_prefix, device)
        assert datetime.fromisoformat(newest["time"]) == t0 + timedelta(seconds=19)
        assert abs(float(newest["lat"]) - (50 + i)) < 1e-9


def test_sentences_of_one_epoch_merge_into_one_fix(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    token = register(db_url, "rx-3", "acme", "tracker")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    hms, dmy = t.strftime("%H%M%S"), t.strftime("%d%m%y")
    epoch = (
        sentence(f"GNGGA,{hms}.00,4807.0380,N,01131.0000,E,1,08,0.9,545.4,M,46.9,M,,")
        + sentence("GNGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1")
        + sentence(f"GNRMC,{hms}.00,A,4807.0380,N,01131.0000,E,022.4,084.4,{dmy},,,A")
        + sentence("GNVTG,084.4,T,,M,022.4,N,041.5,K,A")
    )
    with running_gateway(fixgate_env, tmp_path) as gw:
        stream(gw.tcp_port, login_sentence("rx-3", token) + epoch)
        assert wait_for(lambda: count(db_url, "rx-3") == 1), gw.log()
    (row,) = rows(db_url, "rx-3")
    assert row["time"] == t and row["altitude"] == pytest.approx(545.4) and row["satellites"] == 8
    assert row["speed"] == pytest.approx(22.4 * 1852 / 3600, abs=1e-4) and row[
        "heading"
    ] == pytest.approx(84.4)


def test_values_the_database_cannot_hold_are_rejected_and_block_no_one(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    """A GGA claiming 99,999 satellites or an altitude of 1e39 m decodes (the numbers are
    well formed) but fits no column: such a fix is rejected as out of range and counted,
    and the fixes around it, of this device and another, are stored."""
    odd_token = register(db_url, "odd-1", "acme", "tracker")
    good_token = register(db_url, "good-2", "acme", "tracker")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    odd = [
        rmc_gga(t0, 52.5, 13.4),
        rmc_gga(t0 + timedelta(seconds=1), 52.5, 13.4, satellites=99_999),
        rmc_gga(t0 + timedelta(seconds=2), 52.5, 13.4, altitude_m=1e39),
        rmc_gga(t0 + timedelta(seconds=3), 52.5, 13.4, hdop=1e39),
        rmc_gga(t0 + timedelta(seconds=4), 52.5, 13.4, altitude_m=-1e39),
        rmc_gga(t0 + timedelta(seconds=5), 52.5, 13.4),
    ]
    good = [rmc_gga(t0 + timedelta(seconds=i), 48.1, 11.6) for i in range(6)]
    with running_gateway(fixgate_env, tmp_path) as gw:
        stream(gw.tcp_port, login_sentence("odd-1", odd_token) + b"".join(odd))
        stream(gw.tcp_port, login_sentence("good-2", good_token) + b"".join(good))
        assert wait_for(lambda: count(db_url, "good-2") == 6), gw.log()
        assert wait_for(lambda: count(db_url, "odd-1") == 2), gw.log()
        assert gw.metric("fixgate_fixes_rejected_total", reason="out_of_range") == 4
        assert gw.ready()
    assert [r["time"] for r in rows(db_url, "odd-1")] == [t0, t0 + timedelta(seconds=5)]
