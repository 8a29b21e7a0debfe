"""ingest.filters, pure: each reason on its own, and the guarantee the writer relies on."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from devices.fix import Fix
from ingest.filters import HISTORY_ALLOWED, DeviceTrack, FilterLimits, Reason, check

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
LIMITS = FilterLimits()
GOOD = Fix(
    device_id="d",
    tenant_id="t",
    time=NOW - timedelta(seconds=5),
    lat=52.5,
    lon=13.4,
    speed=10.0,
    heading=90.0,
)


def reasons(fix: Fix, track: DeviceTrack | None = None) -> tuple[Reason, ...]:
    return check(fix, NOW.timestamp(), track, LIMITS)


def test_a_good_fix_passes() -> None:
    assert reasons(GOOD) == ()


def test_each_reason() -> None:
    r = msgspec.structs.replace
    assert reasons(r(GOOD, valid=False)) == (Reason.INVALID,)
    assert reasons(r(GOOD, lat=0.0, lon=0.0)) == (Reason.ZERO,)
    assert reasons(r(GOOD, time=NOW + timedelta(minutes=10))) == (Reason.FUTURE,)
    assert reasons(r(GOOD, time=NOW - timedelta(days=91))) == (Reason.TOO_OLD,)
    track = DeviceTrack(newest_time=GOOD.time, good_time=GOOD.time, good_lat=48.1, good_lon=11.6)
    assert reasons(r(GOOD, time=GOOD.time + timedelta(seconds=1)), track) == (Reason.JUMP,)


def test_values_no_receiver_reports_are_out_of_range() -> None:
    r = msgspec.structs.replace
    for bad in (
        r(GOOD, lat=90.5), r(GOOD, lon=-181.0), r(GOOD, speed=-1.0), r(GOOD, speed=201.0),
        r(GOOD, heading=360.0), r(GOOD, altitude=1e39), r(GOOD, altitude=-12_001.0),
        r(GOOD, altitude=float("nan")), r(GOOD, accuracy=-0.5), r(GOOD, hdop=1e39),
        r(GOOD, satellites=99_999), r(GOOD, satellites=-1), r(GOOD, battery=101),
    ):  # fmt: skip
        assert Reason.OUT_OF_RANGE in reasons(bad), bad
    # Out of range also when the device says it has no fix: such fixes do not go to history.
    assert not HISTORY_ALLOWED.issuperset(reasons(r(GOOD, valid=False, satellites=99_999)))


def _fits_float4(value: float | None) -> bool:
    try:
        struct.pack("!f", value if value is not None else 0.0)
    except OverflowError:
        return False
    return True


_any_float = st.floats(allow_nan=True, allow_infinity=True) | st.none()
_any_int = st.integers(min_value=-(2**40), max_value=2**40) | st.none()


@given(
    altitude=_any_float, speed=_any_float, heading=_any_float, accuracy=_any_float, hdop=_any_float,
    satellites=_any_int, battery=_any_int, valid=st.booleans(),
)  # fmt: skip
def test_whatever_reaches_history_fits_the_columns(
    altitude: float | None, speed: float | None, heading: float | None, accuracy: float | None,
    hdop: float | None, satellites: int | None, battery: int | None, valid: bool,
) -> None:  # fmt: skip
    """The writer COPYs whole batches: one value a column cannot hold (a float4 overflow, a
    smallint overflow) would fail every fix in its batch. The filter keeps such fixes out."""
    fix = msgspec.structs.replace(
        GOOD, altitude=altitude, speed=speed, heading=heading, accuracy=accuracy, hdop=hdop,
        satellites=satellites, battery=battery, valid=valid,
    )  # fmt: skip
    if not HISTORY_ALLOWED.issuperset(reasons(fix)):
        return
    assert all(_fits_float4(v) for v in (altitude, speed, heading, accuracy, hdop))
    assert all(v is None or -(2**15) <= v < 2**15 for v in (satellites, battery))
