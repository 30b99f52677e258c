"""The worker pool's counts, as /metrics exports them: blocked work shows as queue depth."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from qa_operator import metrics
from qa_operator.workers import CountingExecutor


def gauges() -> tuple[float | None, ...]:
    return tuple(
        metrics.REGISTRY.get_sample_value(f"qa_operator_{name}")
        for name in ("reconcile_queue_depth", "workers_busy", "workers")
    )


@pytest.fixture
def pool() -> Iterator[CountingExecutor]:
    executor = CountingExecutor(max_workers=2)
    metrics.watch_workers(executor)
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


def test_blocked_work_shows_as_busy_workers_and_queue_depth(pool: CountingExecutor) -> None:
    assert gauges() == (0, 0, 2)
    release, started = threading.Event(), threading.Semaphore(0)

    def blocked() -> str:
        started.release()
        release.wait(timeout=30)
        return "done"

    futures = [pool.submit(blocked) for _ in range(5)]
    assert started.acquire(timeout=30) and started.acquire(timeout=30)
    assert gauges() == (3, 2, 2), "two workers run; three passes wait for one"
    release.set()
    assert [future.result(timeout=30) for future in futures] == ["done"] * 5
    assert gauges() == (0, 0, 2)


def test_work_cancelled_before_it_started_leaves_the_queue(pool: CountingExecutor) -> None:
    release = threading.Event()
    running = [pool.submit(release.wait, 30) for _ in range(2)]
    waiting = [pool.submit(lambda: None) for _ in range(3)]
    assert pool.queued == 3
    assert all(future.cancel() for future in waiting)
    assert (pool.queued, pool.running) == (0, 2)
    release.set()
    assert all(future.result(timeout=30) for future in running)
    assert gauges() == (0, 0, 2)


def test_kopf_resizes_the_pool_it_counts(pool: CountingExecutor) -> None:
    import kopf

    settings = kopf.OperatorSettings()
    settings.execution.executor = pool
    settings.execution.max_workers = 6
    assert pool.capacity == 6
    assert gauges()[2] == 6
