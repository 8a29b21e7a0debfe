"""fixgate's own JSON fix: vectors with one-line assertions, the pinned format, fuzzing."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.events import DecodeError, DecodeErrorReason
from devices.fix import Fix, Protocol
from devices.jsonfix import (
    MAX_FIXES_PER_MESSAGE,
    MAX_PAYLOAD_BYTES,
    MAX_SPEED_MPS,
    decode_json_fixes,
    encode_json_fixes,
)
from tests.support.paths import REPO_ROOT
from tests.support.sanity import assert_sane_fix

NOW = 1_717_000_060.0  # 2024-05-29T16:27:40Z, one minute after the vectors' fixes
RECEIVED_AT = datetime.fromtimestamp(NOW, UTC)
DEVICE, TENANT = "truck-7", "acme"
DOCS = REPO_ROOT / "docs" / "json-fix.md"

R = DecodeErrorReason


def decode(payload: bytes, **bounds: int) -> tuple[list[Fix], list[DecodeError]]:
    fixes, errors = decode_json_fixes(payload, DEVICE, TENANT, NOW, **bounds)
    for fix in fixes:
        assert_sane_fix(fix)
    return fixes, list(errors)


def only_fix(payload: bytes) -> Fix:
    fixes, errors = decode(payload)
    assert errors == [] and len(fixes) == 1, (fixes, errors)
    return fixes[0]


def only_error(payload: bytes, **bounds: int) -> DecodeError:
    fixes, errors = decode(payload, **bounds)
    assert fixes == [] and len(errors) == 1, (fixes, errors)
    return errors[0]


def at(hour: int, minute: int, second: float = 0) -> datetime:
    return datetime(2024, 5, 29, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


def fix(**fields: object) -> Fix:
    """The Fix a vector should decode to: identity, protocol and receive time filled in."""
    base: dict[str, object] = {
        "device_id": DEVICE,
        "tenant_id": TENANT,
        "protocol": Protocol.JSON,
        "received_at": RECEIVED_AT,
    }
    return Fix(**(base | fields))  # type: ignore[arg-type]


# --- The format, pinned ----------------------------------------------------------------

# Exactly as format version 1 writes it (fixgate's encoder, and devices built against
# docs/json-fix.md). Never edit these literals: add new ones when the format grows.
V1_BATCH = (
    b'[{"time":"2024-05-29T16:26:40Z","lat":48.856826,"lon":2.292713,"alt":154.0,'
    b'"speed":12.5,"heading":271.0,"accuracy":4.8,"hdop":0.9,"sats":11,"battery":53},'
    b'{"time":"2024-05-29T16:26:41.250000Z","lat":48.85695,"lon":2.2929,"valid":false}]'
)
V1_BATCH_FIXES = [
    fix(time=at(16, 26, 40), lat=48.856826, lon=2.292713, altitude=154.0, speed=12.5,
        heading=271.0, accuracy=4.8, hdop=0.9, satellites=11, battery=53),
    fix(time=at(16, 26, 41.25), lat=48.85695, lon=2.2929, valid=False),
]  # fmt: skip


def test_decodes_what_version_1_wrote() -> None:
    assert decode(V1_BATCH) == (V1_BATCH_FIXES, [])


def test_encoder_still_writes_version_1() -> None:
    assert encode_json_fixes(V1_BATCH_FIXES) == V1_BATCH


def test_a_newer_device_with_more_fields_still_decodes() -> None:
    payload = b'{"time":1716999999,"lat":1.5,"lon":2.5,"odometer_m":1234,"cell":{"mcc":262}}'
    assert only_fix(payload) == fix(time=at(16, 26, 39), lat=1.5, lon=2.5)


@pytest.mark.parametrize("example", re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S))
def test_the_documented_examples_decode(example: str) -> None:
    fixes, errors = decode(example.encode())
    assert fixes and errors == []


# --- Good input: one line per vector ----------------------------------------------------


def test_single_fix_rfc3339() -> None:
    payload = b'{"time":"2024-05-29T16:26:40Z","lat":48.856826,"lon":2.292713,"speed":3.5}'
    assert only_fix(payload) == fix(time=at(16, 26, 40), lat=48.856826, lon=2.292713, speed=3.5)


def test_offset_is_converted_to_utc() -> None:
    payload = b'{"time":"2024-05-29T18:26:40.5+02:00","lat":1,"lon":2}'
    assert only_fix(payload).time == at(16, 26, 40.5)


def test_unix_seconds_with_fraction() -> None:
    assert only_fix(b'{"time":1717000000.25,"lat":1,"lon":2}').time == at(16, 26, 40.25)


def test_unset_and_null_optionals_are_unknown() -> None:
    payload = b'{"time":1717000000,"lat":1,"lon":2,"speed":null,"heading":null,"sats":null}'
    assert only_fix(payload) == fix(time=at(16, 26, 40), lat=1.0, lon=2.0)


def test_bounds_themselves_are_accepted() -> None:
    payload = b'{"time":1717000000,"lat":-90,"lon":180,"heading":0,"speed":0,"battery":100}'
    assert only_fix(payload) == fix(
        time=at(16, 26, 40), lat=-90.0, lon=180.0, heading=0.0, speed=0.0, battery=100
    )


def test_whitespace_around_the_payload_is_fine() -> None:
    assert only_fix(b' \r\n\t{"time":1717000000,"lat":1,"lon":2} \n').lat == 1.0


def test_batch_keeps_order_and_shares_receive_time() -> None:
    payload = b'[{"time":1717000002,"lat":3,"lon":0},{"time":1717000001,"lat":4,"lon":0}]'
    assert [(f.time, f.lat, f.received_at) for f in decode(payload)[0]] == [
        (at(16, 26, 42), 3.0, RECEIVED_AT),
        (at(16, 26, 41), 4.0, RECEIVED_AT),
    ]


def test_batch_of_exactly_the_bound() -> None:
    payload = b"[" + b",".join([b'{"time":1717000000,"lat":1,"lon":2}'] * 1000) + b"]"
    assert len(decode(payload)[0]) == MAX_FIXES_PER_MESSAGE == 1000


# --- Bad input: the right reason, and the JSON path in the detail ----------------------

BAD_PAYLOADS = [
    (b"", R.INVALID_JSON, "truncated"),
    (b"{", R.INVALID_JSON, "truncated"),
    (b"\xff\xfe{}", R.INVALID_JSON, "malformed"),
    (b'{"time":1717000000,"lat":1,"lon":2} {}', R.INVALID_JSON, "trailing characters"),
    (b'{"time":1717000000,"lat":NaN,"lon":2}', R.INVALID_JSON, "malformed"),
    (b'{"lat":1} trailing', R.INVALID_JSON, "trailing characters"),
    (b'[{"lat":1},{"time":1717000000,"lat":1,"lon":2}', R.INVALID_JSON, "truncated"),
    (b'"2024-05-29T16:26:40Z"', R.WRONG_TYPE, "got `str`"),
    (b"null", R.WRONG_TYPE, "got `null`"),
    (b'{"lat":1,"lon":2}', R.WRONG_TYPE, "missing required field `time`"),
    (b'{"time":1717000000,"lon":2}', R.WRONG_TYPE, "missing required field `lat`"),
    (b'{"time":1717000000,"lat":"1","lon":2}', R.WRONG_TYPE, "got `str` - at `$.lat`"),
    (b'{"time":1717000000,"lat":true,"lon":2}', R.WRONG_TYPE, "got `bool` - at `$.lat`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"sats":11.5}', R.WRONG_TYPE, "at `$.sats`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"valid":1}', R.WRONG_TYPE, "at `$.valid`"),
    (b'{"time":"2024-05-29T16:26:40","lat":1,"lon":2}', R.WRONG_TYPE, "timezone"),
    (b'{"time":"yesterday","lat":1,"lon":2}', R.WRONG_TYPE, "at `$.time`"),
    (b'{"time":"1717000000","lat":1,"lon":2}', R.WRONG_TYPE, "at `$.time`"),
    (b'{"time":1717000000,"lat":90.000001,"lon":2}', R.OUT_OF_RANGE, "<= 90.0 - at `$.lat`"),
    (b'{"time":1717000000,"lat":1,"lon":-180.5}', R.OUT_OF_RANGE, "at `$.lon`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"heading":360}', R.OUT_OF_RANGE, "< 360.0"),
    (b'{"time":1717000000,"lat":1,"lon":2,"heading":-1}', R.OUT_OF_RANGE, "at `$.heading`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"speed":-0.1}', R.OUT_OF_RANGE, "at `$.speed`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"speed":600}', R.OUT_OF_RANGE, "at `$.speed`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"speed":1e999}', R.OUT_OF_RANGE, "Number out of"),
    (b'{"time":1717000000,"lat":1,"lon":2,"alt":1e6}', R.OUT_OF_RANGE, "at `$.alt`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"accuracy":-5}', R.OUT_OF_RANGE, "`$.accuracy`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"sats":-1}', R.OUT_OF_RANGE, "at `$.sats`"),
    (b'{"time":1717000000,"lat":1,"lon":2,"battery":101}', R.OUT_OF_RANGE, "`$.battery`"),
    (b'{"time":1717000000000,"lat":1,"lon":2}', R.OUT_OF_RANGE, "at `$.time`"),  # millis
    (b'{"time":-1,"lat":1,"lon":2}', R.OUT_OF_RANGE, "at `$.time`"),
    (b'{"time":"0001-01-01T00:00:00+01:00","lat":1,"lon":2}', R.OUT_OF_RANGE, "`$.time`"),
    (b"[]", R.EMPTY_BATCH, "at `$`"),
    (b" [ ] ", R.EMPTY_BATCH, "at `$`"),
]


@pytest.mark.parametrize(("payload", "reason", "detail"), BAD_PAYLOADS)
def test_bad_payload(payload: bytes, reason: DecodeErrorReason, detail: str) -> None:
    error = only_error(payload)
    assert (error.reason, detail in error.detail) == (reason, True), error


def test_oversize_payload_is_refused_before_parsing() -> None:
    payload = b"[" + b" " * MAX_PAYLOAD_BYTES + b"]"
    assert only_error(payload).reason == R.PAYLOAD_TOO_LARGE


def test_payload_bound_is_configurable_and_inclusive() -> None:
    payload = b'{"time":1717000000,"lat":1,"lon":2}'
    assert decode(payload, max_payload_bytes=len(payload))[1] == []
    assert only_error(payload, max_payload_bytes=len(payload) - 1).reason == R.PAYLOAD_TOO_LARGE


def test_batch_over_the_bound_is_refused_whole() -> None:
    payload = b"[" + b",".join([b'{"time":1717000000,"lat":1,"lon":2}'] * 1001) + b"]"
    assert only_error(payload).reason == R.BATCH_TOO_LARGE


def test_batch_bound_is_configurable_and_also_applies_to_a_broken_batch() -> None:
    three = b'[{"time":1717000000,"lat":1,"lon":2},{"time":1,"lat":1,"lon":2},{"lat":91}]'
    assert only_error(three, max_fixes_per_message=2).reason == R.BATCH_TOO_LARGE


def test_bad_elements_cost_only_themselves() -> None:
    payload = (
        b'[{"time":1717000000,"lat":1,"lon":2},{"time":1717000001,"lat":91,"lon":2},'
        b'7,{"time":"0001-01-01T00:00:00+01:00","lat":1,"lon":2},'
        b'{"time":1717000004,"lat":5,"lon":2}]'
    )
    fixes, errors = decode(payload)
    assert [f.lat for f in fixes] == [1.0, 5.0]
    assert [(e.reason, e.detail.rpartition(" - at ")[2]) for e in errors] == [
        (R.OUT_OF_RANGE, "`$[1].lat`"),
        (R.WRONG_TYPE, "`$[2]`"),
        (R.OUT_OF_RANGE, "`$[3].time`"),
    ]


def test_nested_batch_is_the_wrong_type() -> None:
    fixes, errors = decode(b'[[{"time":1717000000,"lat":1,"lon":2}]]')
    assert (fixes, [(e.reason, e.detail) for e in errors]) == (
        [],
        [(R.WRONG_TYPE, "Expected `object`, got `array` - at `$[0]`")],
    )


@pytest.mark.parametrize(("device", "tenant"), [("", TENANT), (DEVICE, "")])
def test_missing_identity_is_a_caller_bug(device: str, tenant: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        decode_json_fixes(b"{}", device, tenant, NOW)


# --- Properties -------------------------------------------------------------------------


def assert_physical(fix: Fix) -> None:
    """What decoding alone guarantees (the time window is the ingest filter's call)."""
    assert fix.time.tzinfo is UTC and fix.received_at == RECEIVED_AT
    assert -90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0
    assert fix.speed is None or 0.0 <= fix.speed <= MAX_SPEED_MPS
    assert fix.heading is None or 0.0 <= fix.heading < 360.0
    for value in (fix.altitude, fix.accuracy, fix.hdop):
        assert value is None or math.isfinite(value)
    assert (fix.device_id, fix.tenant_id, fix.protocol) == (DEVICE, TENANT, Protocol.JSON)


def check_any_payload(payload: bytes) -> None:
    fixes, errors = decode_json_fixes(payload, DEVICE, TENANT, NOW)
    assert fixes or errors, "every message yields fixes or at least one error"
    for fix in fixes:
        assert_physical(fix)
    for error in errors:
        assert error.reason in DecodeErrorReason and error.detail


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_events_never_an_exception(payload: bytes) -> None:
    check_any_payload(payload)


offsets = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
)
any_time = st.datetimes(timezones=st.builds(timezone, offsets)) | st.floats() | st.integers()
numbers = st.floats(allow_nan=False) | st.integers(min_value=-(2**63), max_value=2**64 - 1)
json_value = st.none() | st.booleans() | numbers | st.text(max_size=30) | any_time
fix_object = st.fixed_dictionaries(
    {"time": any_time, "lat": numbers, "lon": numbers},
    optional={
        key: json_value
        for key in ("alt", "speed", "heading", "accuracy", "hdop", "sats", "valid", "battery")
    },
)
fix_message = fix_object | st.lists(fix_object | json_value, max_size=4)


@settings(max_examples=500)
@given(fix_message, st.binary(max_size=4))
def test_fix_shaped_json_gives_events_never_an_exception(message: object, trailing: bytes) -> None:
    check_any_payload(msgspec.json.encode(message))
    check_any_payload(msgspec.json.encode(message) + trailing)


valid_fixes = st.builds(
    Fix,
    device_id=st.just(DEVICE),
    tenant_id=st.just(TENANT),
    time=st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31), timezones=st.just(UTC)),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    altitude=st.none() | st.floats(-12_000, 100_000),
    speed=st.none() | st.floats(0, MAX_SPEED_MPS),
    heading=st.none() | st.floats(0, 360, exclude_max=True),
    accuracy=st.none() | st.floats(0, 1e6),
    hdop=st.none() | st.floats(0, 100),
    satellites=st.none() | st.integers(0, 255),
    valid=st.booleans(),
    protocol=st.just(Protocol.JSON),
    received_at=st.just(RECEIVED_AT),
    battery=st.none() | st.integers(0, 100),
)


@given(st.lists(valid_fixes, min_size=1, max_size=5))
def test_encode_then_decode_is_the_identity(fixes: list[Fix]) -> None:
    assert decode(encode_json_fixes(fixes)) == (fixes, [])
