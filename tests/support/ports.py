"""Ports for the servers the tests start, outside the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` comes from the range it also takes the source
ports of outgoing connections from: between picking one and the server binding it, a
client connection (to PostgreSQL, Redis, the broker...) may take it, and the server's bind
fails with "address already in use" (a gateway restarted in a fault test failed so in a
rehearsal; this, or its UDP port taken, is the likely cause). So ports come from below
that range, checked free for TCP and UDP (Teltonika listens on both).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000
"""Below it: the ports of well-known services."""


def _first_ephemeral() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    """A loopback port free for TCP and UDP now, that no outgoing connection will take."""
    top = _first_ephemeral()
    if top - LOWEST < 1_000:  # an unusual range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    while True:
        port = random.randrange(LOWEST, top)
        if _free(port):
            return port
