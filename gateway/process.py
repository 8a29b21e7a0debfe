"""The one shape of a fixgate process's life, shared by the gateway, the engine and the API:
start (readiness says what it is doing), ready, drain, stop, all under one deadline, with
every background task tracked in one place.

    life = Life("engine", settings.shutdown_timeout_s)
    life.handle_signals()                      # SIGTERM/SIGINT set life.stop
    life.starting = "waiting for redis"        # /readyz says so (503)
    life.spawn(loop_forever(), "consume")      # tracked; a done-callback forgets it
    life.ready()                               # /readyz 200 (unless the process adds reasons)
    await life.stop.wait()
    life.draining()                            # the deadline starts now
    await life.finish(task, "the batch in hand")    # waits at most what is left
    await life.cancel_stragglers()             # the rest, cancelled, with a count
Whatever shuts down, it does so in the order the process gives (uvicorn's: stop accepting,
let work in hand finish, cancel stragglers, close pools) within `shutdown_timeout_s` in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, Final

log = logging.getLogger("fixgate.process")

MIN_STEP_S: Final = 0.1
"""Even past the deadline a step gets this long (a task that is done at once returns)."""


class Life:
    def __init__(self, name: str, shutdown_timeout_s: float) -> None:
        self.name = name
        self.shutdown_timeout_s = shutdown_timeout_s
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.starting: str | None = "starting"
        """What startup is doing (readiness reports it), None once ready."""
        self._deadline: float | None = None

    # ---- start --------------------------------------------------------------------------

    def handle_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task of the process, kept until it ends (and cancelled at the end
        if it has not)."""
        task = asyncio.create_task(coro, name=f"{self.name}:{name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def ready(self) -> None:
        self.starting = None
        log.info("%s: ready", self.name)

    def not_ready(self) -> list[str]:
        return [self.starting] if self.starting is not None else []

    # ---- stop ---------------------------------------------------------------------------

    def draining(self) -> None:
        """The stop has begun: from now on every step shares one deadline."""
        self.starting = "draining"
        self._deadline = asyncio.get_running_loop().time() + self.shutdown_timeout_s
        log.info("%s: draining (timeout %.0f s)", self.name, self.shutdown_timeout_s)

    def left(self) -> float:
        """Seconds left before the deadline (at least `MIN_STEP_S`)."""
        if self._deadline is None:
            return self.shutdown_timeout_s
        return max(MIN_STEP_S, self._deadline - asyncio.get_running_loop().time())

    async def finish(self, work: Awaitable[Any], what: str) -> bool:
        """Wait for `work` (a task keeps running if the time is up); whether it finished."""
        try:
            await asyncio.wait_for(asyncio.shield(work), self.left())
        except TimeoutError:
            log.warning("%s: %s did not finish in time", self.name, what)
            return False
        except Exception as e:  # it failed: the stop goes on
            log.warning("%s: %s failed while stopping: %s", self.name, what, e)
        return True

    async def cancel_stragglers(
        self, more: Iterable[asyncio.Task[Any]] = (), at_most_s: float | None = None
    ) -> int:
        """Cancel every tracked task (and `more`) that has not ended, and wait for them at
        most what is left (or `at_most_s`); how many there were."""
        stragglers = [t for t in (*self.tasks, *more) if not t.done()]
        for task in stragglers:
            task.cancel()
        if stragglers:
            wait_s = self.left() if at_most_s is None else min(self.left(), at_most_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(stragglers, timeout=wait_s)
        return len(stragglers)
