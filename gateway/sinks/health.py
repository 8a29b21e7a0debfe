"""Up or down, per sink: one log line per change, and the outage metrics."""

from __future__ import annotations

import logging
import time

from gateway import metrics

log = logging.getLogger("gateway.sinks")


class SinkHealth:
    """Up or down, for one sink: logs each change once and keeps the outage metrics."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.ok = True
        self._down_since = 0.0
        metrics.SINK_DOWN.labels(sink).set(0)
        metrics.OUTAGE_SECONDS.labels(sink)  # shown at 0 before the first outage

    def failed(self, error: BaseException, doing: str) -> None:
        metrics.WRITE_ERRORS.labels(self.sink).inc()
        if self.ok:
            self.ok = False
            self._down_since = time.monotonic()
            metrics.SINK_DOWN.labels(self.sink).set(1)
            log.warning(
                "%s: write failed (%s: %s); %s", self.sink, type(error).__name__, error, doing
            )

    def worked(self) -> None:
        if not self.ok:
            self.ok = True
            down = time.monotonic() - self._down_since
            metrics.SINK_DOWN.labels(self.sink).set(0)
            metrics.OUTAGE_SECONDS.labels(self.sink).inc(down)
            log.warning("%s: writes work again after %.1f s", self.sink, down)
