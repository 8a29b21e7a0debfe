"""Guessing and hoarding, bounded per source address: failed identifications and open
connections.

Identifier-only trackers (a Traccar Client id, a Teltonika or GT06 IMEI) prove nothing but
their id, so an address that keeps presenting unknown ids (or wrong tokens) is refused for
a while: `failed()` counts its failures in a window, and past `max_failures` the address
is `blocked()` for `block_s`. While blocked, every new connection or request from it gets
the same answer, whatever id it would present (known or not), so the block itself reveals
nothing. Addresses are independent: a guessing address never slows another's devices.

`now` is passed in (monotonic seconds), and memory is bounded: at most `max_addresses`
addresses are remembered; past that, the entries whose window and block have both passed
are dropped first, then the oldest (a flood of addresses then forgets some guessers early,
but never grows memory).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

MAX_ADDRESSES = 100_000
"""Addresses remembered at once (about 100 bytes each: ~10 MB at most)."""


@dataclass
class _Entry:
    window_start: float
    failures: int = 0
    blocked_until: float = 0.0


class AddressGuard:
    """Failed identifications per address, and the blocks they earn (shared by listeners)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        block_s: float,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self.max_addresses = max_addresses
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def blocked(self, address: str, now: float) -> bool:
        """Whether `address` is refused now (before it identifies)."""
        entry = self._entries.get(address)
        return entry is not None and now < entry.blocked_until

    def failed(self, address: str, now: float) -> bool:
        """Count one failed identification; True when it puts the address over the limit
        (and so starts its block)."""
        entry = self._entries.get(address)
        if entry is None or now - entry.window_start >= self.window_s:
            entry = _Entry(window_start=now, blocked_until=entry.blocked_until if entry else 0.0)
            self._entries[address] = entry
            self._bound(now)
        self._entries.move_to_end(address)
        entry.failures += 1
        if entry.failures > self.max_failures and now >= entry.blocked_until:
            entry.blocked_until = now + self.block_s
            return True
        return False

    def __len__(self) -> int:
        return len(self._entries)

    def _bound(self, now: float) -> None:
        if len(self._entries) <= self.max_addresses:
            return
        for address in [
            a
            for a, e in self._entries.items()
            if now - e.window_start >= self.window_s and now >= e.blocked_until
        ]:
            del self._entries[address]
        while len(self._entries) > self.max_addresses:
            self._entries.popitem(last=False)


class ConnectionCounts:
    """Open connections per address on one listener, against a cap."""

    def __init__(self, max_per_address: int) -> None:
        self.max_per_address = max_per_address
        self._open: dict[str, int] = {}

    def opened(self, address: str) -> bool:
        """Count a new connection; False when the address already holds the cap (the
        connection is then not counted: close it)."""
        n = self._open.get(address, 0)
        if n >= self.max_per_address:
            return False
        self._open[address] = n + 1
        return True

    def closed(self, address: str) -> None:
        n = self._open.get(address, 0) - 1
        if n > 0:
            self._open[address] = n
        else:
            self._open.pop(address, None)
