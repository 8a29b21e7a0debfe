"""Where the engine's routing engine (OSRM) is, and how long to wait for it."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RoutingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FIXGATE_", extra="ignore")

    routing_url: str | None = Field(
        None,
        description="OSRM base URL (`fixgate stack env` prints the stack's); unset: no routing engine, `local` ETAs only.",
    )
    # An ETA late by seconds is stale: a trip goes on with the local estimate rather than
    # wait. OSRM answers a city route in about a millisecond here, so 2 s is only reached
    # when it is down or swamped.
    routing_timeout_s: float = Field(
        2.0,
        gt=0,
        description="A route request slower than this (connect to answer) counts as failed and falls back to `local`, seconds.",
    )
