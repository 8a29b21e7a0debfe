"""Prometheus metrics of the API (served at /metrics)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_SECONDS = Histogram(
    "fixgate_api_request_seconds",
    "API request latency by route template and status.",
    ["method", "route", "status"],
    # Accept/reject aim at < 20 ms: resolve the low end finely.
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RINGS = Counter("fixgate_api_rings_total", "Technicians rung, by ring phase.", ["phase"])
RING_TIMEOUTS = Counter("fixgate_api_ring_timeouts_total", "Rings that ended in Pending.")
SLA_VIOLATIONS = Counter(
    "fixgate_api_sla_violations_total",
    "Requests past their service area's response-time SLA with nobody there.",
)
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


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The methods labelled by name; any other counts as `other`: a label is a time series, and
a client must not be able to add series by sending made-up methods."""


class RequestMetrics:
    """Pure ASGI middleware observing REQUEST_SECONDS (Starlette's BaseHTTPMiddleware runs
    every request through a task group and memory streams: milliseconds under load)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an error that escaped every handler

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The template without its convertors (`{requestId}`, not `{requestId:uuid}`).
            found = scope.get("route")
            route = getattr(found, "path_format", None) or getattr(found, "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "other"
            REQUEST_SECONDS.labels(method, route, str(status)).observe(
                time.perf_counter() - started
            )
