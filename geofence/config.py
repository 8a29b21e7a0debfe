"""The engine core's parameters, with the reasoning behind each default.

Hysteresis (README "Geofences"): a fix enters a fence when it is inside by more than its
own error for `enter_min_fixes` fixes in a row, and exits only when outside by
`exit_margin_m` plus its error. The band between is where GPS jitter lives: with the
defaults, a fix within +/-10 m of an edge can at most enter once (when 10 m inside with a
better than 10 m error) and never exit (that needs >= 15 m + error outside), so it cannot flap.
"""

from __future__ import annotations

from typing import Final

import msgspec

UERE_M: Final = 5.0
"""User equivalent range error of a civil single-frequency GNSS receiver, metres (1 sigma,
open sky: ~4-6 m in the GPS SPS performance standard). Horizontal error ~ HDOP x UERE."""
MPH: Final = 0.44704
"""Metres per second in a mile per hour."""


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    # --- geofences ---------------------------------------------------------------------
    enter_min_fixes: int = 1
    """Consecutive fixes inside by more than their error before an enter. 1: a fix clearly
    inside (beyond its own error) is evidence enough; raise it for receivers that lie."""
    exit_margin_m: float = 15.0
    """Outside by this much plus the fix's error before an exit: larger than the +/-10 m
    jitter of a consumer receiver at an edge, small next to a customer site."""
    default_error_m: float = 10.0
    """A fix with neither accuracy nor HDOP is taken to be this uncertain (a typical 95 %
    horizontal error of a phone or tracker under open sky)."""
    uere_m: float = UERE_M
    max_error_m: float = 200.0
    """Fixes less precise than this decide nothing about geofences (cell/Wi-Fi positions):
    they cannot tell a customer's yard from the street."""
    # --- trips ---------------------------------------------------------------------------
    arrival_max_speed_mps: float = 2.0
    """Under this a vehicle within the trip's radius has stopped (walking pace, 7 km/h)."""
    arrival_hold_s: float = 10.0
    """Or it has stayed within the radius this long (crawling into a yard, no speed field).
    A pass-by at 60 km/h crosses a 30 m radius in under 4 s."""
    update_min_interval_s: float = 1.0
    """At most one trip_update per trip per this many seconds of fix time..."""
    update_eta_change: float = 0.10
    """... unless the ETA moved by more than this share (then at once)."""
    off_route_m: float = 50.0
    """Farther than this plus the fix's error from the route is off the route (a parallel
    street is 30-80 m away; GPS error is added separately)."""
    off_route_fixes: int = 2
    """Off the route this many fixes in a row before a re-route (one bad fix is noise)."""
    route_retry_s: float = 30.0
    """Seconds of fix time between two route requests of one trip (bounds load on OSRM
    when it fails, and re-routing of a device that keeps leaving the route)."""
    max_snap_m: float = 250.0
    """A route whose origin or destination snapped farther than this to a road is not used:
    the point is outside the routing extract (OSRM snaps to the nearest road it knows)."""
    routing_enabled: bool = True
    """False: never ask for routes (no routing engine configured): `local` ETAs only."""
    road_factor: float = 1.3
    """Road distance / great-circle distance for the local fallback (typical urban
    circuity is 1.2-1.4)."""
    local_min_speed_mps: float = 5.0
    """Below this smoothed speed (stopped at a light, not yet departed) the observed speed
    says nothing about the trip's average: the fallback speed is used instead."""
    fallback_speed_mps: float = 25.0 * MPH
    """The seed's 25 mph average, when no observed speed is usable."""
    speed_tau_s: float = 120.0
    """Time constant of the smoothed speed (a couple of traffic lights)."""
    pace_tau_s: float = 300.0
    """Time constant of the observed/route pace ratio that scales the route's durations."""
    min_pace: float = 0.5
    max_pace: float = 1.5
    """Bounds of that ratio: no driver is reliably twice as slow or 1.5x as fast as OSRM."""
    queue_buffer_s: float = 1800.0
    """Added to the queue ETA of every waiting trip (seed 004: 30 min)."""
