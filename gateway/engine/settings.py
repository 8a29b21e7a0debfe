"""The engine's settings (`FIXGATE_*`), apart from the gateway's: the process reads both."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from geofence.config import EngineConfig


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIXGATE_", extra="ignore")

    engine_host: str = Field(
        default="127.0.0.1", description="Address of the engine's metrics/health endpoint."
    )
    engine_port: int = Field(
        default=9109, description="Port of the engine's metrics/health endpoint."
    )
    engine_group: str = Field(
        default="engine",
        description="Consumer group on the positions stream that engine processes share.",
    )
    engine_consumer: str | None = Field(
        default=None,
        description="This process's consumer name in the group (default: host name and pid).",
    )
    engine_read_count: int = Field(
        default=500,
        description="Stream entries read at once, over all the shards held (each holds a shard's part of a gateway batch).",
    )
    engine_lease_s: float = Field(
        default=5,
        gt=0,
        description="An engine's shard lease lapses this long after its last renewal (it died): another takes the shard, seconds.",
    )
    engine_reload_s: float = Field(
        default=60,
        description="Safety reload of all geofences and trips this often, seconds (changes also arrive by NOTIFY).",
    )
    engine_enter_min_fixes: int = Field(
        default=1,
        description="Consecutive fixes inside by more than their error before geofence_enter.",
    )
    engine_exit_margin_m: float = Field(
        default=15,
        description="A fix must be this far plus its error outside a fence before geofence_exit, metres.",
    )
    engine_default_error_m: float = Field(
        default=10, description="Error assumed for a fix with neither accuracy nor HDOP, metres."
    )
    engine_off_route_m: float = Field(
        default=50,
        description="Farther than this plus the fix's error from the route is off the route (re-route), metres.",
    )
    engine_max_snap_m: float = Field(
        default=250,
        description="A route whose ends snapped farther to a road is outside the extract: `local` ETA instead, metres.",
    )
    engine_update_interval_s: float = Field(
        default=1,
        description="At most one trip_update per trip this often (unless the ETA moves by > 10 %), seconds.",
    )
    engine_queue_buffer_s: float = Field(
        default=1800,
        description="Buffer added to the queue ETA of every waiting trip, seconds (seed: 30 min).",
    )
    routing_url: str | None = Field(
        default=None,
        description="OSRM base URL (e.g. http://127.0.0.1:5000); unset: `local` ETAs only.",
    )
    routing_timeout_s: float = Field(
        default=2, description="A route request slower than this falls back to `local`, seconds."
    )
    eta_flush_s: float = Field(
        default=1,
        description="ETA predictions are written to the database in batches at least this often, seconds.",
    )

    def core_config(self) -> EngineConfig:
        return EngineConfig(
            enter_min_fixes=self.engine_enter_min_fixes,
            exit_margin_m=self.engine_exit_margin_m,
            default_error_m=self.engine_default_error_m,
            off_route_m=self.engine_off_route_m,
            max_snap_m=self.engine_max_snap_m,
            update_min_interval_s=self.engine_update_interval_s,
            queue_buffer_s=self.engine_queue_buffer_s,
            routing_enabled=self.routing_url is not None,
        )
