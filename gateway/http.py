"""The metrics and health endpoint: GET /metrics (Prometheus), /healthz, /readyz.

A few lines of asyncio instead of prometheus_client's threaded server, so health can
read the gateway's state directly and nothing runs outside the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

# `_created` series double every scrape and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated

MAX_REQUEST_HEAD_BYTES = 8192
TIMEOUT_REQUEST_S = 5.0


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


async def serve_http(host: str, port: int, readiness: Callable[[], list[str]]) -> asyncio.Server:
    """`readiness()` returns what is not ready (empty when ready)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_REQUEST_S)
            method, path, *_ = head[:MAX_REQUEST_HEAD_BYTES].decode("latin-1").split(" ", 2)
            path = path.split("?", 1)[0]
            if method != "GET":
                out = _response("405 Method Not Allowed", b"only GET\n")
            elif path == "/metrics":
                out = _response("200 OK", generate_latest(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                out = _response("200 OK", b"ok\n")
            elif path == "/readyz":
                missing = readiness()
                out = (
                    _response(
                        "503 Service Unavailable",
                        ("not ready: " + ", ".join(missing) + "\n").encode(),
                    )
                    if missing
                    else _response("200 OK", b"ready\n")
                )
            else:
                out = _response("404 Not Found", b"try /metrics, /healthz or /readyz\n")
            writer.write(out)
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
