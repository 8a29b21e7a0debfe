"""Reading the track exports back (CSV, GPX 1.1 validated against its schema, GeoJSON) as
(time, lat, lon) triples, to hold them against the stored fixes."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from functools import lru_cache

from lxml import etree

from tests.support.paths import REPO_ROOT

GPX_XSD = REPO_ROOT / "tests" / "e2e" / "data" / "gpx-1.1.xsd"
GPX = "{http://www.topografix.com/GPX/1/1}"

Fix = tuple[datetime, float, float]


@lru_cache(maxsize=1)
def gpx_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(GPX_XSD)))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def from_csv(text: str) -> list[Fix]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return [(_time(r["time"]), float(r["latitude"]), float(r["longitude"])) for r in rows]


def from_gpx(body: bytes) -> list[Fix]:
    """The track points, after the document passed the GPX 1.1 schema (AssertionError
    naming the schema's complaint otherwise)."""
    document = etree.fromstring(body)
    schema = gpx_schema()
    assert schema.validate(document), schema.error_log.last_error
    return [
        (_time(p.findtext(f"{GPX}time") or ""), float(p.get("lat") or "nan"),
         float(p.get("lon") or "nan"))
        for p in document.iter(f"{GPX}trkpt")
    ]  # fmt: skip


def from_geojson(text: str) -> list[Fix]:
    collection = json.loads(text)
    assert collection["type"] == "FeatureCollection"
    return [
        (_time(f["properties"]["time"]), f["geometry"]["coordinates"][1],
         f["geometry"]["coordinates"][0])
        for f in collection["features"]
    ]  # fmt: skip
