"""The ingest core, sans-IO: filter, classify and batch fixes; the gateway does the writing.

Listeners `submit()` the fixes of one message or one read; the core filters them
(`ingest.filters`), decides per fix which sinks it reaches, and appends to the open batch.
A batch closes when it is full or old enough (`next_deadline()`), and `take()` hands it
to the writers. An `ack` passed with a submission rides in the batch, so the listener can
acknowledge the message once the batch is durable. No clock reads: `now` is wall-clock
Unix seconds, passed in. No metrics library either: the core counts in `counts`, and the
shell exports those numbers (`gateway.metrics.export_ingest_counts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from devices.fix import Fix
from ingest.filters import HISTORY_ALLOWED, DeviceTrack, FilterLimits, Reason, check, order_time

Ack = Callable[[], None]


class BatchLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_batch_fixes: int = 5000
    """A COPY of 5,000 rows takes ~20 ms here: big enough to amortize the round trips,
    small enough that one batch never holds a device's fix for long."""
    max_batch_age_s: float = 0.05
    """A fix waits at most 50 ms for company before its batch is written."""


class Batch(msgspec.Struct):
    rows: list[Fix]
    """Fixes for the history (TimescaleDB), in arrival order."""
    live: list[Fix]
    """Every valid fix of this batch that moved its device forward (by
    `ingest.filters.order_time`: fix time, capped at the receive time), in arrival order:
    the live position takes each device's last one, and the positions stream carries them
    all (the engine evaluates every one)."""
    acks: list[Ack]
    """Called once the rows are durable."""


class IngestCounts:
    """What the core has seen since it started, for the shell to export as metrics."""

    def __init__(self) -> None:
        self.received: dict[str, int] = {}
        """Fixes submitted, per protocol."""
        self.rejected: dict[Reason, int] = dict.fromkeys(Reason, 0)
        """Fixes failing each filter reason (a fix may fail several)."""
        self.late = 0
        """Valid fixes older than their device's newest: history only."""


class Ingest:
    def __init__(self, filter_limits: FilterLimits, batch_limits: BatchLimits) -> None:
        self.filter_limits = filter_limits
        self.batch_limits = batch_limits
        self.tracks: dict[str, DeviceTrack] = {}
        self._rows: list[Fix] = []
        self._live: list[Fix] = []
        self._acks: list[Ack] = []
        self._opened_at: float | None = None
        self.counts = IngestCounts()

    @property
    def pending(self) -> int:
        """Fixes in the open batch."""
        return len(self._rows)

    def submit(self, fixes: Sequence[Fix], now: float, ack: Ack | None = None) -> None:
        """Take the fixes of one message (or one socket read) from one protocol."""
        if fixes:
            received = self.counts.received
            protocol = fixes[0].protocol.value
            received[protocol] = received.get(protocol, 0) + len(fixes)
            if self._opened_at is None:
                self._opened_at = now
        for fix in fixes:
            self._take(fix, now)
        if ack is not None:
            if self._opened_at is None:  # nothing to store: durable as it is
                ack()
            else:
                self._acks.append(ack)

    def _take(self, fix: Fix, now: float) -> None:
        track = self.tracks.get(fix.device_id)
        reasons = check(fix, now, track, self.filter_limits)
        if reasons:
            rejected = self.counts.rejected
            for reason in reasons:
                rejected[reason] += 1
            if HISTORY_ALLOWED.issuperset(reasons):
                # History keeps it, flagged; it moves nothing: a refused or filtered fix
                # never advances the device's newest time (nor its jump reference).
                self._rows.append(msgspec.structs.replace(fix, valid=False))
            return
        self._rows.append(fix)
        order = order_time(fix)
        if track is None:
            self.tracks[fix.device_id] = DeviceTrack(
                newest_time=fix.time, good_time=fix.time, good_lat=fix.lat, good_lon=fix.lon,
                newest_order=order,
            )  # fmt: skip
            self._live.append(fix)
            return
        newest = track.newest_order or track.newest_time
        if order > newest or (order == newest and fix.time > track.newest_time):
            track.newest_time = track.good_time = fix.time
            track.newest_order = order
            track.good_lat, track.good_lon = fix.lat, fix.lon
            self._live.append(fix)
        elif fix.time != track.newest_time:
            self.counts.late += 1
        # Equal time: a resend of the newest fix; the database stores it once.

    def next_deadline(self) -> float | None:
        """When the open batch must be written even if it is not full."""
        if self._opened_at is None:
            return None
        return self._opened_at + self.batch_limits.max_batch_age_s

    def ready(self, now: float) -> bool:
        if self._opened_at is None:
            return False
        return (
            len(self._rows) >= self.batch_limits.max_batch_fixes
            or now >= self._opened_at + self.batch_limits.max_batch_age_s
        )

    def take(self) -> Batch | None:
        """Close and return the open batch (None when there is nothing in it)."""
        if self._opened_at is None:
            return None
        batch = Batch(self._rows, self._live, self._acks)
        self._rows, self._live, self._acks = [], [], []
        self._opened_at = None
        return batch
