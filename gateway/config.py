"""Settings: every knob is a `FIXGATE_*` environment variable with a working local default.

Built once per process (in the entry point), never at import. The README's settings table
is checked against this class by a test, so a setting cannot go undocumented.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Loopback ports of the native development stack (`fixgate stack`, devtools/stack), so the
# defaults below reach it: off the services' defaults, so a system PostgreSQL, Redis or
# Mosquitto on the same machine never collides with ours.
STACK_PG_PORT = 55432
STACK_REDIS_PORT = 56379
STACK_MQTT_PORT = 51883
STACK_OSRM_PORT = 55000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIXGATE_", extra="ignore")

    database_url: str = Field(
        f"postgresql://postgres@127.0.0.1:{STACK_PG_PORT}/fixgate",
        description="TimescaleDB (PostgreSQL) connection URL.",
    )
    redis_url: str = Field(
        f"redis://127.0.0.1:{STACK_REDIS_PORT}/0", description="Redis connection URL."
    )
    redis_prefix: str = Field(
        "fixgate:",
        description="Prefix of every Redis key and channel fixgate uses (isolates deployments and tests).",
    )
    mqtt_url: str = Field(
        f"mqtt://127.0.0.1:{STACK_MQTT_PORT}",
        description="MQTT broker URL (mqtt://[user:password@]host:port).",
    )
    mqtt_client_id: str = Field(
        "fixgate-gateway",
        description="MQTT client id; the persistent session the broker keeps is bound to it.",
    )
    mqtt_topic_prefix: str = Field(
        "", description="Prefix before the `fixgate/...` and `owntracks/...` topic trees."
    )
    mqtt_share_group: str | None = Field(
        None,
        description="Shared-subscription group (`$share/<group>/...`) so several gateways split the load.",
    )
    tcp_host: str = Field("127.0.0.1", description="Address the TCP NMEA listener binds.")
    tcp_port: int = Field(5010, description="TCP NMEA listener port.")
    metrics_host: str = Field("127.0.0.1", description="Address of the metrics/health endpoint.")
    metrics_port: int = Field(9108, description="Prometheus metrics endpoint port.")
    api_host: str = Field("127.0.0.1", description="Address the dispatch API binds.")
    api_port: int = Field(8000, description="Dispatch API port.")
    tcp_max_line_bytes: int = Field(
        1024,
        description="Longest TCP line accepted, bytes (NMEA caps a sentence at 82 characters).",
    )
    tcp_login_timeout_s: float = Field(
        30, description="A TCP connection must log in within this many seconds or is closed."
    )
    tcp_idle_timeout_s: float = Field(
        600, description="A logged-in TCP connection silent this long is closed, seconds."
    )
    tcp_max_errors: int = Field(
        50,
        description="Decode errors in a row (since the last good fix) before a TCP connection is closed.",
    )
    batch_max_fixes: int = Field(5000, description="Most fixes in one TimescaleDB write.")
    batch_max_age_s: float = Field(
        0.05, description="Longest a fix waits for its batch to fill before it is written, seconds."
    )
    max_queued_fixes: int = Field(
        100_000,
        description="Fixes accepted but not yet stored before listeners stop reading (backpressure); they resume at half.",
    )
    max_concurrent_writes: int = Field(
        2, description="Batch writes to TimescaleDB in flight at once."
    )
    max_clock_skew_s: float = Field(
        300, description="How far a fix time may be ahead of the server's clock, seconds."
    )
    max_speed_mps: float = Field(
        100, description="An implied speed above this between two fixes is a jump, m/s."
    )
    spool_dir: Path = Field(
        Path.home() / ".local" / "state" / "fixgate" / "spool",
        description="The gateway's state: the disk spool for acknowledged batches while TimescaleDB is away, and the registry snapshot; one gateway per folder.",
    )
    spool_max_bytes: int = Field(
        1024**3,
        description="Spool size bound, bytes; when full, intake pauses (acks withheld, TCP reads paused). 0 turns the spool off.",
    )
    spool_after_s: float = Field(
        5,
        description="A batch write not committed after this many seconds goes to the spool instead.",
    )
    registry_refresh_s: float = Field(
        10, description="How often the gateway reloads the device registry, seconds."
    )
    shutdown_timeout_s: float = Field(
        15,
        description="SIGTERM: how long the gateway may take to drain before it gives up, seconds.",
    )
    retention_days: float = Field(
        90, description="Position history older than this many days is dropped (chunk-wise)."
    )
    retention_interval_s: float = Field(
        3600, description="How often the gateway runs the retention job (apache edition), seconds."
    )
    log_level: str = Field("INFO", description="Log level (DEBUG, INFO, WARNING, ERROR).")


def mqtt_address(url: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, username, password) of an `mqtt://[user[:password]@]host[:port]` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp"):
        raise ValueError(f"MQTT URL must start with mqtt://, got {url!r}")
    return parts.hostname or "127.0.0.1", parts.port or 1883, parts.username, parts.password
