"""The fields appended to `Fix` for the trackers: defaults, and old records still decode."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime

import msgspec

from devices.alarms import Alarm
from devices.fix import Fix, Protocol
from ingest.spool_records import HEADER, MAGIC, decode_payload, encode_record, parse_header
from tests.support.sanity import assert_sane_fix

TIME = datetime(2024, 5, 29, 16, 26, 30, tzinfo=UTC)
# One fix as the spool wrote it before the tracker fields existed (every field it had).
PREVIOUS_VERSION_FIX = {
    "device_id": "truck-7", "tenant_id": "acme", "time": "2024-05-29T16:26:30Z",
    "lat": 54.7146368, "lon": 25.3032016, "altitude": 111.0, "speed": 1.1, "heading": 214.0,
    "accuracy": None, "hdop": 0.9, "satellites": 4, "valid": True, "protocol": "nmea",
    "received_at": "2024-05-29T16:26:31Z", "battery": None,
}  # fmt: skip


def spool_record_of(fixes: list[dict[str, object]]) -> bytes:
    payload = msgspec.msgpack.encode(fixes)
    return HEADER.pack(MAGIC, len(payload), len(fixes), zlib.crc32(payload)) + payload


def test_new_fields_default_to_unknown() -> None:
    fix = Fix(device_id="d", tenant_id="t", time=TIME, lat=1.0, lon=2.0)
    assert (fix.ignition, fix.power_v, fix.odometer_m, fix.alarm) == (None, None, None, None)


def test_a_spool_record_of_the_previous_version_still_decodes() -> None:
    record = spool_record_of([PREVIOUS_VERSION_FIX])
    (fix,) = decode_payload(parse_header(record[: HEADER.size]), record[HEADER.size :])
    assert (fix.lat, fix.protocol, fix.ignition, fix.alarm) == (
        54.7146368, Protocol.NMEA, None, None
    )  # fmt: skip


def test_tracker_fields_round_trip_through_the_spool() -> None:
    fix = Fix(
        device_id="truck-7", tenant_id="acme", time=TIME, lat=54.7, lon=25.3,
        protocol=Protocol.TELTONIKA, ignition=True, power_v=24.079, odometer_m=22_949_000.0,
        alarm=Alarm.CRASH.value,
    )  # fmt: skip
    record = encode_record([fix])
    assert decode_payload(parse_header(record[: HEADER.size]), record[HEADER.size :]) == [fix]


def test_tracker_fields_round_trip_through_json_and_pass_the_sanity_check() -> None:
    fix = Fix(
        device_id="van-3", tenant_id="acme", time=TIME, lat=-34.3, lon=-58.9,
        protocol=Protocol.GT06, ignition=False, alarm=Alarm.SOS.value,
    )  # fmt: skip
    assert_sane_fix(fix)
    assert msgspec.json.decode(msgspec.json.encode(fix), type=Fix).alarm == "sos"


def test_the_new_protocols_are_labels() -> None:
    assert [p.value for p in Protocol][-3:] == ["teltonika", "gt06", "osmand"]
