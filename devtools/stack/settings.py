"""Settings of the development stack (`fixgate stack`), apart from the product's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.config import STACK_MQTT_PORT, STACK_OSRM_PORT, STACK_PG_PORT, STACK_REDIS_PORT


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIXGATE_", extra="ignore")

    stack_dir: Path = Field(
        Path.home() / ".cache" / "fixgate",
        description="Where `fixgate stack` keeps the TimescaleDB root file system, OSRM and its prepared extract, data and logs (outside the clone).",
    )
    stack_pg_port: int = Field(STACK_PG_PORT, description="Native stack: TimescaleDB port.")
    stack_redis_port: int = Field(STACK_REDIS_PORT, description="Native stack: Redis port.")
    stack_mqtt_port: int = Field(STACK_MQTT_PORT, description="Native stack: Mosquitto port.")
    stack_mqtt_tls_port: int = Field(
        0, description="Native/compose stack: Mosquitto's TLS port (0: the MQTT port + 1)."
    )
    stack_osrm_port: int = Field(
        STACK_OSRM_PORT, description="Native stack: OSRM (osrm-routed) port."
    )
    routing_pbf: str = Field(
        "monaco",
        description="The extract the stack's OSRM routes on: `monaco` or `helsinki` (real extracts from registry packages) or the path of an .osm.pbf.",
    )
    stack_mode: str = Field(
        "auto",
        description="`auto` (Docker when an engine answers, else native), `docker` or `native`.",
    )

    @property
    def mqtt_tls_port(self) -> int:
        return self.stack_mqtt_tls_port or self.stack_mqtt_port + 1

    @property
    def mqtt_dir(self) -> Path:
        """The native broker's state: persistence, accounts, certificates (per port)."""
        return self.stack_dir / f"mosquitto-{self.stack_mqtt_port}"
