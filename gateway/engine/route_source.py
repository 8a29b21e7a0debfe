"""Where routes come from: the OSRM client when FIXGATE_ROUTING_URL is set, else none (the
core then stays on `local` ETAs). A Protocol, so tests and other routing engines can stand
in the same place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from gateway.engine import routing
from geofence.routes import Route

if TYPE_CHECKING:
    import httpx


class RouteFn(Protocol):
    async def __call__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        origin: tuple[float, float],
        dest: tuple[float, float],
        timeout_s: float,
    ) -> Route | None: ...


def route_source(routing_url: str | None) -> RouteFn | None:
    """The routing client for this configuration, or None when routing is off."""
    return routing.route if routing_url else None
