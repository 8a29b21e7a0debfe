"""A keep-alive connection outlives a person's pause between two calls (`FIXGATE_API_
KEEPALIVE_S`, 75 s): with uvicorn's 5 s, the apps' and the bench's calls after a few
seconds' reading went out on connections the API was closing and failed."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

PAUSE_S = 6.0
"""Longer than uvicorn's own keep-alive timeout (5 s), far shorter than ours."""


def _get(sock: socket.socket, host: str) -> bytes:
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            return answer  # closed by the server
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_a_connection_idle_for_a_few_seconds_still_answers(api_server: str) -> None:
    url = urlsplit(api_server)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        assert _get(sock, url.netloc).startswith(b"HTTP/1.1 200")
        time.sleep(PAUSE_S)
        assert _get(sock, url.netloc).startswith(b"HTTP/1.1 200")
