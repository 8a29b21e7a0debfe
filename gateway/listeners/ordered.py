"""Acknowledgements in arrival order, whatever order their batches become durable in."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedReplies(Generic[T]):
    """Releases items in the order they were added, each once it and all before it are done.

    A TCP device that sends two packets must get their acknowledgements in that order
    (it deletes what the first names first), though the batch holding the second may be
    durable first, and a heartbeat's reply, needing no write, is ready at once."""

    def __init__(self, release: Callable[[list[T]], None]) -> None:
        self._release = release
        self._slots: deque[tuple[T, list[bool]]] = deque()

    def add(self, item: T) -> Callable[[], None]:
        """Queue `item`; call the returned function when it may go."""
        slot = (item, [False])
        self._slots.append(slot)

        def done() -> None:
            slot[1][0] = True
            slots = self._slots
            if not slots or slots[0] is not slot:
                return  # an earlier item still waits for its batch
            ready: list[T] = []
            while slots and slots[0][1][0]:
                ready.append(slots.popleft()[0])
            self._release(ready)

        return done

    def __len__(self) -> int:
        return len(self._slots)
