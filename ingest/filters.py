"""The fix filter: one small predicate per rejection reason (Traccar's FilterHandler shape).

Every failing reason is collected and counted, and the reasons decide which sinks a fix
may still reach: some fixes are still history (a device's own "no fix" report, a jump),
others must not be stored at all (0/0, impossible values, a clock far off). No clock
reads here: `now` is an argument.
"""

from __future__ import annotations

import enum
import math
from datetime import datetime

import msgspec

from contracts.geodesy import MEAN_EARTH_RADIUS_M, haversine_m
from devices.fix import (
    MAX_ACCURACY_M,
    MAX_ALTITUDE_M,
    MAX_BATTERY_PERCENT,
    MAX_HDOP,
    MAX_SATELLITES,
    MIN_ALTITUDE_M,
    Fix,
)


class Reason(enum.StrEnum):
    INVALID = "invalid"  # the device itself says it has no fix
    ZERO = "zero_coordinates"  # 0 N 0 E: a receiver's placeholder, never a real position
    OUT_OF_RANGE = "out_of_range"  # beyond what the Earth, a vehicle or a receiver allows
    FUTURE = "future"  # fix time ahead of our clock by more than the skew tolerance
    TOO_OLD = "too_old"  # older than the history we keep (week-rollover garbage, stale backlog)
    JUMP = "jump"  # implied speed from the device's previous fix is impossible


# Reasons whose fixes still go into history, flagged valid=false; all others are dropped.
HISTORY_ALLOWED = frozenset({Reason.INVALID, Reason.JUMP})


class FilterLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_clock_skew_s: float = 30.0
    """A device clock may run this far ahead of ours. GPS time is exact and a phone's clock
    synced by its network is off by a second or two; more is a wrong clock or a forged fix,
    which would make the device's real fixes "late" until the clock caught up with it."""
    max_fix_age_s: float = 90 * 86400.0
    """Fixes older than this are refused (the retention horizon: they would be dropped anyway)."""
    max_speed_mps: float = 100.0
    """360 km/h: no tow truck or van gets there; a larger implied speed is a bad fix."""
    min_jump_distance_m: float = 500.0
    """Below this distance a "jump" is GPS jitter over a short interval, not a teleport."""


class DeviceTrack(msgspec.Struct):
    """What the filter remembers per device: its newest good fix (time, and its order key
    `order_time`) and position. Only a fix that passed every filter advances it."""

    newest_time: datetime
    good_time: datetime | None = None
    good_lat: float = 0.0
    good_lon: float = 0.0
    newest_order: datetime | None = None
    """`order_time` of the newest fix (None: track made before it; `newest_time` then)."""


def order_time(fix: Fix) -> datetime:
    """What "newest" means for the live position: the fix time, but never later than when
    the gateway received it. A fix dated ahead (within the clock-skew allowance) then
    counts as received now, and the device's next real fix is newer than it."""
    received = fix.received_at
    return fix.time if received is None or fix.time <= received else received


def is_invalid(fix: Fix) -> bool:
    return not fix.valid


def is_zero(fix: Fix) -> bool:
    return fix.lat == 0.0 and fix.lon == 0.0


def is_out_of_range(fix: Fix, limits: FilterLimits) -> bool:
    # Every field, whatever decoded the fix: a value outside `devices.fix`'s physical
    # bounds is garbage, and may not even fit its column (99,999 satellites in a smallint),
    # which would fail the whole batch it travels in.
    return not (
        -90.0 <= fix.lat <= 90.0
        and -180.0 <= fix.lon <= 180.0
        and (fix.speed is None or 0.0 <= fix.speed <= 2 * limits.max_speed_mps)
        and (fix.heading is None or 0.0 <= fix.heading < 360.0)
        and (fix.altitude is None or MIN_ALTITUDE_M <= fix.altitude <= MAX_ALTITUDE_M)
        and (fix.accuracy is None or 0.0 <= fix.accuracy <= MAX_ACCURACY_M)
        and (fix.hdop is None or 0.0 <= fix.hdop <= MAX_HDOP)
        and (fix.satellites is None or 0 <= fix.satellites <= MAX_SATELLITES)
        and (fix.battery is None or 0 <= fix.battery <= MAX_BATTERY_PERCENT)
    )


def is_future(fix: Fix, now: float, limits: FilterLimits) -> bool:
    return fix.time.timestamp() > now + limits.max_clock_skew_s


def is_too_old(fix: Fix, now: float, limits: FilterLimits) -> bool:
    return fix.time.timestamp() < now - limits.max_fix_age_s


_UPPER_M_PER_DEGREE = MEAN_EARTH_RADIUS_M * math.pi / 180.0 * (1.0 + 1e-9)
"""Going |dlat| along a meridian, then |dlon| along a parallel (at most as long as the
equator's degree) is a path between two points, so R * (|dlat| + |dlon|) in radians is an
upper bound of their great-circle distance; the 1e-9 covers floating-point rounding."""


def is_jump(fix: Fix, track: DeviceTrack | None, limits: FilterLimits) -> bool:
    if track is None or track.good_time is None:
        return False
    dt = abs((fix.time - track.good_time).total_seconds())
    # The hot path: consecutive fixes of a moving vehicle are close. When the cheap upper
    # bound already clears both tests, the haversine cannot fail them either.
    bound = (abs(fix.lat - track.good_lat) + abs(fix.lon - track.good_lon)) * _UPPER_M_PER_DEGREE
    if bound < limits.min_jump_distance_m or (dt > 0 and bound <= limits.max_speed_mps * dt):
        return False
    d = haversine_m(track.good_lat, track.good_lon, fix.lat, fix.lon)
    if d < limits.min_jump_distance_m:
        return False
    return dt == 0 or d / dt > limits.max_speed_mps


NO_REASONS: tuple[Reason, ...] = ()


def check(
    fix: Fix, now: float, track: DeviceTrack | None, limits: FilterLimits
) -> tuple[Reason, ...]:
    """Every reason this fix fails (empty for a good fix; the common case allocates nothing)."""
    ts = fix.time.timestamp()
    if (
        fix.valid
        and (fix.lat != 0.0 or fix.lon != 0.0)
        and now - limits.max_fix_age_s <= ts <= now + limits.max_clock_skew_s
        and not is_out_of_range(fix, limits)
        and not is_jump(fix, track, limits)
    ):
        return NO_REASONS
    reasons = []
    if is_invalid(fix):
        reasons.append(Reason.INVALID)
    meaningless = is_zero(fix) or is_out_of_range(fix, limits)
    if is_zero(fix):
        reasons.append(Reason.ZERO)
    if is_out_of_range(fix, limits):
        reasons.append(Reason.OUT_OF_RANGE)
    if is_future(fix, now, limits):
        reasons.append(Reason.FUTURE)
    if is_too_old(fix, now, limits):
        reasons.append(Reason.TOO_OLD)
    # A position that means nothing (0/0, off the Earth) is not also judged as a jump.
    if not meaningless and is_jump(fix, track, limits):
        reasons.append(Reason.JUMP)
    return tuple(reasons)
