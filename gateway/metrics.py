"""What the ingest path counts, as Prometheus metrics (served by the gateway's endpoint).

Counters are bumped once per batch or per message with a count, never one call per fix
where a sum will do: the per-fix path is hot. Histograms of per-fix latencies are
observed once per batch too (`observe_latencies`): the bucket counts are summed here and
each touched bucket is bumped once, where `Histogram.observe` per fix took a lock twice
per fix (a sixth of the gateway's CPU at 20,000 fixes/s).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from devices.fix import Protocol
from ingest.filters import Reason

if TYPE_CHECKING:
    from devices.fix import Fix
    from ingest.pipeline import IngestCounts

# Device time-to-stored spans seconds (live) to days (backlog after a tunnel).
_FIX_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)

FIXES_RECEIVED = Counter(
    "fixgate_fixes_received_total", "Fixes decoded from devices.", ["protocol"]
)
FIXES_STORED = Counter("fixgate_fixes_stored_total", "Fixes newly stored in TimescaleDB.")
FIXES_REJECTED = Counter(
    "fixgate_fixes_rejected_total",
    "Fixes that failed a filter, by reason (a fix may fail several).",
    ["reason"],
)
FIXES_DUPLICATE = Counter(
    "fixgate_fixes_duplicate_total", "Fixes already stored (same device and fix time)."
)
FIXES_LATE = Counter(
    "fixgate_fixes_late_total", "Fixes older than the device's newest: history only."
)
LIVE_UPDATES = Counter("fixgate_live_updates_total", "Live positions written to Redis.")
DECODE_ERRORS = Counter(
    "fixgate_decode_errors_total",
    "Input that could not become a fix, by protocol and reason.",
    ["protocol", "reason"],
)
AUTH_REFUSED = Counter(
    "fixgate_auth_refused_total",
    "Refused device identities, by listener and reason.",
    ["listener", "reason"],
)
AUTH_THROTTLED = Counter(
    "fixgate_auth_throttled_total",
    "Connections, requests and datagrams refused because their address failed to identify too often (FIXGATE_AUTH_*), by listener.",
    ["listener"],
)
AUTH_BLOCKS = Counter(
    "fixgate_auth_blocks_total",
    "Addresses blocked for failing to identify too often, by the listener of the last failure.",
    ["listener"],
)
MESSAGES_RECEIVED = Counter("fixgate_mqtt_messages_received_total", "MQTT messages received.")
MESSAGES_REFUSED = Counter(
    "fixgate_mqtt_messages_refused_total",
    "MQTT messages refused whole or in part (acknowledged, never redelivered), by protocol and reason.",
    ["protocol", "reason"],
)
TCP_CONNECTIONS = Gauge(
    "fixgate_tcp_connections", "Open TCP device connections, by protocol.", ["protocol"]
)
TCP_CLOSED = Counter(
    "fixgate_tcp_connections_closed_total",
    "TCP connections closed by fixgate, by protocol and reason.",
    ["protocol", "reason"],
)
DATAGRAMS_REFUSED = Counter(
    "fixgate_udp_datagrams_refused_total",
    "UDP datagrams taken but not acknowledged (the device sends them again), by protocol and reason.",
    ["protocol", "reason"],
)
HTTP_REQUESTS = Counter(
    "fixgate_http_requests_total",
    "Device HTTP requests answered, by protocol and status (0: closed without an answer).",
    ["protocol", "status"],
)
QUEUE_DEPTH = Gauge(
    "fixgate_ingest_queue_fixes", "Fixes accepted but not yet written to TimescaleDB."
)
BATCH_SIZE = Histogram(
    "fixgate_batch_size_fixes",
    "Fixes per TimescaleDB write.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
WRITE_SECONDS = Histogram(
    "fixgate_write_seconds",
    "Duration of one batch write, by sink.",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
RECEIVE_TO_STORED = Histogram(
    "fixgate_receive_to_stored_seconds",
    "From the gateway receiving a fix to its commit.",
    buckets=_LATENCY_BUCKETS,
)
FIX_TO_STORED = Histogram(
    "fixgate_fix_time_to_stored_seconds",
    "From the device's fix time to its commit.",
    buckets=_FIX_AGE_BUCKETS,
)
WRITE_ERRORS = Counter("fixgate_write_errors_total", "Failed batch writes, by sink.", ["sink"])


def _bumpable(histogram: Histogram) -> bool:
    # prometheus_client's internals, used read-only for the bounds; any other layout
    # (a future release) falls back to `observe` per value.
    return all(hasattr(histogram, name) for name in ("_upper_bounds", "_buckets", "_sum"))


def _bump(histogram: Histogram, counts: Sequence[int], total: float) -> None:
    """Add per-bucket `counts` (non-cumulative, one per upper bound) and their `total`."""
    histogram._sum.inc(total)
    buckets = histogram._buckets
    for i, count in enumerate(counts):
        if count:
            buckets[i].inc(count)


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """`histogram.observe(v)` for every value, bumping each touched bucket once."""
    if not _bumpable(histogram):
        for value in values:
            histogram.observe(value)
        return
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bound >= value, as observe()
        total += value
    _bump(histogram, counts, total)


def observe_latencies(rows: Sequence[Fix], done: float) -> None:
    """Receive-to-stored and fix-time-to-stored of a batch stored at `done` (Unix s)."""
    if not (_bumpable(RECEIVE_TO_STORED) and _bumpable(FIX_TO_STORED)):
        observe_many(
            RECEIVE_TO_STORED, [done - f.received_at.timestamp() for f in rows if f.received_at]
        )
        observe_many(FIX_TO_STORED, [done - f.time.timestamp() for f in rows])
        return
    receive_bounds, age_bounds = RECEIVE_TO_STORED._upper_bounds, FIX_TO_STORED._upper_bounds
    receive_counts, age_counts = [0] * len(receive_bounds), [0] * len(age_bounds)
    receive_total = age_total = 0.0
    last_received = None
    receive_latency, receive_bucket = 0.0, 0
    for fix in rows:
        received = fix.received_at
        if received is not None:
            # Fixes of one message or one read share their received_at object.
            if received is not last_received:
                last_received = received
                receive_latency = done - received.timestamp()
                receive_bucket = bisect_left(receive_bounds, receive_latency)
            receive_counts[receive_bucket] += 1
            receive_total += receive_latency
        age = done - fix.time.timestamp()
        age_counts[bisect_left(age_bounds, age)] += 1
        age_total += age
    _bump(RECEIVE_TO_STORED, receive_counts, receive_total)
    _bump(FIX_TO_STORED, age_counts, age_total)


# ---- durability: the disk spool and outages ----------------------------------------
SPOOL_BYTES = Gauge(
    "fixgate_spool_bytes", "Bytes in the disk spool (bounded by FIXGATE_SPOOL_MAX_BYTES)."
)
SPOOL_FIXES = Gauge(
    "fixgate_spool_fixes", "Acknowledged fixes waiting in the disk spool for TimescaleDB."
)
SPOOL_FULL = Gauge(
    "fixgate_spool_full", "1 while the spool refuses batches (intake paused), else 0."
)
SPOOL_WRITTEN = Counter(
    "fixgate_spool_written_fixes_total", "Fixes written (and fsynced) to the disk spool."
)
SPOOL_REPLAYED = Counter(
    "fixgate_spool_replayed_fixes_total", "Spooled fixes replayed into TimescaleDB."
)
SPOOL_DAMAGED = Counter(
    "fixgate_spool_damaged_records_total",
    "Spool records skipped because they were damaged on disk.",
)
OUTAGE_SECONDS = Counter(
    "fixgate_outage_seconds_total",
    "Time a sink was unreachable, by sink (counted when it returns).",
    ["sink"],
)
SINK_DOWN = Gauge("fixgate_sink_down", "1 while a sink is unreachable, by sink.", ["sink"])
STREAM_DROPPED = Counter(
    "fixgate_positions_stream_dropped_total",
    "Valid fixes not put on the positions stream: Redis was away longer than its backlog bound.",
)
LIVE_BACKLOG = Gauge(
    "fixgate_live_backlog_devices", "Devices whose newest fix still waits for Redis."
)


class IngestCountsExport:
    """Moves the ingest core's plain counts into the Prometheus counters: the core counts
    without a metrics library (it is pure), the shell calls `sync()` once per batch."""

    def __init__(self, counts: IngestCounts) -> None:
        self.counts = counts
        self._received: dict[str, int] = {}
        self._rejected: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self._late = 0
        for protocol in Protocol:  # every label shown at 0 from the start
            FIXES_RECEIVED.labels(protocol.value)
        for reason in Reason:
            FIXES_REJECTED.labels(reason.value)

    def sync(self) -> None:
        counts = self.counts
        for protocol, n in counts.received.items():
            if n != self._received.get(protocol, 0):
                FIXES_RECEIVED.labels(protocol).inc(n - self._received.get(protocol, 0))
                self._received[protocol] = n
        for reason, n in counts.rejected.items():
            if n != self._rejected[reason]:
                FIXES_REJECTED.labels(reason.value).inc(n - self._rejected[reason])
                self._rejected[reason] = n
        if counts.late != self._late:
            FIXES_LATE.inc(counts.late - self._late)
            self._late = counts.late
