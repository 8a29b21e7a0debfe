"""End to end over MQTT: real publishers -> Mosquitto -> `fixgate gateway` -> TimescaleDB, Redis."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.config import mqtt_address
from tests.support.broker import DevicePublisher, attempt, token_of
from tests.support.gateway import running_gateway, wait_for
from tests.support.ingest import count, live, register, rows, sentence
from tests.support.paths import corpus_file
from tests.support.services import Services


def publisher(services: Services, prefix: str) -> DevicePublisher:
    """Each message published by the device its topic names, logged in as it."""
    return DevicePublisher(services.mqtt_url, prefix)


def publish_all(
    client: DevicePublisher, messages: list[tuple[str, bytes]], as_login: str | None = None
) -> None:
    infos = [
        client.publish(topic, payload, qos=1, as_login=as_login) for topic, payload in messages
    ]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_json_fixes_land_in_history_and_the_newest_in_redis(
    services: Services,
    db_url: str,
    fixgate_env: dict[str, str],
    mqtt_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    register(db_url, "van-1", "acme", "service_van")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    fixes = [
        {
            "time": iso(t0 + timedelta(seconds=i)),
            "lat": 52.5 + i * 1e-4,
            "lon": 13.4 + i * 1e-4,
            "speed": 8.5,
            "heading": 45.0,
        }
        for i in range(30)
    ]
    with running_gateway(fixgate_env, tmp_path) as gw:
        pub = publisher(services, mqtt_prefix)
        topic = f"{mqtt_prefix}fixgate/acme/van-1/fix"
        # One fix per message, then a batch of ten in one message.
        publish_all(
            pub,
            [(topic, json.dumps(f).encode()) for f in fixes[:20]]
            + [(topic, json.dumps(fixes[20:]).encode())],
        )
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "van-1") == 30), gw.log()
        assert gw.metric("fixgate_fixes_stored_total") == 30
    stored = rows(db_url, "van-1")
    for sent, row in zip(fixes, stored, strict=True):
        assert row["time"] == datetime.fromisoformat(sent["time"])
        assert abs(row["lat"] - sent["lat"]) < 1e-6 and abs(row["lon"] - sent["lon"]) < 1e-6
        assert row["tenant_id"] == "acme" and row["protocol"] == "json" and row["valid"]
    newest = live(services.redis_url, redis_prefix, "van-1")
    assert datetime.fromisoformat(newest["time"]) == datetime.fromisoformat(fixes[-1]["time"])
    assert abs(float(newest["lat"]) - fixes[-1]["lat"]) < 1e-9


def test_owntracks_and_nmea_over_mqtt(
    services: Services,
    db_url: str,
    fixgate_env: dict[str, str],
    mqtt_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    register(db_url, "phone-1", "acme", "phone", owntracks="alice/pixel")
    register(db_url, "truck-1", "acme", "tow_truck")
    tst = int(time.time()) - 60
    owntracks = {
        "_type": "location",
        "tst": tst,
        "lat": 48.8566,
        "lon": 2.3522,
        "acc": 12,
        "vel": 36,
        "cog": 118,
        "batt": 80,
    }
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    hms, dmy = t.strftime("%H%M%S"), t.strftime("%d%m%y")
    nmea = sentence(f"GNRMC,{hms}.00,A,4807.038,N,01131.000,E,022.4,084.4,{dmy},,,A") + sentence(
        f"GNGGA,{hms}.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
    )
    with running_gateway(fixgate_env, tmp_path) as gw:
        host, port, _, _ = mqtt_address(services.mqtt_url)
        # As the OwnTracks app logs in: username = its user, password = the token.
        login = ["-h", host, "-p", str(port), "-u", "alice", "-P", token_of("alice"), "-q", "1"]
        subprocess.run(
            ["mosquitto_pub", *login, "-t", f"{mqtt_prefix}owntracks/alice/pixel", "-m", json.dumps(owntracks)],
            check=True, timeout=10,
        )  # fmt: skip
        # Non-location OwnTracks messages are accepted and ignored, not errors.
        subprocess.run(
            ["mosquitto_pub", *login, "-t", f"{mqtt_prefix}owntracks/alice/pixel", "-m", '{"_type":"lwt","tst":1}'],
            check=True, timeout=10,
        )  # fmt: skip
        pub = publisher(services, mqtt_prefix)
        publish_all(pub, [(f"{mqtt_prefix}fixgate/acme/truck-1/nmea", nmea)])
        pub.disconnect()
        assert wait_for(lambda: count(db_url, "phone-1") == 1 and count(db_url, "truck-1") == 1), (
            gw.log()
        )
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="owntracks", reason="invalid_json")
            == 0
        )
    (phone,) = rows(db_url, "phone-1")
    assert phone["time"] == datetime.fromtimestamp(tst, UTC)
    assert (phone["lat"], phone["lon"]) == (48.8566, 2.3522)
    assert (
        phone["speed"] == pytest.approx(10.0) and phone["accuracy"] == 12 and phone["battery"] == 80
    )
    (truck,) = rows(db_url, "truck-1")
    assert truck["time"] == t and truck["protocol"] == "nmea"
    assert (
        abs(truck["lat"] - (48 + 7.038 / 60)) < 1e-6 and abs(truck["lon"] - (11 + 31.0 / 60)) < 1e-6
    )
    assert truck["altitude"] == pytest.approx(545.4) and truck["satellites"] == 8
    assert live(services.redis_url, redis_prefix, "phone-1")["protocol"] == "owntracks"


def test_corpus_owntracks_messages(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    """Every corpus message, on its own topic: positions are stored, the rest is ignored."""
    messages = json.loads(corpus_file("owntracks", "owntracks-messages.json").read_text())
    identities = {m["topic"].split("/")[1] + "/" + m["topic"].split("/")[2] for m in messages}
    for i, identity in enumerate(sorted(identities)):
        register(db_url, f"ot-{i}", "acme", "phone", owntracks=identity)
    positions = [m for m in messages if m["expect"] and m["expect"].get("kind") == "position"]
    with running_gateway(fixgate_env, tmp_path, retention_days="36500", max_speed_mps="1e9") as gw:
        pub = publisher(services, mqtt_prefix)
        publish_all(pub, [(mqtt_prefix + m["topic"], m["payload"].encode()) for m in messages])
        pub.disconnect()
        assert wait_for(lambda: count(db_url) == len(positions)), gw.log()
        # Only location topics are subscribed (`owntracks/+/+`); `/event`, `/cmd`... are not ours.
        on_location_topics = [m for m in messages if m["topic"].count("/") == 2]
        assert gw.metric("fixgate_mqtt_messages_received_total") == len(on_location_topics)
        assert (
            gw.metric("fixgate_decode_errors_total", protocol="owntracks", reason="invalid_json")
            == 0
        )


def test_duplicates_late_fixes_and_rejections(
    services: Services,
    db_url: str,
    fixgate_env: dict[str, str],
    mqtt_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
) -> None:
    register(db_url, "van-2", "acme", "service_van")
    now = datetime.now(UTC).replace(microsecond=0)
    topic = f"{mqtt_prefix}fixgate/acme/van-2/fix"

    def fix(
        t: datetime, lat: float = 52.5, lon: float = 13.4, **extra: object
    ) -> tuple[str, bytes]:
        return topic, json.dumps({"time": iso(t), "lat": lat, "lon": lon, **extra}).encode()

    with running_gateway(fixgate_env, tmp_path) as gw:
        pub = publisher(services, mqtt_prefix)
        publish_all(
            pub, [fix(now - timedelta(seconds=60)), fix(now - timedelta(seconds=60))]
        )  # a resend
        assert wait_for(lambda: gw.metric("fixgate_fixes_stored_total") == 1)
        publish_all(pub, [fix(now - timedelta(seconds=60))])  # resend in a later batch
        assert wait_for(lambda: gw.metric("fixgate_fixes_duplicate_total") == 2), gw.log()
        publish_all(pub, [fix(now - timedelta(seconds=30), 52.501, 13.401)])  # newest
        publish_all(pub, [fix(now - timedelta(seconds=45), 52.5005, 13.4005)])  # late: history only
        publish_all(
            pub, [fix(now - timedelta(seconds=20), 52.502, 13.402, valid=False)]
        )  # the device says: no fix
        publish_all(pub, [fix(now + timedelta(hours=2), 52.503, 13.403)])  # clock far ahead
        publish_all(pub, [fix(now - timedelta(seconds=10), 40.0, -3.7)])  # 1,900 km in 20 s
        publish_all(pub, [fix(now - timedelta(seconds=5), 0.0, 0.0)])  # 0/0
        assert wait_for(
            lambda: gw.metric("fixgate_fixes_rejected_total", reason="zero_coordinates") == 1
        ), gw.log()
        assert gw.metric("fixgate_fixes_late_total") == 1
        assert gw.metric("fixgate_fixes_rejected_total", reason="invalid") == 1
        assert gw.metric("fixgate_fixes_rejected_total", reason="future") == 1
        assert gw.metric("fixgate_fixes_rejected_total", reason="jump") == 1
        pub.disconnect()
    stored = {row["time"]: row for row in rows(db_url, "van-2")}
    # Duplicates once; the late fix is history; invalid and jump are history flagged invalid;
    # the future and 0/0 fixes are not stored at all.
    assert sorted(stored) == [now - timedelta(seconds=s) for s in (60, 45, 30, 20, 10)]
    assert (
        not stored[now - timedelta(seconds=20)]["valid"]
        and not stored[now - timedelta(seconds=10)]["valid"]
    )
    assert stored[now - timedelta(seconds=45)]["valid"]
    newest = live(services.redis_url, redis_prefix, "van-2")
    assert datetime.fromisoformat(newest["time"]) == now - timedelta(seconds=30)
    assert float(newest["lat"]) == 52.501


def test_bad_mqtt_input_is_counted_and_harms_no_one(
    services: Services, db_url: str, fixgate_env: dict[str, str], mqtt_prefix: str, tmp_path: Path
) -> None:
    register(db_url, "good-1", "acme", "tracker")
    register(db_url, "other-tenant", "zeta", "tracker")
    now = datetime.now(UTC).replace(microsecond=0)
    good = [
        (
            f"{mqtt_prefix}fixgate/acme/good-1/fix",
            json.dumps(
                {"time": iso(now - timedelta(seconds=100 - i)), "lat": 1.0 + i * 1e-4, "lon": 2.0}
            ).encode(),
        )
        for i in range(50)
    ]
    spoofed = [
        (f"{mqtt_prefix}fixgate/acme/nobody/fix", good[0][1]),
        (f"{mqtt_prefix}fixgate/acme/other-tenant/fix", good[0][1]),
        (f"{mqtt_prefix}fixgate/zeta/good-1/fix", good[0][1]),
        (f"{mqtt_prefix}owntracks/mallory/phone", b'{"_type":"location","tst":1,"lat":1,"lon":2}'),
    ]
    bad = [
        (f"{mqtt_prefix}fixgate/acme/good-1/fix", b"\x00\xff\xfe garbage"),
        (f"{mqtt_prefix}fixgate/acme/good-1/fix", b'{"time": 5, "lat": "north", "lon": 2}'),
        (
            f"{mqtt_prefix}fixgate/acme/good-1/fix",
            b'{"time": "2026-01-01T00:00:00Z", "lat": 95, "lon": 2}',
        ),
        (
            f"{mqtt_prefix}fixgate/acme/good-1/nmea",
            sentence("GPGGA,120000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").replace(
                b"*", b"*F"
            )[:-3]
            + b"\r\n",
        ),
    ]
    mixed = [m for pair in itertools.zip_longest(good, bad) for m in pair if m is not None]
    with running_gateway(fixgate_env, tmp_path) as gw:
        pub = publisher(services, mqtt_prefix)
        publish_all(pub, mixed)
        pub.disconnect()
        # good-1 claiming other devices' and tenants' topics: the broker refuses the
        # message and cuts the connection (docs/security.md); the gateway never sees it.
        for topic, payload in spoofed:
            assert not attempt(services.mqtt_url, "good-1", topic, payload), topic
        assert wait_for(lambda: count(db_url, "good-1") == 50), gw.log()
        assert wait_for(lambda: gw.metric("fixgate_mqtt_messages_received_total") == len(mixed))
        assert gw.metric("fixgate_decode_errors_total", protocol="json", reason="invalid_json") == 1
        assert gw.metric("fixgate_decode_errors_total", protocol="json", reason="wrong_type") == 1
        assert gw.metric("fixgate_decode_errors_total", protocol="json", reason="out_of_range") == 1
        assert (
            gw.metric("fixgate_auth_refused_total", listener="mqtt", reason="unknown_device") == 0
        )
        assert gw.metric("fixgate_decode_errors_total", protocol="nmea", reason="bad_checksum") == 1
        assert gw.ready() and gw.proc.poll() is None
    assert count(db_url) == 50
