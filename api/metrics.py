"""Prometheus metrics of the API (served at /metrics)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "fixgate_api_request_seconds",
    "API request latency by route template and status.",
    ["method", "route", "status"],
    # Accept/reject aim at < 20 ms: resolve the low end finely.
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RINGS = Counter("fixgate_api_rings_total", "Technicians rung, by ring phase.", ["phase"])
RING_TIMEOUTS = Counter("fixgate_api_ring_timeouts_total", "Rings that ended in Pending.")
ACCEPTS = Counter("fixgate_api_accepts_total", "Accept attempts by outcome.", ["outcome"])
ACCEPT_OUTCOMES = ("ok", "conflict", "refused", "error")
for _outcome in ACCEPT_OUTCOMES:  # every outcome shown at 0 from the start
    ACCEPTS.labels(_outcome)


def accept_outcome(status: int) -> str:
    """The audit's words: 409 lost the race (conflict), 4xx refused, the rest an error."""
    if status == 409:
        return "conflict"
    return "refused" if 400 <= status < 500 else "error"


ENGINE_EVENTS = Counter(
    "fixgate_api_engine_events_total", "Engine events consumed, by type.", ["type"]
)

WS_CLIENTS = Gauge("fixgate_api_ws_clients", "Connected WebSocket clients, by role.", ["role"])
WS_MESSAGES = Counter(
    "fixgate_api_ws_messages_total", "Messages sent to WebSocket clients, by role.", ["role"]
)
WS_ROUTED = Counter(
    "fixgate_api_ws_routed_total", "Dispatch events queued for local WebSocket clients."
)
WS_SLOW = Counter(
    "fixgate_api_ws_slow_clients_total", "WebSocket clients closed because they read too slowly."
)
WS_REPLAYED = Counter(
    "fixgate_api_ws_replayed_total", "Missed events replayed to reconnecting WebSocket clients."
)
WS_DELIVERY_SECONDS = Histogram(
    "fixgate_api_ws_delivery_seconds",
    "Event published (its `at`) to sent on a WebSocket, seconds.",
    # The ring's target is 250 ms at p99, LocationUpdated's 1 s: resolve both.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


async def observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = getattr(request.scope.get("route"), "path", "unmatched")
    REQUEST_SECONDS.labels(request.method, route, str(response.status_code)).observe(
        time.perf_counter() - started
    )
    return response
