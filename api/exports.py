"""A device's stored fixes as CSV, GPX 1.1 and GeoJSON, written chunk by chunk (pure: rows
in, text out), so an export of any range streams in bounded memory.

Numbers are written as Python's shortest round-trip repr: a coordinate read back from any
of the three is the stored double exactly. GPX 1.1 has no speed or course of its own: they
go in Garmin's TrackPointExtension v2 (`gpxtpx:speed` m/s, `gpxtpx:course` degrees), which
GPX readers know; the document stays valid against the GPX 1.1 schema (its `extensions`
take elements of other namespaces)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape, quoteattr

Row = Any
"""One stored fix: time, lat, lon, altitude, speed, heading, accuracy, hdop, satellites,
protocol (a `positions` row)."""


class ExportFormat(StrEnum):
    CSV = "csv"
    GPX = "gpx"
    GEOJSON = "geojson"


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.GPX: "application/gpx+xml",
    ExportFormat.GEOJSON: "application/geo+json",
}
CSV_COLUMNS = ("time", "latitude", "longitude", "altitude_m", "speed_mps", "heading_deg",
               "accuracy_m", "hdop", "satellites", "protocol")  # fmt: skip
GPX_NS = "http://www.topografix.com/GPX/1/1"
TPX_NS = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"


def utc(t: datetime) -> str:
    """ISO 8601 in UTC with a Z, microseconds when the fix has them (xsd:dateTime)."""
    text = t.astimezone(UTC).isoformat(timespec="microseconds" if t.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _num(value: Any) -> str:
    """The shortest text that reads back as the same double, never in exponent form
    (xsd:decimal has none: 1e-05 is written 0.00001)."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return format(Decimal(repr(float(value))), "f")


class Writer:
    """head(), rows(chunk) for each chunk of fixes in time order, tail()."""

    def __init__(self, fmt: ExportFormat, device_id: str, start: datetime, end: datetime) -> None:
        self.fmt, self.device_id, self.start, self.end = fmt, device_id, start, end
        self._first = True

    def head(self) -> str:
        if self.fmt is ExportFormat.CSV:
            return ",".join(CSV_COLUMNS) + "\r\n"
        if self.fmt is ExportFormat.GEOJSON:
            return '{"type":"FeatureCollection","features":['
        name = escape(f"{self.device_id} {utc(self.start)} - {utc(self.end)}")
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<gpx version="1.1" creator="fixgate" xmlns="{GPX_NS}" xmlns:gpxtpx="{TPX_NS}"'
            ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
            f' xsi:schemaLocation="{GPX_NS} http://www.topografix.com/GPX/1/1/gpx.xsd">\n'
            f"<metadata><name>{name}</name></metadata>\n"
            f"<trk><name>{escape(self.device_id)}</name><trkseg>\n"
        )

    def rows(self, chunk: Iterable[Row]) -> str:
        if self.fmt is ExportFormat.CSV:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\r\n")
            for r in chunk:
                writer.writerow([utc(r["time"]), _num(r["lat"]), _num(r["lon"]),
                                 _num(r["altitude"]), _num(r["speed"]), _num(r["heading"]),
                                 _num(r["accuracy"]), _num(r["hdop"]), _num(r["satellites"]),
                                 r["protocol"]])  # fmt: skip
            return out.getvalue()
        if self.fmt is ExportFormat.GEOJSON:
            parts = []
            for r in chunk:
                parts.append(("" if self._first else ",") + json.dumps(_feature(r)))
                self._first = False
            return "".join(parts)
        return "".join(_trkpt(r) for r in chunk)

    def tail(self) -> str:
        if self.fmt is ExportFormat.CSV:
            return ""
        if self.fmt is ExportFormat.GEOJSON:
            return "]}"
        return "</trkseg></trk>\n</gpx>\n"


def _feature(r: Row) -> dict[str, Any]:
    properties = {"time": utc(r["time"])}
    for key in ("altitude", "speed", "heading", "accuracy", "hdop", "satellites"):
        if r[key] is not None:
            properties[key] = r[key]
    properties["protocol"] = r["protocol"]
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": properties}  # fmt: skip


def _trkpt(r: Row) -> str:
    # The schema's order: ele, time, ..., sat, hdop, ..., extensions.
    inner = []
    if r["altitude"] is not None:
        inner.append(f"<ele>{_num(r['altitude'])}</ele>")
    inner.append(f"<time>{utc(r['time'])}</time>")
    if r["satellites"] is not None:
        inner.append(f"<sat>{int(r['satellites'])}</sat>")
    if r["hdop"] is not None:
        inner.append(f"<hdop>{_num(r['hdop'])}</hdop>")
    tpx = ""
    if r["speed"] is not None:
        tpx += f"<gpxtpx:speed>{_num(r['speed'])}</gpxtpx:speed>"
    if r["heading"] is not None:
        tpx += f"<gpxtpx:course>{_num(r['heading'])}</gpxtpx:course>"
    if tpx:
        inner.append(f"<extensions><gpxtpx:TrackPointExtension>{tpx}"
                     "</gpxtpx:TrackPointExtension></extensions>")  # fmt: skip
    lat, lon = quoteattr(_num(r["lat"])), quoteattr(_num(r["lon"]))
    return f"<trkpt lat={lat} lon={lon}>{''.join(inner)}</trkpt>\n"
