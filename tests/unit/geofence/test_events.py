"""Every event validates against docs/events.schema.json, which is generated from the Structs."""

from __future__ import annotations

import json
import random

import jsonschema

from geofence.config import EngineConfig
from geofence.engine import sync_trips
from geofence.events import decode_event, encode_event
from geofence.schema import render
from geofence.trips import TripSpec
from tests.support.geofence import Driver, circle, fix, offset, square, strip, types
from tests.support.paths import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "docs" / "events.schema.json"


def test_the_schema_file_is_the_generated_one() -> None:
    assert SCHEMA_PATH.read_text() == render()


def test_every_kind_of_event_validates_and_round_trips() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    lat, lon = 45.0, 7.0
    d = Driver(
        [
            square(1, lat, lon, 100.0, dwell_s=5.0),
            strip(2, *offset(lat, lon, 0, 1000), 30.0, 300.0),
            circle(3, lat, lon, 50.0),
        ],
        EngineConfig(),
    )
    dest = offset(lat, lon, 0.0, 2000.0)
    specs = [TripSpec(id="a", seq=1, lat=dest[0], lon=dest[1], state="active", ref="req-1"),
             TripSpec(id="b", seq=2, lat=lat, lon=lon, state="waiting")]  # fmt: skip
    rng = random.Random(1)
    # Sparse around the strip 1 km east (a tunnel): the segment over it is a crossing.
    fixes = [
        fix(t, *offset(lat, lon, rng.uniform(-3, 3), -300 + t * 10), speed=10.0)
        for t in range(200)
        if not 1250 < t * 10 < 1350
    ]
    d.feed_each(fixes[:1], trips={"dev-1": specs})
    d.feed_each(fixes[1:])
    d.feed_each([fix(200 + t, *dest, speed=0.0) for t in range(3)])
    r = sync_trips(
        d.state(), [TripSpec(id="b", seq=2, lat=lat, lon=lon, state="canceled")], d.config, d.now
    )
    events = d.events + r.events
    assert set(types(events)) == {
        "geofence_enter", "geofence_exit", "geofence_dwell", "geofence_crossed", "trip_update",
        "trip_arrived", "trip_canceled",
    }  # fmt: skip
    for event in events:
        raw = encode_event(event)
        jsonschema.validate(json.loads(raw), schema)
        assert decode_event(raw) == event
