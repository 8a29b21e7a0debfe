"""Backpressure between the listeners and the writers (uvicorn's flow control shape)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway import metrics


class Flow:
    """Backpressure: listeners wait on `open` while too many fixes are unwritten."""

    def __init__(self, high_water: int) -> None:
        self.high_water = high_water
        self.low_water = high_water // 2
        self.open = asyncio.Event()
        self.open.set()
        self.on_change: list[Callable[[bool], None]] = []
        """Called with the new state when the flow opens or closes (listeners pause reads)."""

    def update(self, queued: int) -> None:
        metrics.QUEUE_DEPTH.set(queued)
        if queued >= self.high_water and self.open.is_set():
            self.open.clear()
            for changed in self.on_change:
                changed(False)
        elif queued <= self.low_water and not self.open.is_set():
            self.open.set()
            for changed in self.on_change:
                changed(True)
