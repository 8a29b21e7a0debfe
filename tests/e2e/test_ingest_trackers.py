"""End to end through the tracker and phone listeners: raw sockets and httpx -> `fixgate
gateway` -> TimescaleDB. Every acknowledgement is checked to come after the commit: the
rows are read the moment the answer arrives, without waiting."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devices.gt06.framer import build_frame
from devtools.trackers import (
    Record,
    gt06_heartbeat,
    gt06_location,
    gt06_login,
    recv_exactly,
    teltonika_datagram,
    teltonika_login,
    teltonika_packet,
)
from tests.support.gateway import GatewayProcess, running_gateway, wait_for
from tests.support.ingest import count, register, rows
from tests.support.services import Services

IMEI = "356307042441013"
OTHER_IMEI = "356307042441021"


def base_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


def records(t0: datetime, n: int, lat: float = 52.5) -> list[Record]:
    """n records a second apart; every fifth a crash event; IO on all of them."""
    return [
        Record(
            time=t0 + timedelta(seconds=i), lat=lat + i * 1e-4, lon=13.4,
            io={239: i % 2, 66: 12_000 + i, 16: 1_000_000 + 10 * i, **({247: 1} if i % 5 == 0 else {})},
            event_io=247 if i % 5 == 0 else 0,
        )
        for i in range(n)
    ]  # fmt: skip


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def teltonika_logged_in(port: int, imei: str = IMEI) -> socket.socket:
    sock = connect(port)
    sock.sendall(teltonika_login(imei))
    assert recv_exactly(sock, 1) == b"\x01"
    return sock


def test_teltonika_login_packet_ack_after_commit_and_every_record_once(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "truck-1", "acme", "tow_truck", imei=IMEI)
    t0 = base_time()
    packet = teltonika_packet(records(t0, 25))
    with running_gateway(fixgate_env, tmp_path) as gw:
        with connect(gw.teltonika_port) as refused:
            refused.sendall(teltonika_login(OTHER_IMEI))
            assert recv_exactly(refused, 2) == b"\x00"  # then closed: one byte only
        with teltonika_logged_in(gw.teltonika_port) as sock:
            sock.sendall(packet)
            assert recv_exactly(sock, 4) == (25).to_bytes(4, "big")
            assert count(db_url, "truck-1") == 25  # acknowledged only once committed
            sock.sendall(packet)  # a unit that missed the ack sends the packet again
            assert recv_exactly(sock, 4) == (25).to_bytes(4, "big")
        assert (
            gw.metric("fixgate_auth_refused_total", listener="teltonika", reason="unknown_device")
            == 1
        )
    stored = rows(db_url, "truck-1")
    assert [r["time"] for r in stored] == [t0 + timedelta(seconds=i) for i in range(25)]
    assert [r["ignition"] for r in stored] == [bool(i % 2) for i in range(25)]
    assert [r["power_v"] for r in stored] == pytest.approx([(12_000 + i) / 1000 for i in range(25)])
    assert [r["odometer_m"] for r in stored] == [1_000_000.0 + 10 * i for i in range(25)]
    assert [r["alarm"] for r in stored] == ["crash" if i % 5 == 0 else None for i in range(25)]
    assert {r["protocol"] for r in stored} == {"teltonika"}


def test_teltonika_udp_datagram_acknowledged_once_durable(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "truck-2", "acme", "tow_truck", imei=IMEI)
    t0 = base_time()
    with (
        running_gateway(fixgate_env, tmp_path) as gw,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
    ):
        udp.settimeout(10)
        udp.sendto(
            teltonika_datagram(IMEI, records(t0, 12), packet_id=0x0A0B),
            ("127.0.0.1", gw.teltonika_port),
        )
        reply, _ = udp.recvfrom(64)
        assert reply == bytes.fromhex("0005 0A0B 01 0B 0C")
        assert count(db_url, "truck-2") == 12
        udp.sendto(teltonika_datagram(OTHER_IMEI, records(t0, 3)), ("127.0.0.1", gw.teltonika_port))
        assert wait_for(
            lambda: (
                gw.metric(
                    "fixgate_udp_datagrams_refused_total",
                    protocol="teltonika",
                    reason="unknown_device",
                )
                == 1
            )
        )
    assert count(db_url, "truck-2") == 12


def test_gt06_login_location_and_heartbeat_get_the_protocols_responses(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "van-1", "acme", "service_van", imei=IMEI)
    t = base_time()
    with running_gateway(fixgate_env, tmp_path) as gw:
        with connect(gw.gt06_port) as sock:
            sock.sendall(gt06_login(IMEI, serial=7))
            assert recv_exactly(sock, 10) == build_frame(0x01, b"", 7)
            sock.sendall(gt06_location(t, 48.1, 11.6, serial=8) + gt06_heartbeat(serial=9))
            assert recv_exactly(sock, 10) == build_frame(
                0x13, b"", 9
            )  # after the location's commit
            assert count(db_url, "van-1") == 1
        with connect(gw.gt06_port) as unknown:
            unknown.sendall(gt06_login(OTHER_IMEI))
            assert recv_exactly(unknown, 1) == b""  # no refusal in GT06: closed
        assert (
            gw.metric("fixgate_auth_refused_total", listener="gt06", reason="unknown_device") == 1
        )
    (row,) = rows(db_url, "van-1")
    assert row["time"] == t and row["lat"] == pytest.approx(48.1) and row["protocol"] == "gt06"


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def test_traccar_client_and_owntracks_http_answered_after_commit(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "phone-1", "acme", "phone", traccar_id="814201")
    token = register(db_url, "phone-2", "acme", "phone", owntracks="jane/pixel")
    t = base_time()
    with running_gateway(fixgate_env, tmp_path) as gw:
        url = f"http://127.0.0.1:{gw.osmand_port}"
        with httpx.Client(timeout=15) as http:
            query = {
                "id": "814201",
                "lat": "52.5",
                "lon": "13.4",
                "timestamp": str(int(t.timestamp())),
                "speed": "10",
                "batt": "80",
            }
            assert http.get(url + "/", params=query).status_code == 200
            assert count(db_url, "phone-1") == 1
            body = {
                "device_id": "814201",
                "location": {
                    "timestamp": (t + timedelta(seconds=1)).isoformat(),
                    "coords": {
                        "latitude": 52.51,
                        "longitude": 13.41,
                        "speed": 3.5,
                        "heading": -1,
                        "accuracy": 8,
                    },
                    "battery": {"level": 0.5},
                },
            }
            assert http.post(url + "/", json=body).status_code == 200
            assert count(db_url, "phone-1") == 2
            assert http.get(url + "/", params={**query, "id": "nobody"}).status_code == 403
            assert (
                http.get(url + "/", params={"id": "814201", "lat": "95", "lon": "1"}).status_code
                == 400
            )

            location = {
                "_type": "location",
                "tst": int(t.timestamp()),
                "lat": 47.1,
                "lon": 8.2,
                "acc": 12,
            }
            headers = {
                "X-Limit-U": "jane",
                "X-Limit-D": "pixel",
                "Authorization": basic("jane", token),
            }
            answer = http.post(url + "/owntracks", json=location, headers=headers)
            assert (answer.status_code, answer.json()) == (200, [])
            assert count(db_url, "phone-2") == 1
            wrong = {**headers, "Authorization": basic("jane", token[:-1] + "x")}
            assert http.post(url + "/owntracks", json=location, headers=wrong).status_code == 401
            by_path = http.post(
                url + "/owntracks/jane/pixel",
                json={**location, "tst": location["tst"] + 5},
                headers={"Authorization": basic("jane", token)},
            )
            assert by_path.status_code == 200
            assert count(db_url, "phone-2") == 2
        assert (
            gw.metric("fixgate_auth_refused_total", listener="owntracks_http", reason="wrong_token")
            == 1
        )
        assert (
            gw.metric("fixgate_auth_refused_total", listener="osmand", reason="unknown_device") == 1
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="osmand", reason="out_of_range") == 1
        )
    first, second = rows(db_url, "phone-1")
    assert (first["time"], first["battery"], first["protocol"]) == (t, 80, "osmand")
    assert first["speed"] == pytest.approx(10 * 1852 / 3600, abs=1e-3)
    assert (second["accuracy"], second["heading"], second["battery"]) == (8.0, None, 50)


def _good_truck(port: int, t0: datetime, packets: int, done: threading.Event) -> None:
    try:
        with teltonika_logged_in(port) as sock:
            for p in range(packets):
                sock.sendall(teltonika_packet(records(t0 + timedelta(seconds=20 * p), 20)))
                assert recv_exactly(sock, 4) == (20).to_bytes(4, "big")
                time.sleep(0.05)
    finally:
        done.set()


def _send_and_close(port: int, data: bytes) -> bytes:
    """Send, half-close, return what the gateway answered before closing."""
    got = b""
    with connect(port) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                got += chunk
        except OSError:
            pass  # the gateway may close on us first: that is the point
    return got


def closed(gw: GatewayProcess, reason: str) -> float:
    return gw.metric("fixgate_tcp_connections_closed_total", protocol="teltonika", reason=reason)


def test_bad_tracker_input_is_counted_by_reason_and_harms_no_one(
    services: Services, db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "good-1", "acme", "tow_truck", imei=IMEI)
    register(db_url, "victim", "acme", "tow_truck", imei=OTHER_IMEI)
    t0 = base_time()
    with running_gateway(fixgate_env, tmp_path, tcp_login_timeout_s="1") as gw:
        port = gw.teltonika_port
        done = threading.Event()
        good = threading.Thread(target=_good_truck, args=(port, t0, 10, done))
        good.start()
        silent = connect(port)  # connects, says nothing
        _send_and_close(port, os.urandom(64 * 1024))  # binary garbage instead of a login
        oversize = teltonika_login(OTHER_IMEI) + b"\x00\x00\x00\x00" + (1 << 30).to_bytes(4, "big")
        assert _send_and_close(port, oversize) == b"\x01"
        bad_crc = teltonika_login(OTHER_IMEI) + teltonika_packet(
            records(t0, 5, lat=10.0), corrupt_crc=True
        )
        assert _send_and_close(port, bad_crc) == b"\x01"  # and no record count
        assert _send_and_close(port, teltonika_login("356307042449999")) == b"\x00"
        _send_and_close(gw.gt06_port, os.urandom(4096))
        assert done.wait(60)
        good.join()
        assert wait_for(lambda: closed(gw, "login_timeout") >= 1, 10)
        silent.close()
        assert count(db_url, "good-1") == 200
        assert gw.proc.poll() is None and gw.ready()
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="teltonika", reason="bad_checksum")
            == 1
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="teltonika", reason="frame_too_large")
            == 1
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="teltonika", reason="bad_login") >= 1
        )
        assert gw.metric("fixgate_decode_errors_total", protocol="gt06", reason="bad_frame") >= 1
        assert (
            gw.metric("fixgate_auth_refused_total", listener="teltonika", reason="unknown_device")
            == 1
        )
        assert closed(gw, "protocol_error") >= 2  # the garbage and the oversize length
    assert count(db_url, "victim") == 0
