"""A client's way into `/ws`: a single-use ticket asked for with the bearer token in the
header (`POST /ws-ticket`), then the socket's URL with the ticket (docs/realtime.md). For the
demo's technicians, the benchmarks and the tests; apps do the same in JavaScript."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx


def _base(api: str) -> str:
    """`http://host:port` from an API base or a `ws://host:port/ws` URL."""
    base = api.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    return base.removesuffix("/ws").rstrip("/")


def _url(api: str, ticket: str, last_event_id: str | None) -> str:
    base = _base(api).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    query = {"ticket": ticket, **({"last_event_id": last_event_id} if last_event_id else {})}
    return f"{base}/ws?{urlencode(query)}"


def _ticket(response: httpx.Response) -> str:
    response.raise_for_status()
    ticket: str = response.json()["data"]["ticket"]
    return ticket


async def ws_url(api: str, token: str, last_event_id: str | None = None) -> str:
    """The URL to open a socket with now (the ticket works once, within 30 s)."""
    async with httpx.AsyncClient(base_url=_base(api), timeout=10) as http:
        got = await http.post("/ws-ticket", headers={"Authorization": f"Bearer {token}"})
    return _url(api, _ticket(got), last_event_id)


def ws_url_sync(api: str, token: str, last_event_id: str | None = None) -> str:
    got = httpx.post(
        f"{_base(api)}/ws-ticket", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return _url(api, _ticket(got), last_event_id)
