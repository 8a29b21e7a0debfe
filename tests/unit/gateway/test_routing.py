"""Parsing OSRM's answers into Routes, on answers captured from the stack's osrm-routed
(osrm-bindings 26.10.0, Monaco extract):

- osrm_route_monaco.json: /route/v1/driving/7.4197,43.7312;7.4337,43.7467
- osrm_route_monaco_to_berlin.json: the same origin, Berlin as destination
- osrm_route_zero_length.json: origin = destination
- osrm_invalid_value.json: a latitude of 93 (HTTP 400)

each with ?overview=full&geometries=geojson&annotations=distance,duration.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.engine.routing import ROUTE_QUERY, parse_nearest_snap_m, parse_route
from geofence.routes import project, usable

DATA = Path(__file__).parent / "data"


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def answer(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw(name))
    return loaded


def test_a_real_route_becomes_a_route_in_lat_lon() -> None:
    body = answer("osrm_route_monaco.json")
    osrm_route = body["routes"][0]
    coords = osrm_route["geometry"]["coordinates"]
    annotation = osrm_route["legs"][0]["annotation"]
    found = parse_route(raw("osrm_route_monaco.json"))
    assert found is not None
    assert found.points == [(lat, lon) for lon, lat in coords]
    assert found.points[0] == (43.731371, 7.419605)  # OSRM's snapped origin, swapped
    assert len(found.points) == 116
    assert found.segment_distances_m == annotation["distance"]
    assert found.distance_m == math.fsum(annotation["distance"])
    # OSRM rounds its total; the segments' sum is the exact one.
    assert osrm_route["distance"] == 2440 and abs(found.distance_m - 2440) < 0.5
    assert found.origin_snap_m == body["waypoints"][0]["distance"] == 20.48332991
    assert found.destination_snap_m == body["waypoints"][1]["distance"] == 16.14893837
    assert usable(found, max_snap_m=50)


def test_segment_durations_add_up_to_osrms_total_with_its_turn_penalties() -> None:
    body = answer("osrm_route_monaco.json")
    annotated = body["routes"][0]["legs"][0]["annotation"]["duration"]
    found = parse_route(raw("osrm_route_monaco.json"))
    assert found is not None
    # The annotations leave out turn penalties (185.7 s of 186.3 s here)...
    assert math.fsum(annotated) < body["routes"][0]["duration"] == 186.3
    # ...the Route's segments carry them, in proportion.
    assert found.duration_s == 186.3
    assert math.fsum(found.segment_durations_s) == 186.3
    ratios = {
        round(s / a, 9) for s, a in zip(found.segment_durations_s, annotated, strict=True) if a
    }
    assert len(ratios) == 1
    # The core's projection from the start leaves all of it.
    start = project(found, *found.points[0])
    assert math.isclose(start.remaining_duration_s, 186.3)
    assert math.isclose(start.remaining_distance_m, found.distance_m)


def test_a_destination_outside_the_extract_keeps_its_snap_distance() -> None:
    found = parse_route(raw("osrm_route_monaco_to_berlin.json"))
    assert found is not None
    assert found.origin_snap_m == 20.48332991
    assert found.destination_snap_m > 1_000_000  # Berlin is ~1,000 km from Monaco's roads
    assert not usable(found, max_snap_m=250)


def test_origin_equal_to_destination_is_a_zero_length_route() -> None:
    found = parse_route(raw("osrm_route_zero_length.json"))
    assert found is not None
    assert found.points == [(43.731371, 7.419605), (43.731371, 7.419605)]
    assert found.segment_distances_m == [0.0] and found.segment_durations_s == [0.0]
    assert found.distance_m == 0.0 and found.duration_s == 0.0


def test_an_error_answer_is_none() -> None:
    assert answer("osrm_invalid_value.json")["code"] == "InvalidValue"
    assert parse_route(raw("osrm_invalid_value.json")) is None
    assert parse_nearest_snap_m(raw("osrm_invalid_value.json")) is None


def _altered(change: str) -> bytes:
    body = answer("osrm_route_monaco.json")
    leg = body["routes"][0]["legs"][0]
    if change == "code":
        body["code"] = "NoRoute"
    elif change == "no_routes":
        body["routes"] = []
    elif change == "one_waypoint":
        body["waypoints"] = body["waypoints"][:1]
    elif change == "short_annotation":
        leg["annotation"]["distance"].pop()
    elif change == "short_durations":
        leg["annotation"]["duration"].pop()
    elif change == "negative_distance":
        leg["annotation"]["distance"][3] = -1.0
    elif change == "no_annotation":
        del leg["annotation"]
    elif change == "polyline_geometry":
        body["routes"][0]["geometry"] = "_p~iF~ps|U_ulLnnqC"
    elif change == "one_point":
        body["routes"][0]["geometry"]["coordinates"] = [[7.4, 43.7]]
        leg["annotation"] = {"distance": [], "duration": []}
    elif change == "string_snap":
        body["waypoints"][0]["distance"] = "20"
    else:
        raise AssertionError(change)
    return json.dumps(body).encode()


def test_answers_that_do_not_add_up_are_none() -> None:
    changes = [
        "code",
        "no_routes",
        "one_waypoint",
        "short_annotation",
        "short_durations",
        "negative_distance",
        "no_annotation",
        "polyline_geometry",
        "one_point",
        "string_snap",
    ]
    assert [c for c in changes if parse_route(_altered(c)) is not None] == []


def test_every_truncation_of_a_real_answer_is_none() -> None:
    body = raw("osrm_route_monaco.json")
    assert parse_route(body) is not None
    assert [n for n in range(len(body)) if parse_route(body[:n]) is not None] == []


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    assert parse_route(body) is None
    assert parse_nearest_snap_m(body) is None


def test_nearest_answer() -> None:
    body = (
        b'{"code":"Ok","waypoints":[{"nodes":[2416876346,2416876344],"hint":"AA",'
        b'"location":[7.488727,43.769885],"name":"","distance":1067995.643}]}'
    )  # captured: /nearest/v1/driving/13.405,52.52?number=1 on Monaco
    assert parse_nearest_snap_m(body) == 1067995.643
    assert parse_nearest_snap_m(b'{"code":"Ok","waypoints":[]}') is None


def test_the_query_asks_for_what_the_parser_reads() -> None:
    params = dict(p.split("=") for p in ROUTE_QUERY.split("&"))
    assert params["overview"] == "full"
    assert params["geometries"] == "geojson"
    assert set(params["annotations"].split(",")) == {"distance", "duration"}
