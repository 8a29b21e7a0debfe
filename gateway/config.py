"""Settings: every knob is a `FIXGATE_*` environment variable with a working local default.

Built once per process (in the entry point), never at import. The README's settings table
is checked against this class by a test, so a setting cannot go undocumented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.keys import DEFAULT_SHARDS, MAX_SHARDS
from devices.framing import DEFAULT_MAX_LINE_BYTES
from devices.tcp_nmea import DEFAULT_MAX_ERRORS
from ingest.filters import FilterLimits
from ingest.pipeline import BatchLimits

# Defaults of the bounds the cores argue for, written once (there).
_BATCH = BatchLimits()
_FILTER = FilterLimits()

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
    position_shards: int = Field(
        DEFAULT_SHARDS,
        ge=1,
        le=MAX_SHARDS,
        description="Shards of the positions stream and the engine's state, by device (the same in every gateway, engine and API; changing it is an offline step: docs/scaling.md).",
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
    # Traccar's port conventions, so a fleet already pointed at a Traccar server needs no
    # reconfiguration; 0 turns a listener off.
    teltonika_host: str = Field("127.0.0.1", description="Address the Teltonika listener binds.")
    teltonika_port: int = Field(
        5027, description="Teltonika listener port, TCP and UDP (Traccar's); 0 turns it off."
    )
    gt06_host: str = Field("127.0.0.1", description="Address the GT06 listener binds.")
    gt06_port: int = Field(5023, description="GT06 listener port, TCP (Traccar's); 0 turns it off.")
    osmand_host: str = Field(
        "127.0.0.1",
        description="Address of the HTTP listener for the Traccar Client and OwnTracks apps.",
    )
    osmand_port: int = Field(
        5055,
        description="HTTP port of the Traccar Client app (OsmAnd protocol, Traccar's) and of OwnTracks HTTP mode under /owntracks; 0 turns it off.",
    )
    # Past the spool's takeover (`spool_after_s`, 5 s): a fix is durable by then unless the
    # spool is full or off, and a phone app waits longer than this for an answer anyway.
    http_ack_timeout_s: float = Field(
        10,
        description="Longest an HTTP device request is held for its fix to become durable; then the Traccar Client gets 503 and OwnTracks a closed connection, so both send it again.",
    )
    # The technician app (issue 23) posts its phone's fixes from the API's pages, another
    # origin: the browser asks first (a CORS preflight) and reads no answer unless the
    # listener names the page's origin. The default is the API's default address.
    http_cors_origins: Annotated[list[str], NoDecode] = Field(
        ["http://127.0.0.1:8000", "http://localhost:8000"],
        description="Origins (scheme://host[:port], comma separated) whose pages may post fixes to the HTTP listener from a browser: the dispatch API's address as phones reach it; empty: none.",
    )

    @field_validator("http_cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    metrics_host: str = Field("127.0.0.1", description="Address of the metrics/health endpoint.")
    metrics_port: int = Field(9108, description="Prometheus metrics endpoint port.")
    tcp_max_line_bytes: int = Field(
        DEFAULT_MAX_LINE_BYTES,  # argued in devices.framing
        description="Longest TCP line accepted, bytes (NMEA caps a sentence at 82 characters).",
    )
    # A device logs in with its first line, right after connecting; 30 s covers a slow
    # cellular link with room to spare while bounding sockets held by silent peers.
    tcp_login_timeout_s: float = Field(
        30, description="A TCP connection must log in within this many seconds or is closed."
    )
    # Trackers report every 1-120 s even when parked (heartbeats); ten minutes of silence
    # is a dead link whose socket the kernel may never report.
    tcp_idle_timeout_s: float = Field(
        600, description="A logged-in TCP connection silent this long is closed, seconds."
    )
    tcp_max_errors: int = Field(
        DEFAULT_MAX_ERRORS,  # argued in devices.tcp_nmea
        description="Decode errors in a row (since the last good fix) before a TCP connection is closed.",
    )
    batch_max_fixes: int = Field(
        _BATCH.max_batch_fixes, description="Most fixes in one TimescaleDB write."
    )
    batch_max_age_s: float = Field(
        _BATCH.max_batch_age_s,
        description="Longest a fix waits for its batch to fill before it is written, seconds.",
    )
    # 20 batches of the default size: ~5 s of intake at 20k fixes/s, ~30 MB of Fix structs.
    max_queued_fixes: int = Field(
        100_000,
        description="Fixes accepted but not yet stored before listeners stop reading (backpressure); they resume at half.",
    )
    # One COPY writing while the next is being built: more only contend for the 2 cores.
    max_concurrent_writes: int = Field(
        2, description="Batch writes to TimescaleDB in flight at once."
    )
    max_clock_skew_s: float = Field(
        _FILTER.max_clock_skew_s,
        description="How far a fix time may be ahead of the server's clock, seconds.",
    )
    max_speed_mps: float = Field(
        _FILTER.max_speed_mps,
        description="An implied speed above this between two fixes is a jump, m/s.",
    )
    spool_dir: Path = Field(
        Path.home() / ".local" / "state" / "fixgate" / "spool",
        description="The gateway's state: the disk spool for acknowledged batches while TimescaleDB is away, and the registry snapshot; one gateway per folder.",
    )
    # 1 GiB holds ~5M fixes: hours of a 1,000-device fleet while the database is away.
    spool_max_bytes: int = Field(
        1024**3,
        description="Spool size bound, bytes; when full, intake pauses (acks withheld, TCP reads paused). 0 turns the spool off.",
    )
    # A healthy commit takes tens of ms; 5 s means the database is in trouble, and devices
    # waiting longer for their acknowledgement start resending.
    spool_after_s: float = Field(
        5,
        description="A batch write not committed after this many seconds goes to the spool instead.",
    )
    # Only the safety net: changes arrive by LISTEN/NOTIFY at once.
    registry_refresh_s: float = Field(
        10, description="How often the gateway reloads the device registry, seconds."
    )
    # Under the 30 s that systemd and Docker wait after SIGTERM before SIGKILL.
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

    # ---- trust (issue 20, docs/security.md) ----------------------------------------
    mqtt_ca_file: Path | None = Field(
        None,
        description="CA certificate that signed the broker's TLS certificate, for mqtts:// URLs (unset: the system's CAs).",
    )
    mqtt_admin_url: str | None = Field(
        None,
        description="The broker's dynamic-security admin account (mqtt[s]://user:password@host:port): device accounts follow the registry through it; unset: the gateway leaves the broker's accounts alone.",
    )
    # A device sends one epoch of a few sentences per message; 100 lines of 82 characters
    # is a minute's backlog of 1 Hz RMC+GGA pairs in one message: far more than any device
    # sends, and decoding it takes well under a millisecond.
    mqtt_nmea_max_bytes: int = Field(
        16 * 1024,
        description="Largest NMEA message over MQTT, bytes; a larger one is refused whole (acknowledged, counted).",
    )
    mqtt_nmea_max_lines: int = Field(
        200, description="Most NMEA lines in one MQTT message; the rest of the message is refused."
    )
    mqtt_nmea_max_errors: int = Field(
        DEFAULT_MAX_ERRORS,
        description="Decode errors in one NMEA message over MQTT before the rest of it is refused.",
    )
    # A tracker that lost its token, or a typo, fails a few times a minute; an address
    # guessing ids fails thousands of times. Behind carrier NAT many devices share one
    # address: the block applies to identification only, never to devices already in.
    auth_max_failures: int = Field(
        20,
        description="Failed identifications (unknown id, IMEI or token) from one address within `FIXGATE_AUTH_FAILURE_WINDOW_S` before that address is refused for `FIXGATE_AUTH_BLOCK_S`.",
    )
    auth_failure_window_s: float = Field(
        60, description="Window in which failed identifications per address are counted, seconds."
    )
    auth_block_s: float = Field(
        300,
        description="How long an address over the failure limit is refused (HTTP 429, or its connections closed before identification), seconds.",
    )
    # A depot or a carrier's NAT puts many trackers behind one address; 256 covers a
    # large yard while one address can no longer take all of the process's file descriptors.
    tcp_max_connections_per_address: int = Field(
        256,
        description="Open TCP connections one address may hold on each TCP listener (NMEA, Teltonika, GT06, HTTP); more are closed at once and counted.",
    )


def mqtt_address(url: str) -> tuple[str, int, str | None, str | None]:
    """(host, port, username, password) of an `mqtt[s]://[user[:password]@]host[:port]` URL."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    default_port = 8883 if parts.scheme == "mqtts" else 1883
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname or "127.0.0.1", parts.port or default_port, user, password


def mqtt_tls(url: str) -> bool:
    """Whether an MQTT URL asks for TLS (`mqtts://`)."""
    return url.startswith("mqtts://")
