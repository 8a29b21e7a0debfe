"""Issue 20, the device half: every test an attack that must fail, beside the legitimate
use that must still work, against the real Mosquitto with its own authentication."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import paho.mqtt.client as paho
import pytest

from gateway.config import mqtt_address
from gateway.registry.broker import tls_context
from tests.support.broker import DevicePublisher, account_url, attempt, device_client
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, live, register, rows, sentence
from tests.support.paths import FIXGATE_BIN
from tests.support.services import Services


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def fix(t: datetime, lat: float, lon: float) -> bytes:
    return json.dumps({"time": iso(t), "lat": lat, "lon": lon}).encode()


def published(pub: DevicePublisher, topic: str, payload: bytes) -> None:
    info = pub.publish(topic, payload)
    info.wait_for_publish(10)
    assert info.is_published()


def connect_refused(services: Services, username: str | None, password: str | None) -> bool:
    """Whether the broker refuses a CONNECT with these credentials (None: anonymous)."""
    host, port, _, _ = mqtt_address(services.mqtt_url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe")
    if username is not None:
        client.username_pw_set(username, password)
    answered = threading.Event()
    codes: list[object] = []

    def on_connect(*args: object) -> None:
        codes.append(args[3])
        answered.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    try:
        assert answered.wait(5), "no CONNACK"
        return bool(getattr(codes[0], "is_failure", False))
    finally:
        client.disconnect()
        client.loop_stop()


def subscription_granted(client: paho.Client, topic: str) -> bool:
    done = threading.Event()
    granted: list[bool] = []

    def on_subscribe(_c: object, _u: object, _mid: object, codes: list[object], _p: object) -> None:
        granted.append(not any(getattr(c, "is_failure", False) for c in codes))
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert done.wait(5), "no SUBACK"
    return granted[0]


# ---- the broker ---------------------------------------------------------------------


def test_anonymous_and_wrong_passwords_are_refused_and_a_device_logs_in_as_itself(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    register(db_url, "van-a", "acme")
    register(db_url, "van-b", "acme")
    assert connect_refused(services, None, None)
    assert connect_refused(services, "van-a", "not-its-token-0000000")
    assert connect_refused(services, "nobody", "whatever-it-is-00000")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    with running_gateway(fixgate_env, tmp_path) as gw:
        # A as B, on B's topic and on another tenant's: refused, cut off, nothing stored.
        assert not attempt(
            services.mqtt_url, "van-a", f"{mqtt_prefix}fixgate/acme/van-b/fix", fix(t, 1, 2)
        )
        assert not attempt(
            services.mqtt_url, "van-a", f"{mqtt_prefix}fixgate/zeta/van-a/fix", fix(t, 1, 2)
        )
        # A reading B's fixes, or anyone's: no subscription is granted to a device.
        reader = device_client(services.mqtt_url, "van-a")
        try:
            assert not subscription_granted(reader, f"{mqtt_prefix}fixgate/acme/van-b/fix")
            assert not subscription_granted(reader, "#")
        finally:
            reader.disconnect()
            reader.loop_stop()
        # A as A: stored.
        pub = DevicePublisher(services.mqtt_url, mqtt_prefix)
        published(pub, f"{mqtt_prefix}fixgate/acme/van-a/fix", fix(t, 52.5, 13.4))
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "van-a") == 1), gw.log()
        assert gw.metric("fixgate_mqtt_messages_received_total") == 1
    assert count(db_url, "van-b") == 0


def test_the_gateways_session_cannot_be_taken_and_devices_read_nothing_through_it(
    services: Services, db_url: str, gateway_mqtt_url: str, mqtt_prefix: str
) -> None:
    """A device connecting with the gateway's client id gets a session of its own (the
    broker names sessions after accounts), so it neither cuts the gateway off nor reads."""
    register(db_url, "van-c", "acme")
    host, port, user, password = mqtt_address(gateway_mqtt_url)
    gateway = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fixgate-gateway")
    gateway.username_pw_set(user, password)
    gateway.connect(host, port)
    gateway.loop_start()
    thief = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user or "", clean_session=False)
    thief.username_pw_set("van-c", device_token("van-c"))
    thief.connect(host, port)
    thief.loop_start()
    try:
        assert wait_for(lambda: gateway.is_connected() and thief.is_connected(), 5)
        time.sleep(1)
        assert gateway.is_connected() and thief.is_connected()
        assert not subscription_granted(thief, f"{mqtt_prefix}fixgate/+/+/fix")
        assert subscription_granted(gateway, f"{mqtt_prefix}fixgate/+/+/fix")
    finally:
        for client in (gateway, thief):
            client.disconnect()
            client.loop_stop()


def device_token(login: str) -> str:
    from tests.support.broker import token_of

    return token_of(login)


def test_a_device_registered_for_nmea_cannot_send_json_over_mqtt(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    register(db_url, "truck-n", "acme", protocols=("nmea",))
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    hms, dmy = t.strftime("%H%M%S"), t.strftime("%d%m%y")
    nmea = sentence(f"GPRMC,{hms}.00,A,4807.038,N,01131.000,E,022.4,084.4,{dmy},,,A")
    with running_gateway(fixgate_env, tmp_path) as gw:
        assert not attempt(
            services.mqtt_url, "truck-n", f"{mqtt_prefix}fixgate/acme/truck-n/fix", fix(t, 1, 2)
        )
        pub = DevicePublisher(services.mqtt_url, mqtt_prefix)
        published(pub, f"{mqtt_prefix}fixgate/acme/truck-n/nmea", nmea)
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "truck-n") == 1), gw.log()
    assert [r["protocol"] for r in rows(db_url, "truck-n")] == ["nmea"]


def test_a_disabled_device_is_refused_by_the_broker_within_a_second(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    """Disabled by a path that tells the broker nothing (SQL): the gateway follows the
    registry's NOTIFY onto the broker. Then enabled again with `fixgate device enable`."""
    register(db_url, "van-d", "acme")
    env = {**fixgate_env, "FIXGATE_MQTT_ADMIN_URL": services.mqtt_admin_url or ""}
    with running_gateway(env, tmp_path) as gw:
        client = device_client(services.mqtt_url, "van-d")
        lost = threading.Event()
        client.on_disconnect = lambda *args: lost.set()

        async def disable() -> float:
            conn = await asyncpg.connect(db_url)
            try:
                await conn.execute("UPDATE devices SET enabled = false WHERE id = 'van-d'")
                return time.monotonic()
            finally:
                await conn.close()

        committed = asyncio.run(disable())
        assert lost.wait(5), gw.log()
        assert time.monotonic() - committed < 1.0
        client.loop_stop()
        assert connect_refused(services, "van-d", device_token("van-d"))
        enabled = subprocess.run(
            [FIXGATE_BIN, "device", "enable", "van-d"], env=env, capture_output=True, text=True
        )
        assert enabled.returncode == 0, enabled.stderr
        assert not connect_refused(services, "van-d", device_token("van-d"))
        t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        pub = DevicePublisher(services.mqtt_url, mqtt_prefix)
        published(pub, f"{mqtt_prefix}fixgate/acme/van-d/fix", fix(t, 52.5, 13.4))
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "van-d") == 1), gw.log()


