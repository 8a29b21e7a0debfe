"""Settings of the dispatch API: `FIXGATE_*` environment variables, built in the entry point.

The database, Redis and prefix settings are the gateway's (same variables, same defaults)
so one environment serves both processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.keys import DEFAULT_SHARDS, MAX_SHARDS, Keys
from gateway.config import STACK_PG_PORT, STACK_REDIS_PORT

MIN_SECRET_CHARS = 32
"""HS256 wants a key at least as long as its 256-bit hash (RFC 7518 3.2)."""
DEMO_API_SECRET = "fixgate-demo-secret-for-this-machine-only-0000"
"""The secret `fixgate demo` signs its tokens with: public, so an API using it must listen on
loopback only (`create_app` refuses otherwise)."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIXGATE_", extra="ignore")

    database_url: str = Field(
        f"postgresql://postgres@127.0.0.1:{STACK_PG_PORT}/fixgate",
        description="TimescaleDB (PostgreSQL) connection URL.",
    )
    redis_url: str = Field(
        f"redis://127.0.0.1:{STACK_REDIS_PORT}/0", description="Redis connection URL."
    )
    redis_prefix: str = Field("fixgate:", description="Prefix of every Redis key fixgate uses.")
    position_shards: int = Field(
        DEFAULT_SHARDS, ge=1, le=MAX_SHARDS, description="Shards of the positions (the gateway's)."
    )
    api_host: str = Field("127.0.0.1", description="Address the dispatch API binds.")
    api_port: int = Field(8000, description="Dispatch API port.")
    api_secret: str = Field(
        "",
        description="HS256 key of the API's bearer tokens (at least 32 characters; no default).",
    )
    api_max_body_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Largest request body the API reads, bytes (larger: 413 before it is read).",
    )
    customer_open_requests_max: int = Field(
        5, ge=1, description="Most open requests one customer holds at once (more: 409)."
    )
    create_requests_per_min: int = Field(
        10,
        ge=1,
        description="Requests one principal may create per minute (more: 429 with Retry-After).",
    )
    geofence_max_vertices: int = Field(
        10_000, ge=4, description="Most vertices of one geofence (more: 422)."
    )
    geofences_per_tenant_max: int = Field(
        5_000,
        ge=1,
        description="Most geofences of one tenant (every tenant's fences share the engine).",
    )
    api_db_pool_max: int = Field(
        20, description="Most database connections the API holds (asyncpg pool size)."
    )
    ring_radii_miles: Annotated[list[float], NoDecode] = Field(
        [20.0, 40.0, 60.0, 80.0],
        description="Outer radius of each ring phase, miles, widening (comma separated).",
    )
    ring_phase_s: float = Field(15.0, gt=0, description="Length of one ring phase, seconds.")
    ring_poll_s: float = Field(
        0.25, gt=0, description="How often an API process looks for due ring phases, seconds."
    )
    ring_workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Ring phases one API process runs at once (each takes its own due phase).",
    )
    scheduled_ring_lead_s: float = Field(
        3600.0,
        ge=0,
        description="A Scheduled request starts ringing this long before its time, seconds.",
    )
    sla_poll_s: float = Field(
        5.0,
        gt=0,
        description="How often an API process looks for requests past their service area's"
        " response-time SLA, seconds.",
    )
    online_max_age_s: float = Field(
        120.0,
        gt=0,
        description="A technician is online only with a live position younger than this, seconds.",
    )
    queue_limit: int = Field(
        5, ge=1, description="Most open requests in one technician's queue (ring and accept)."
    )
    eta_buffer_s: float = Field(
        900.0, ge=0, description="Buffer added to a queue ETA, seconds (spec: 15 minutes)."
    )
    eta_window_s: float = Field(
        2700.0, ge=0, description="Width of the ETA window shown to a customer, seconds."
    )
    fallback_speed_mps: float = Field(
        11.176,
        gt=0,
        description="Travel speed for an ETA without a route from the engine, m/s (25 mph).",
    )
    track_max_points: int = Field(
        2000, ge=10, description="Most points a device track response holds (time_bucket)."
    )
    ring_require_connected: bool = Field(
        True,
        description="Ring only technicians connected to /ws (on any API process) as well.",
    )
    api_keepalive_s: int = Field(
        75,
        ge=1,
        description="An idle keep-alive HTTP connection is closed after this long, seconds.",
    )
    ws_ping_interval_s: float = Field(
        20.0, gt=0, description="Interval of the server's WebSocket pings, seconds."
    )
    ws_ping_timeout_s: float = Field(
        20.0, gt=0, description="A WebSocket ping unanswered this long closes the connection, s."
    )
    ws_send_queue_max: int = Field(
        256, ge=1, description="Messages queued for one WebSocket client before it is closed."
    )
    ws_replay_window_s: float = Field(
        600.0,
        gt=0,
        description="Dispatch events kept for replay to reconnecting clients, seconds.",
    )
    ws_presence_ttl_s: float = Field(
        30.0,
        gt=0,
        description="A technician's 'connected' claim lapses this long after its process stops"
        " refreshing it, seconds.",
    )

    session_ttl_s: int = Field(
        8 * 3600,
        ge=60,
        le=24 * 3600,
        description="Life of a session token from a login or a sign-in link, seconds (a shift).",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins in a row that lock an account (per e-mail)."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one address that lock it out, any accounts."
    )
    login_lockout_s: int = Field(
        900, ge=1, description="How long a lockout lasts, and the window failures count in, s."
    )
    public_url: str | None = Field(
        None,
        description="The API's address as people reach it (https://dispatch.example.com), for"
        " sign-in links; unset: the address the request came to.",
    )

    mqtt_admin_url: str | None = Field(
        None,
        description="The broker's dynamic-security admin account: devices registered through"
        " the API get their broker accounts (as `fixgate device add`); unset: none.",
    )
    mqtt_topic_prefix: str = Field("", description="The gateway's MQTT topic prefix.")
    mqtt_ca_file: Path | None = Field(
        None, description="CA certificate of the broker's TLS certificate (mqtts:// URLs)."
    )

    # The technician app (/tech) posts its phone's fixes to the gateway's HTTP listener
    # (OwnTracks HTTP), not to the API: these say where phones reach it. The listener's own
    # variables, read here for the default.
    osmand_host: str = Field("127.0.0.1", description="The gateway's HTTP device listener address.")
    osmand_port: int = Field(5055, description="The gateway's HTTP device listener port.")
    phone_gateway_url: str | None = Field(
        None,
        description="The gateway's HTTP device listener as phones reach it"
        " (https://gps.example.com), where the technician app posts its fixes; unset:"
        " http://FIXGATE_OSMAND_HOST:FIXGATE_OSMAND_PORT.",
    )
    phone_credentials_per_min: int = Field(
        10,
        ge=1,
        description="Device credentials one technician may take a minute (each replaces the"
        " last; more: 429).",
    )

    map_tiles_url: str | None = Field(
        None,
        description="Base map tiles of the console and tracking page ({z}/{x}/{y} URL template);"
        " unset: a plain background with the routing extract's roads.",
    )
    map_tiles_attribution: str = Field(
        "© OpenStreetMap contributors",
        description="Attribution shown under the map (tiles and the road network).",
    )
    map_roads_path: str | None = Field(
        None,
        description="GeoJSON file of the routing extract's roads, drawn when no tiles are set;"
        " unset: a plain background.",
    )

    def phone_gateway(self) -> str:
        """The base URL the technician app posts its fixes to (no trailing slash)."""
        if self.phone_gateway_url:
            return self.phone_gateway_url.rstrip("/")
        host = "127.0.0.1" if self.osmand_host in ("", "0.0.0.0", "::") else self.osmand_host
        if ":" in host:  # an IPv6 address goes in brackets
            host = f"[{host}]"
        return f"http://{host}:{self.osmand_port}"

    @field_validator("ring_radii_miles", mode="before")
    @classmethod
    def _radii(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.replace("[", "").replace("]", "").split(",")]
        return value

    @field_validator("ring_radii_miles")
    @classmethod
    def _widening(cls, value: list[float]) -> list[float]:
        if not value or any(r <= 0 for r in value) or value != sorted(set(value)):
            raise ValueError("ring radii must be positive and strictly widening")
        return value

    def keys(self) -> Keys:
        """The shared Redis key names (contracts.keys)."""
        return Keys(self.redis_prefix, self.position_shards)
