"""OwnTracks: every corpus message, one-line vectors, fuzzing."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.events import DecodeError, DecodeErrorReason, Ignored
from devices.fix import Fix, Protocol
from devices.jsonfix import MAX_SPEED_MPS
from devices.owntracks import (
    MAX_BATCH_MESSAGES,
    MAX_PAYLOAD_BYTES,
    decode_owntracks,
    decode_owntracks_batch,
)
from devices.topics import TopicKind, TopicRoute, parse_topic
from tests.support.paths import corpus_file
from tests.support.sanity import assert_sane_fix

CORPUS: list[dict[str, Any]] = json.loads(
    corpus_file("owntracks", "owntracks-messages.json").read_text()
)
NOW = 1_717_000_060.0
RECEIVED_AT = datetime.fromtimestamp(NOW, UTC)
DEVICE, TENANT = "phone-jane", "acme"

R = DecodeErrorReason


def decode(payload: bytes | str) -> Fix | Ignored | DecodeError:
    raw = payload.encode() if isinstance(payload, str) else payload
    result = decode_owntracks(raw, DEVICE, TENANT, NOW)
    if isinstance(result, Fix):
        assert_sane_fix(result)
    return result


def a_fix(payload: str) -> Fix:
    result = decode(payload)
    assert isinstance(result, Fix), result
    return result


def an_error(payload: bytes | str) -> DecodeError:
    result = decode(payload)
    assert isinstance(result, DecodeError), result
    return result


# --- The corpus: every message, by its expected kind -----------------------------------

# corpus `expect` key -> Fix attribute; a key the Fix has no field for (tracker_id) is
# not checked. Speeds in the corpus are rounded to 1 mm/s.
EXPECT_TO_FIX = {
    "lat": "lat",
    "lon": "lon",
    "alt_m": "altitude",
    "accuracy_m": "accuracy",
    "speed_mps": "speed",
    "course_deg": "heading",
    "battery_pct": "battery",
}
# corpus kind -> the `_type` the message is ignored as
NO_FIX_KINDS = {
    "lwt": "lwt",
    "geofence_event": "transition",
    "geofence_definition": "waypoint",
    "ignore": "cmd",
}


def by_kind(*kinds: str) -> list[Any]:
    return [pytest.param(m, id=m["id"]) for m in CORPUS if m["expect"]["kind"] in kinds]


def test_corpus_is_all_here() -> None:
    assert len(CORPUS) == 10 and len(by_kind("position", *NO_FIX_KINDS)) == 10


@pytest.mark.parametrize("message", by_kind("position"))
def test_corpus_position(message: dict[str, Any]) -> None:
    expect = message["expect"]
    fix = a_fix(message["payload"])
    route = TopicRoute(TopicKind.OWNTRACKS, expect["user"], expect["device"])
    assert parse_topic(message["topic"]) == route
    assert fix.time == datetime.fromisoformat(expect["time"])
    for key, attribute in EXPECT_TO_FIX.items():
        if key in expect and expect[key] is None:
            assert getattr(fix, attribute) is None, key
        elif key in expect:
            assert getattr(fix, attribute) == pytest.approx(expect[key], abs=5e-4), key
    assert (fix.protocol, fix.received_at, fix.valid) == (Protocol.OWNTRACKS, RECEIVED_AT, True)


@pytest.mark.parametrize("message", by_kind(*NO_FIX_KINDS))
def test_corpus_no_position(message: dict[str, Any]) -> None:
    assert decode(message["payload"]) == Ignored(kind=NO_FIX_KINDS[message["expect"]["kind"]])


@pytest.mark.parametrize("message", by_kind(*NO_FIX_KINDS))
def test_corpus_topics_route_only_the_location_topic(message: dict[str, Any]) -> None:
    route = parse_topic(message["topic"])
    is_location_topic = message["topic"].count("/") == 2
    assert (route is not None) == is_location_topic


# --- One line per vector ------------------------------------------------------------------

LOCATION = '{"_type":"location","tst":1440403798,"lat":51.26,"lon":12.71'


def test_numbers_as_strings_are_read_as_numbers() -> None:
    payload = (
        '{"_type":"location","tst":"1440403798","lat":"51.26","lon":"12.71",'
        '"vel":"36","cog":"118","acc":"5","alt":"166","batt":"88"}'
    )
    assert a_fix(payload) == Fix(
        device_id=DEVICE, tenant_id=TENANT, time=datetime(2015, 8, 24, 8, 9, 58, tzinfo=UTC),
        lat=51.26, lon=12.71, altitude=166.0, speed=10.0, heading=118.0, accuracy=5.0,
        protocol=Protocol.OWNTRACKS, received_at=RECEIVED_AT, battery=88,
    )  # fmt: skip


def test_left_out_fields_are_unknown_not_zero() -> None:
    fix = a_fix(LOCATION + "}")
    assert (fix.altitude, fix.speed, fix.heading, fix.accuracy, fix.battery) == (None,) * 5


def test_minus_one_is_unknown() -> None:
    fix = a_fix(LOCATION + ',"acc":-1,"vel":-1,"cog":-1,"batt":-1,"alt":-1}')
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery, fix.altitude) == (
        None, None, None, None, -1.0,  # altitude has no sentinel: 1 m below sea level
    )  # fmt: skip


def test_zero_is_zero() -> None:
    fix = a_fix(LOCATION + ',"acc":0,"vel":0,"cog":0,"batt":0,"alt":0}')
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery, fix.altitude) == (0, 0, 0, 0, 0)


def test_course_360_is_north() -> None:
    assert a_fix(LOCATION + ',"cog":360}').heading == 0.0


def test_speed_is_converted_from_kmh() -> None:
    assert a_fix(LOCATION + ',"vel":90}').speed == pytest.approx(25.0)


def test_created_at_is_not_the_fix_time() -> None:
    fix = a_fix(LOCATION + ',"created_at":1440403999}')
    assert fix.time == datetime(2015, 8, 24, 8, 9, 58, tzinfo=UTC)


def test_type_may_come_last() -> None:
    assert a_fix('{"tst":1440403798,"lat":1,"lon":2,"_type":"location"}').lat == 1.0


@pytest.mark.parametrize(
    "kind",
    ["beacon", "card", "cmd", "configuration", "encrypted", "lwt", "request", "status",
     "steps", "transition", "waypoint", "waypoints"],
)  # fmt: skip
def test_documented_non_position_types_are_ignored(kind: str) -> None:
    assert decode(f'{{"_type":"{kind}","lat":"not even a number"}}') == Ignored(kind=kind)


def test_unknown_type_is_ignored_under_one_label() -> None:
    assert decode('{"_type":"teleport","lat":1}') == Ignored(kind="unknown")


BAD_PAYLOADS = [
    (b"", R.INVALID_JSON, "truncated"),
    (b'{"_type":"location",', R.INVALID_JSON, "truncated"),
    (b'{"_type":"location"} trailing', R.INVALID_JSON, "trailing"),
    (b"[]", R.WRONG_TYPE, "got `array`"),
    (b'"location"', R.WRONG_TYPE, "got `str`"),
    (b'{"tst":1440403798,"lat":1,"lon":2}', R.WRONG_TYPE, "missing required field `_type`"),
    (b'{"_type":7,"tst":1440403798,"lat":1,"lon":2}', R.WRONG_TYPE, "at `$._type`"),
    (b'{"_type":"location","tst":1440403798,"lon":2}', R.WRONG_TYPE, "field `lat`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"vel":"fast"}', R.WRONG_TYPE,
     "at `$.vel`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"batt":50.5}', R.WRONG_TYPE,
     "at `$.batt`"),
    (b'{"_type":"location","tst":1440403798,"lat":91,"lon":2}', R.OUT_OF_RANGE, "at `$.lat`"),
    (b'{"_type":"location","tst":1440403798,"lat":"inf","lon":2}', R.OUT_OF_RANGE, "`$.lat`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"vel":"inf"}', R.OUT_OF_RANGE,
     "at `$.vel`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"vel":-2}', R.OUT_OF_RANGE,
     "at `$.vel`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"cog":361}', R.OUT_OF_RANGE,
     "at `$.cog`"),
    (b'{"_type":"location","tst":1440403798,"lat":1,"lon":2,"batt":101}', R.OUT_OF_RANGE,
     "at `$.batt`"),
    (b'{"_type":"location","tst":-5,"lat":1,"lon":2}', R.OUT_OF_RANGE, "at `$.tst`"),
    (b'{"_type":"location","tst":1440403798000,"lat":1,"lon":2}', R.OUT_OF_RANGE, "`$.tst`"),
]  # fmt: skip


@pytest.mark.parametrize(("payload", "reason", "detail"), BAD_PAYLOADS)
def test_bad_payload(payload: bytes, reason: DecodeErrorReason, detail: str) -> None:
    error = an_error(payload)
    assert (error.reason, detail in error.detail) == (reason, True), error


def test_oversize_payload_is_refused_before_parsing() -> None:
    payload = (LOCATION + "}").encode() + b" " * MAX_PAYLOAD_BYTES
    assert an_error(payload).reason == R.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(("device", "tenant"), [("", TENANT), (DEVICE, "")])
def test_missing_identity_is_a_caller_bug(device: str, tenant: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        decode_owntracks(b"{}", device, tenant, NOW)


# --- Batches (fixgate's extension: a JSON array of messages) ---------------------------


def batch(payload: bytes | str) -> list[Fix | Ignored] | DecodeError:
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode_owntracks_batch(raw, DEVICE, TENANT, NOW)


def test_batch_of_locations_keeps_their_order_and_times() -> None:
    result = batch(
        '[{"_type":"location","tst":1717000000,"lat":43.7,"lon":7.4,"acc":5},'
        ' {"_type":"lwt","tst":1717000001},'
        ' {"_type":"location","tst":1717000002,"lat":43.71,"lon":7.41,"vel":36}]'
    )
    assert isinstance(result, list)
    first, ignored, last = result
    assert isinstance(first, Fix) and isinstance(last, Fix) and ignored == Ignored(kind="lwt")
    assert (first.time.timestamp(), first.accuracy) == (1717000000, 5.0)
    assert (last.time.timestamp(), last.speed) == (1717000002, pytest.approx(10.0))
    assert_sane_fix(first)
    assert_sane_fix(last)


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        ("[]", R.EMPTY_BATCH, "empty"),
        ('{"_type":"location"}', R.WRONG_TYPE, "array"),
        ("[1,", R.INVALID_JSON, ""),
        ('[{"_type":"location","tst":1717000000,"lat":1,"lon":2},{"lat":1}]', R.WRONG_TYPE,
         "[1]"),
        ('[{"_type":"location","tst":1717000000,"lat":91,"lon":2}]', R.OUT_OF_RANGE, "[0]"),
    ],
)  # fmt: skip
def test_bad_batch_is_refused_whole(payload: str, reason: DecodeErrorReason, detail: str) -> None:
    result = batch(payload)
    assert isinstance(result, DecodeError), result
    assert (result.reason, detail in result.detail) == (reason, True), result


def test_batch_bounds_are_checked_before_decoding_the_elements() -> None:
    one = '{"_type":"location","tst":1717000000,"lat":1,"lon":2}'
    too_many = "[" + ",".join([one] * (MAX_BATCH_MESSAGES + 1)) + "]"
    result = decode_owntracks_batch(
        too_many.encode(), DEVICE, TENANT, NOW, max_payload_bytes=len(too_many)
    )
    assert isinstance(result, DecodeError) and result.reason == R.BATCH_TOO_LARGE
    oversize = batch("[" + one + "]" + " " * MAX_PAYLOAD_BYTES)
    assert isinstance(oversize, DecodeError) and oversize.reason == R.PAYLOAD_TOO_LARGE


a_location = st.fixed_dictionaries(
    {"_type": st.just("location")},
    optional={k: st.floats() | st.integers() | st.text(max_size=6) for k in ("tst", "lat", "lon")},
)


@settings(max_examples=300)
@given(st.lists(a_location, max_size=5))
def test_any_batch_gives_a_result_never_an_exception(messages: list[object]) -> None:
    result = batch(msgspec.json.encode(messages))
    assert isinstance(result, list | DecodeError)
    if isinstance(result, list):
        assert len(result) == len(messages)


# --- Properties -------------------------------------------------------------------------


def check_any_payload(payload: bytes) -> None:
    result = decode_owntracks(payload, DEVICE, TENANT, NOW)
    assert isinstance(result, Fix | Ignored | DecodeError)
    if isinstance(result, Fix):
        assert result.time.tzinfo is UTC and result.received_at == RECEIVED_AT
        assert -90.0 <= result.lat <= 90.0 and -180.0 <= result.lon <= 180.0
        assert result.speed is None or 0.0 <= result.speed <= MAX_SPEED_MPS
        assert result.heading is None or 0.0 <= result.heading < 360.0
        assert result.accuracy is None or result.accuracy >= 0.0
        assert result.battery is None or 0 <= result.battery <= 100
        assert result.altitude is None or math.isfinite(result.altitude)
    elif isinstance(result, DecodeError):
        assert result.detail


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_a_result_never_an_exception(payload: bytes) -> None:
    check_any_payload(payload)


numbers = st.floats() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
number_or_string = numbers | numbers.map(str) | st.text(max_size=12) | st.none() | st.booleans()
location_shaped = st.fixed_dictionaries(
    {"_type": st.sampled_from(["location", "lwt", "transition", "x"]) | st.text(max_size=8)},
    optional={
        key: number_or_string
        for key in ("tst", "lat", "lon", "acc", "alt", "vel", "cog", "batt", "created_at")
    },
)


@settings(max_examples=500)
@given(location_shaped, st.binary(max_size=4))
def test_location_shaped_json_gives_a_result_never_an_exception(
    message: object, trailing: bytes
) -> None:
    check_any_payload(msgspec.json.encode(message))
    check_any_payload(msgspec.json.encode(message) + trailing)