def test_the_gateway_over_mqtts_with_the_stacks_ca_stores_fixes(
    services: Services,
    db_url: str,
    fixgate_env: dict[str, str],
    gateway_mqtt_url: str,
    mqtt_prefix: str,
    tmp_path: Path,
) -> None:
    if services.mqtt_tls_url is None or services.mqtt_ca_file is None:
        pytest.fail("the broker under test offers no TLS listener")
    register(db_url, "van-t", "acme")
    _, _, user, password = mqtt_address(gateway_mqtt_url)
    env = {
        **fixgate_env,
        "FIXGATE_MQTT_URL": account_url(services.mqtt_tls_url, user or "", password or ""),
        "FIXGATE_MQTT_CA_FILE": services.mqtt_ca_file,
    }
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    with running_gateway(env, tmp_path) as gw:
        pub = DevicePublisher(services.mqtt_url, mqtt_prefix)
        published(pub, f"{mqtt_prefix}fixgate/acme/van-t/fix", fix(t, 52.5, 13.4))
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "van-t") == 1), gw.log()
    # Without the stack's CA the broker's certificate is not trusted: no connection.
    host, port, _, _ = mqtt_address(services.mqtt_tls_url)
    untrusted = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="untrusted")
    untrusted.tls_set_context(tls_context(None))
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusted.connect(host, port)


