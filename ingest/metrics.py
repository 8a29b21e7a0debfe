"""What the ingest path counts, as Prometheus metrics (served by the gateway's endpoint).

Counters are bumped once per batch or per message with a count, never one call per fix
where a sum will do: the per-fix path is hot.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Device time-to-stored spans seconds (live) to days (backlog after a tunnel).
_FIX_AGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, 86400)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30)

FIXES_RECEIVED = Counter("fixgate_fixes_received_total", "Fixes decoded from devices.", ["protocol"])
FIXES_STORED = Counter("fixgate_fixes_stored_total", "Fixes newly stored in TimescaleDB.")
FIXES_REJECTED = Counter(
    "fixgate_fixes_rejected_total",
    "Fixes that failed a filter, by reason (a fix may fail several).",
    ["reason"],
)
FIXES_DUPLICATE = Counter("fixgate_fixes_duplicate_total", "Fixes already stored (same device and fix time).")
FIXES_LATE = Counter("fixgate_fixes_late_total", "Fixes older than the device's newest: history only.")
LIVE_UPDATES = Counter("fixgate_live_updates_total", "Live positions written to Redis.")
DECODE_ERRORS = Counter(
    "fixgate_decode_errors_total", "Input that could not become a fix, by protocol and reason.", ["protocol", "reason"]
)
AUTH_REFUSED = Counter(
    "fixgate_auth_refused_total", "Refused device identities, by listener and reason.", ["listener", "reason"]
)
MESSAGES_RECEIVED = Counter("fixgate_mqtt_messages_received_total", "MQTT messages received.")
TCP_CONNECTIONS = Gauge("fixgate_tcp_connections", "Open TCP device connections.")
TCP_CLOSED = Counter("fixgate_tcp_connections_closed_total", "TCP connections closed by fixgate, by reason.", ["reason"])
QUEUE_DEPTH = Gauge("fixgate_ingest_queue_fixes", "Fixes accepted but not yet written to TimescaleDB.")
BATCH_SIZE = Histogram(
    "fixgate_batch_size_fixes", "Fixes per TimescaleDB write.", buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
)
WRITE_SECONDS = Histogram("fixgate_write_seconds", "Duration of one batch write, by sink.", ["sink"], buckets=_LATENCY_BUCKETS)
RECEIVE_TO_STORED = Histogram(
    "fixgate_receive_to_stored_seconds", "From the gateway receiving a fix to its commit.", buckets=_LATENCY_BUCKETS
)
FIX_TO_STORED = Histogram(
    "fixgate_fix_time_to_stored_seconds", "From the device's fix time to its commit.", buckets=_FIX_AGE_BUCKETS
)
WRITE_ERRORS = Counter("fixgate_write_errors_total", "Failed batch writes, by sink.", ["sink"])

# ---- durability: the disk spool and outages ----------------------------------------
SPOOL_BYTES = Gauge("fixgate_spool_bytes", "Bytes in the disk spool (bounded by FIXGATE_SPOOL_MAX_BYTES).")
SPOOL_FIXES = Gauge("fixgate_spool_fixes", "Acknowledged fixes waiting in the disk spool for TimescaleDB.")
SPOOL_FULL = Gauge("fixgate_spool_full", "1 while the spool refuses batches (intake paused), else 0.")
SPOOL_WRITTEN = Counter("fixgate_spool_written_fixes_total", "Fixes written (and fsynced) to the disk spool.")
SPOOL_REPLAYED = Counter("fixgate_spool_replayed_fixes_total", "Spooled fixes replayed into TimescaleDB.")
SPOOL_DAMAGED = Counter("fixgate_spool_damaged_records_total", "Spool records skipped because they were damaged on disk.")
OUTAGE_SECONDS = Counter(
    "fixgate_outage_seconds_total", "Time a sink was unreachable, by sink (counted when it returns).", ["sink"]
)
SINK_DOWN = Gauge("fixgate_sink_down", "1 while a sink is unreachable, by sink.", ["sink"])
LIVE_BACKLOG = Gauge("fixgate_live_backlog_devices", "Devices whose newest fix still waits for Redis.")
