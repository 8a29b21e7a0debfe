"""The Traccar Client app (OsmAnd protocol): query strings, form bodies, JSON, bad fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.events import DecodeError
from devices.events import DecodeErrorReason as R
from devices.fix import Protocol
from devices.osmand import MAX_BODY_BYTES, OsmandReport, decode_osmand
from devices.units import knots_to_mps
from tests.support.sanity import assert_sane_fix
from tests.support.vectors import NOW

QUERY = {
    "id": "123456", "timestamp": "1716999990", "lat": "52.5200", "lon": "13.4050",
    "speed": "10", "bearing": "271.5", "altitude": "34.2", "accuracy": "8", "batt": "77",
    "hdop": "0.9",
}  # fmt: skip
APP_JSON = {
    "location": {
        "timestamp": "2024-05-29T16:26:30.500Z",
        "coords": {
            "latitude": 52.52, "longitude": 13.405, "speed": 3.5, "heading": 90.0,
            "altitude": 34.2, "accuracy": 12.0,
        },
        "is_moving": True, "odometer": 1234.5, "event": "motionchange",
        "battery": {"level": 0.55, "is_charging": False},
        "activity": {"type": "in_vehicle"}, "extras": {},
    },
    "device_id": "tech-phone-9",
}  # fmt: skip


def report(query: dict[str, str] | None = None, body: bytes = b"") -> OsmandReport:
    result = decode_osmand("POST" if body else "GET", query or {}, body, NOW)
    assert isinstance(result, OsmandReport), result
    assert_sane_fix(result.fix("dev", "acme"))
    return result


def error(query: dict[str, str] | None = None, body: bytes = b"") -> DecodeError:
    result = decode_osmand("POST" if body else "GET", query or {}, body, NOW)
    assert isinstance(result, DecodeError), result
    return result


def with_(**changes: Any) -> dict[str, str]:
    return {**QUERY, **changes}


def app_json(**location_changes: Any) -> bytes:
    body = json.loads(json.dumps(APP_JSON))
    body["location"].update(location_changes)
    return json.dumps(body).encode()


# -- the query-string form -------------------------------------------------------------------------


def test_query_string_form() -> None:
    r = report(QUERY)
    assert (r.device_key, r.time, r.lat, r.lon, r.heading, r.altitude, r.accuracy, r.hdop) == (
        "123456", datetime(2024, 5, 29, 16, 26, 30, tzinfo=UTC), 52.52, 13.405, 271.5, 34.2,
        8.0, 0.9,
    )  # fmt: skip


def test_query_speed_is_knots() -> None:
    assert report(QUERY).speed == knots_to_mps(10)


def test_query_battery_is_percent() -> None:
    assert report(QUERY).battery == 77


def test_timestamp_in_milliseconds() -> None:
    assert report(with_(timestamp="1716999990500")).time == datetime(
        2024, 5, 29, 16, 26, 30, 500000, tzinfo=UTC
    )


def test_timestamp_iso_8601() -> None:
    assert report(with_(timestamp="2024-05-29T18:26:30+02:00")).time == datetime(
        2024, 5, 29, 16, 26, 30, tzinfo=UTC
    )


def test_timestamp_date_and_time_without_zone_is_utc() -> None:
    assert report(with_(timestamp="2024-05-29 16:26:30")).time == datetime(
        2024, 5, 29, 16, 26, 30, tzinfo=UTC
    )


def test_no_timestamp_is_the_receive_time() -> None:
    query = dict(QUERY)
    del query["timestamp"]
    assert report(query).time == datetime.fromtimestamp(NOW, UTC)


def test_deviceid_and_heading_are_aliases() -> None:
    query = {k: v for k, v in QUERY.items() if k not in ("id", "bearing")}
    r = report({**query, "deviceid": "77", "heading": "12"})
    assert (r.device_key, r.heading) == ("77", 12.0)


def test_location_parameter() -> None:
    query = {k: v for k, v in QUERY.items() if k not in ("lat", "lon")}
    r = report({**query, "location": "48.85,2.29"})
    assert (r.lat, r.lon) == (48.85, 2.29)


def test_form_body_when_the_url_has_no_query() -> None:
    body = "&".join(f"{k}={v}" for k, v in QUERY.items()).encode()
    assert report(body=body) == report(QUERY)


def test_valid_false() -> None:
    assert report(with_(valid="false")).fix("dev", "acme").valid is False


def test_fix_is_the_registered_device_and_the_osmand_protocol() -> None:
    f = report(QUERY).fix("dev", "acme")
    assert (f.device_id, f.tenant_id, f.protocol, f.received_at) == (
        "dev", "acme", Protocol.OSMAND, datetime.fromtimestamp(NOW, UTC)
    )  # fmt: skip


# -- the JSON body of the current app ---------------------------------------------------------------


def test_app_json_body() -> None:
    r = report(body=json.dumps(APP_JSON).encode())
    assert (r.device_key, r.time, r.lat, r.lon, r.speed, r.heading, r.altitude, r.accuracy) == (
        "tech-phone-9", datetime(2024, 5, 29, 16, 26, 30, 500000, tzinfo=UTC), 52.52, 13.405,
        3.5, 90.0, 34.2, 12.0,
    )  # fmt: skip


def test_app_json_battery_level_is_a_fraction() -> None:
    assert report(body=json.dumps(APP_JSON).encode()).battery == 55


def test_app_json_minus_one_is_unknown() -> None:
    body = app_json(
        coords={"latitude": 1.0, "longitude": 2.0, "speed": -1, "heading": -1, "accuracy": -1},
        battery={"level": -1, "is_charging": False},
    )
    r = report(body=body)
    assert (r.speed, r.heading, r.accuracy, r.battery) == (None, None, None, None)


def test_app_json_without_coords_is_a_missing_field() -> None:
    body = json.dumps({"location": {"timestamp": "2024-05-29T16:26:30Z"}, "device_id": "x"})
    e = error(body=body.encode())
    assert (e.reason, "coords" in e.detail) == (R.MISSING_FIELD, True)


def test_app_json_bad_latitude_names_the_field() -> None:
    body = app_json(coords={"latitude": "north", "longitude": 2.0})
    e = error(body=body)
    assert (e.reason, "latitude" in e.detail) == (R.BAD_FIELD, True)


def test_app_json_broken_is_invalid_json() -> None:
    assert error(body=b'{"location": ').reason is R.INVALID_JSON


# -- bad requests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason", "field"),
    [
        ({k: v for k, v in QUERY.items() if k != "id"}, R.MISSING_FIELD, "id"),
        ({k: v for k, v in QUERY.items() if k != "lat"}, R.MISSING_FIELD, "lat"),
        (with_(lon="east"), R.BAD_FIELD, "lon"),
        (with_(lat="91"), R.OUT_OF_RANGE, "lat"),
        (with_(lon="nan"), R.OUT_OF_RANGE, "lon"),
        (with_(speed="-3"), R.OUT_OF_RANGE, "speed"),
        (with_(bearing="400"), R.OUT_OF_RANGE, "bearing"),
        (with_(batt="140"), R.OUT_OF_RANGE, "batt"),
        (with_(timestamp="yesterday"), R.BAD_FIELD, "timestamp"),
        (with_(timestamp="1e300"), R.OUT_OF_RANGE, "timestamp"),
        (with_(id="x" * 200), R.BAD_FIELD, "id"),
    ],
)
def test_a_bad_field_is_named(query: dict[str, str], reason: R, field: str) -> None:
    e = error(query)
    assert (e.reason, e.detail.split(":")[0]) == (reason, field)


def test_an_oversized_body_is_refused_before_parsing() -> None:
    assert error(body=b"{" + b" " * MAX_BODY_BYTES).reason is R.PAYLOAD_TOO_LARGE


def test_other_methods_are_refused() -> None:
    assert decode_osmand("DELETE", QUERY, b"", NOW) == DecodeError(R.WRONG_TYPE, "method: 'DELETE'")


# -- fuzzing ------------------------------------------------------------------------------------

_keys = st.sampled_from([*QUERY, "deviceid", "heading", "location", "valid", "x"])


@settings(max_examples=400)
@given(st.dictionaries(_keys, st.text(max_size=30), max_size=12), st.binary(max_size=300))
def test_arbitrary_requests_give_a_report_or_an_error(query: dict[str, str], body: bytes) -> None:
    result = decode_osmand("POST", query, body, NOW)
    assert isinstance(result, OsmandReport | DecodeError)
    if isinstance(result, OsmandReport):
        assert_sane_fix(result.fix("dev", "acme"))


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["location", "coords", "latitude", "longitude",
                                         "timestamp", "device_id", "battery", "level", "speed"]),
                        inner, max_size=5), max_leaves=20))  # fmt: skip
def test_arbitrary_json_gives_a_report_or_an_error(value: object) -> None:
    body = json.dumps({"location": value, "device_id": "x"}).encode()
    assert isinstance(decode_osmand("POST", {}, body, NOW), OsmandReport | DecodeError)
