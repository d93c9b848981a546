"""The process's background tasks, all owned by one `TaskTracker` (on `AppState`): nothing
is fire-and-forget, a task that fails is logged, and shutdown drains or stops every one.

Two kinds: **one-shot** tasks (a settlement a client cannot cancel, a credit lease's draw, the
request log writer's loop until it is closed) are awaited by `drain`; **service** loops (the
recovery heartbeat and sweeper, the lease group commit, the settlement retrier) run until
their owner stops them in the lifespan's shutdown, and `close` cancels any still running
after that. Components built on their own (tests, benchmarks) get a tracker of their own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("tollway.tasks")


class TaskTracker:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._services: set[asyncio.Task[Any]] = set()

    def spawn(
        self, coro: Coroutine[Any, Any, Any], name: str, *, service: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        (self._services if service else self._tasks).add(task)
        task.add_done_callback(self._done)
        return task

    def running(self) -> list[str]:
        """The names of the tasks still running, one-shot and service (for tests, logs)."""
        return sorted(t.get_name() for t in self._tasks | self._services if not t.done())

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._services.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", task.get_name(), task.exception())

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for the one-shot tasks: service loops are stopped by their owners."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def close(self) -> None:
        """Last step of shutdown: cancel and await whatever is still running."""
        left = self._tasks | self._services
        for task in left:
            log.warning("background task %s still running at shutdown: cancelled", task.get_name())
            task.cancel()
        for task in left:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
