"""The thread pool kopf runs the operator's synchronous handlers on, counting its work.

kopf keeps its per-object queues private, but every pass of a sync handler (reconcile, resync,
finalize) is one `submit` to `settings.execution.executor`. Counting what was submitted and has
not started, and what runs, gives the backlog and the busy workers (metrics.watch_workers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="qa-operator-worker")
        self._counts = threading.Lock()
        self._queued = 0
        self._running = 0

    @property
    def queued(self) -> int:
        """Submitted, not started: waiting for a free worker."""
        return self._queued

    @property
    def running(self) -> int:
        return self._running

    @property
    def capacity(self) -> int:
        # kopf's `max_workers` setter resizes the pool through this attribute.
        return int(self._max_workers)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        def run() -> T:
            with self._counts:
                self._queued -= 1
                self._running += 1
            try:
                return fn(*args, **kwargs)
            finally:
                with self._counts:
                    self._running -= 1

        with self._counts:
            self._queued += 1
        try:
            future = super().submit(run)
        except BaseException:
            with self._counts:
                self._queued -= 1
            raise
        future.add_done_callback(self._unqueue_if_cancelled)
        return future

    def _unqueue_if_cancelled(self, future: Future[Any]) -> None:
        # Only a future that never started can be cancelled (shutdown(cancel_futures=True)).
        if future.cancelled():
            with self._counts:
                self._queued -= 1
