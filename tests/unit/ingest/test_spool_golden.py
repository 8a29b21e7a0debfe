"""A spool record written by fixgate as of December 2026 (format FGS1) must stay readable
by every later release: a gateway upgraded while fixes wait in its spool replays them. The
file is a literal; never regenerate it. Later releases only append fields with defaults
(STYLE point 15), so the fixes below decode with those defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from devices.fix import Fix, Protocol
from ingest.spool_records import HEADER, decode_payload, parse_header, survey

GOLDEN = Path(__file__).parent / "golden" / "spool-record-fgs1-2026-12.bin"

WRITTEN = [
    Fix(
        device_id="truck-01", tenant_id="acme", time=datetime(2026, 12, 1, 9, 30, 0, 250000, tzinfo=UTC),
        lat=52.520008, lon=13.404954, altitude=34.5, speed=12.25, heading=271.5, hdop=0.9,
        satellites=11, valid=True, protocol=Protocol.NMEA,
        received_at=datetime(2026, 12, 1, 9, 30, 0, 410000, tzinfo=UTC),
    ),
    Fix(
        device_id="phone-jane", tenant_id="acme", time=datetime(2026, 12, 1, 9, 30, 1, tzinfo=UTC),
        lat=-33.8688, lon=151.2093, accuracy=8.0, protocol=Protocol.OWNTRACKS, battery=87,
        received_at=datetime(2026, 12, 1, 9, 30, 2, tzinfo=UTC),
    ),
    Fix(
        device_id="van-9", tenant_id="other", time=datetime(2026, 12, 1, 9, 30, 2, tzinfo=UTC),
        lat=60.1699, lon=24.9384, valid=False, protocol=Protocol.JSON,
    ),
]  # fmt: skip


def test_the_december_2026_spool_record_still_decodes_to_what_was_written() -> None:
    data = GOLDEN.read_bytes()
    header = parse_header(data[: HEADER.size])
    assert header.fixes == 3 and header.record_bytes == len(data)
    assert decode_payload(header, data[HEADER.size :]) == WRITTEN


def test_the_golden_file_is_one_intact_record() -> None:
    data = GOLDEN.read_bytes()
    found = survey(data)
    assert (found.intact_end, found.fixes, found.damaged) == (len(data), 3, 0)
