"""Logging: structured (key=value) lines, and a bounded rate for what devices cause.

A misbehaving device can send thousands of bad lines a second; the log must not become
the outage. `RateLimitedLog` lets one line per key through per interval and reports how
many it held back when the next one goes through.
"""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, interval_s: float = 10.0, max_keys: int = 10_000
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        """Bounds memory when many distinct devices misbehave at once."""
        self._last: dict[tuple[str, ...], float] = {}
        self._held: dict[tuple[str, ...], int] = {}

    def warning(self, key: tuple[str, ...], now: float, msg: str, *args: object) -> None:
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return
        if len(self._last) >= self.max_keys:
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            self.logger.warning(msg + " (+%d similar held back)", *args, held)
        else:
            self.logger.warning(msg, *args)
