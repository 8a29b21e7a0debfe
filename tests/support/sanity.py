"""The one sanity check every decoded fix in the tests must pass (Traccar's
`ProtocolTest.verifyDecodedPosition`): physical ranges, a plausible UTC time, identity set."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec

from devices.fix import Fix

EARLIEST = datetime(1999, 1, 1, tzinfo=UTC)
"""Traccar's lower bound; the decoder tests relax it for the NMEA spec's 1994 examples."""
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def assert_sane_fix(fix: Fix, *, earliest: datetime = EARLIEST) -> None:
    """Fail unless `fix` is physically possible and fully identified."""
    assert fix.device_id, fix
    assert fix.tenant_id, fix
    assert -90.0 <= fix.lat <= 90.0, fix
    assert -180.0 <= fix.lon <= 180.0, fix
    _assert_utc(fix.time)
    assert earliest <= fix.time < LATEST, fix
    if fix.received_at is not None:
        _assert_utc(fix.received_at)
    if fix.speed is not None:
        assert math.isfinite(fix.speed) and fix.speed >= 0.0, fix
    if fix.heading is not None:
        assert 0.0 <= fix.heading < 360.0, fix
    if fix.hdop is not None:
        assert math.isfinite(fix.hdop) and fix.hdop >= 0.0, fix
    # The Struct's own `Meta` bounds are checked on decoding only: round-trip to apply them.
    assert msgspec.json.decode(msgspec.json.encode(fix), type=Fix) == fix


def _assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0), moment
