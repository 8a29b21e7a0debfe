"""Where routes come from: a callable with the routing client's signature.

`gateway.engine.routing.route` (the OSRM client) is used when FIXGATE_ROUTING_URL is set
and that module exists; otherwise `no_route`, a placeholder that answers None (the core
then stays on `local` ETAs).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from geofence.routes import Route

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("engine")


class RouteFn(Protocol):
    async def __call__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        origin: tuple[float, float],
        dest: tuple[float, float],
        timeout_s: float,
    ) -> Route | None: ...


async def no_route(
    client: Any,
    base_url: str,
    origin: tuple[float, float],
    dest: tuple[float, float],
    timeout_s: float,
) -> Route | None:
    """The placeholder: no routing engine, no route."""
    return None


def route_source(routing_url: str | None) -> RouteFn | None:
    """The routing client for this configuration, or None when routing is off."""
    if routing_url is None:
        return None
    try:
        module = importlib.import_module("gateway.engine.routing")
    except ImportError:
        log.warning(
            "engine: FIXGATE_ROUTING_URL is set but no routing client is installed: local ETAs only"
        )
        return None
    fn: RouteFn = module.route
    return fn