# ---- a fix cannot take over a device ------------------------------------------------


def test_a_fix_dated_290_s_ahead_is_refused_and_real_fixes_move_the_live_position(
    services: Services,
    db_url: str,
    fixgate_env: dict[str, str],
    mqtt_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    register(db_url, "van-f", "acme")
    topic = f"{mqtt_prefix}fixgate/acme/van-f/fix"
    now = datetime.now(UTC).replace(microsecond=0)
    with running_gateway(fixgate_env, tmp_path) as gw:
        pub = DevicePublisher(services.mqtt_url, mqtt_prefix)
        published(pub, topic, fix(now - timedelta(seconds=2), 52.5, 13.4))
        # 290 s ahead (inside the old 300 s allowance), 29 km away: refused.
        published(pub, topic, fix(now + timedelta(seconds=290), 52.76, 13.4))
        assert wait_for(lambda: gw.metric("fixgate_fixes_rejected_total", reason="future") == 1)
        # The device's real fixes, after it: each moves the live position.
        for i, lat in enumerate((52.5001, 52.5002, 52.5003), start=1):
            published(pub, topic, fix(datetime.now(UTC) + timedelta(milliseconds=i), lat, 13.4))
            assert wait_for(
                lambda lat=lat: (
                    live(services.redis_url, redis_prefix, "van-f").get("lat") == repr(lat)
                )
            ), live(services.redis_url, redis_prefix, "van-f")
        # 25 s ahead is within the allowance: stored, but it holds the live position only
        # until the next real fix (newest by min(fix time, received time)).
        published(pub, topic, fix(datetime.now(UTC) + timedelta(seconds=25), 52.5004, 13.4))
        time.sleep(0.2)
        published(pub, topic, fix(datetime.now(UTC), 52.5005, 13.4))
        assert wait_for(
            lambda: live(services.redis_url, redis_prefix, "van-f").get("lat") == "52.5005"
        )
        pub.disconnect()
        assert gw.metric("fixgate_fixes_late_total") == 0
    assert count(db_url, "van-f") == 6


# ---- payload caps -------------------------------------------------------------------


def test_an_8_mib_nmea_message_stalls_nobody_and_is_not_redelivered(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    register(db_url, "steady-1", "acme")
    register(db_url, "big-1", "acme")
    steady = DevicePublisher(services.mqtt_url, mqtt_prefix)
    stop = threading.Event()
    sent: list[datetime] = []

    def keep_sending() -> None:
        while not stop.is_set():
            t = datetime.now(UTC)
            steady.publish(f"{mqtt_prefix}fixgate/acme/steady-1/fix", fix(t, 48.1, 11.5))
            sent.append(t)
            time.sleep(0.1)

    def newest_stored() -> datetime | None:
        stored = rows(db_url, "steady-1")
        return stored[-1]["time"] if stored else None

    nmea_topic = f"{mqtt_prefix}fixgate/acme/big-1/nmea"
    line = sentence("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00")
    with running_gateway(fixgate_env, tmp_path) as gw:
        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        try:
            assert wait_for(lambda: newest_stored() is not None), gw.log()
            # 8 MiB: over the broker's packet bound, which cuts the sender off; it
            # reaches nobody.
            assert not attempt(
                services.mqtt_url, "big-1", nmea_topic, line * (8 * 2**20 // len(line))
            )
            # Under the broker's bound but over the gateway's (bytes, then lines):
            # refused whole, acknowledged, counted.
            big = DevicePublisher(services.mqtt_url, mqtt_prefix)
            published(big, nmea_topic, line * (900 * 1024 // len(line)))
            published(big, nmea_topic, sentence("GPGSV,1,1,00") * 250)  # 4.5 KB, 250 lines
            big.disconnect()
            assert wait_for(
                lambda: (
                    gw.metric(
                        "fixgate_mqtt_messages_refused_total",
                        protocol="nmea",
                        reason="payload_too_large",
                    )
                    == 1
                    and gw.metric(
                        "fixgate_mqtt_messages_refused_total",
                        protocol="nmea",
                        reason="too_many_lines",
                    )
                    == 1
                )
            ), gw.log()
            # Meanwhile, and right after, the other device's fixes are stored within a second.
            time.sleep(1.0)
            last_sent = sent[-1]
            assert wait_for(lambda: (newest_stored() or last_sent) >= last_sent, timeout_s=1.0)
            assert gw.ready() and gw.proc.poll() is None
        finally:
            stop.set()
            sender.join()
            steady.disconnect()
    # A restart of the gateway (same account, same persistent session): nothing comes back.
    with running_gateway(fixgate_env, tmp_path) as gw:
        time.sleep(2.0)
        assert (
            gw.metric(
                "fixgate_mqtt_messages_refused_total", protocol="nmea", reason="payload_too_large"
            )
            == 0
        )
        assert gw.metric("fixgate_mqtt_messages_received_total") == 0
    assert count(db_url, "big-1") == 0


# ---- guessing -----------------------------------------------------------------------


def test_150_unknown_traccar_ids_from_one_address_throttle_it_and_nobody_else(
    db_url: str, fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    register(db_url, "phone-t", "acme", "phone", traccar_id="a1b2c3d4e5f60718293a4b5c6d7e8f90")
    t = int(time.time()) - 60
    with running_gateway(fixgate_env, tmp_path) as gw:
        url = f"http://127.0.0.1:{gw.osmand_port}/"
        guesser = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10)
        device = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=10)
        with guesser, device:
            answers = [
                guesser.get(url, params={"id": f"{100000 + i}", "lat": "52.5", "lon": "13.4",
                                         "timestamp": str(t)}).status_code
                for i in range(150)
            ]  # fmt: skip
            assert answers[:20] == [403] * 20
            assert set(answers[21:]) == {429}
            # While blocked, a registered id from that address gets the same answer.
            known = {"id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "lat": "52.5", "lon": "13.4"}
            assert guesser.get(url, params={**known, "timestamp": str(t)}).status_code == 429
            # A registered device from another address is stored at once.
            assert device.get(url, params={**known, "timestamp": str(t + 1)}).status_code == 200
        assert count(db_url, "phone-t") == 1
        assert gw.metric("fixgate_auth_throttled_total", listener="osmand") >= 129
        assert gw.metric("fixgate_auth_blocks_total", listener="osmand") == 1


def test_unknown_imeis_from_one_address_close_its_connections_and_the_cap_per_address(
    fixgate_env: dict[str, str], tmp_path: Path
) -> None:
    import socket

    with running_gateway(
        fixgate_env, tmp_path, auth_max_failures="3", tcp_max_connections_per_address="4"
    ) as gw:

        def login(imei: str, source: str) -> bytes:
            with socket.create_connection(
                ("127.0.0.1", gw.teltonika_port), timeout=5, source_address=(source, 0)
            ) as s:
                s.sendall(len(imei).to_bytes(2, "big") + imei.encode())
                try:
                    return s.recv(1)
                except (ConnectionResetError, TimeoutError):
                    return b""

        assert [login(f"35630704244{i:04d}", "127.0.0.4") for i in range(4)] == [b"\x00"] * 4
        assert login("356307042449999", "127.0.0.4") == b""  # closed before it identifies
        assert gw.metric("fixgate_auth_throttled_total", listener="teltonika") == 1
        # Another address is answered as usual.
        assert login("356307042448888", "127.0.0.5") == b"\x00"
        # At most 4 open connections per address on one listener; the 5th is closed at once.
        held = [
            socket.create_connection(
                ("127.0.0.1", gw.tcp_port), timeout=5, source_address=("127.0.0.6", 0)
            )
            for _ in range(5)
        ]
        try:
            held[-1].settimeout(5)
            assert held[-1].recv(1) == b""
            assert wait_for(
                lambda: (
                    gw.metric(
                        "fixgate_tcp_connections_closed_total",
                        protocol="nmea",
                        reason="per_address_limit",
                    )
                    == 1
                )
            )
        finally:
            for s in held:
                s.close()
