"""The operator's Prometheus metrics: what it did, what it asked AWS, what it manages.

One registry per process (`REGISTRY`), served by `serve()` on QA_OPERATOR_METRICS_PORT. Adapters
record through the small functions here; none of them imports prometheus_client itself.

kopf keeps its per-object work queues private, but runs every pass of our sync handlers on the
executor we give it (workers.CountingExecutor): its backlog and busy workers are the queue depth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from qa_operator.workers import CountingExecutor

REGISTRY = CollectorRegistry(auto_describe=True)
PREFIX = "qa_operator"
# Reconciles wait on AWS and package models: from milliseconds to many minutes.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
TRANSFER_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

RECONCILES = Counter(
    f"{PREFIX}_reconcile",
    "Reconcile passes by handler (change, resync, delete) and outcome: done, waiting (requeued to "
    "watch SageMaker), retrying (a transient error), error (an unexpected exception).",
    ["handler", "outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    f"{PREFIX}_reconcile_duration_seconds",
    "Duration of a reconcile pass by handler and outcome.",
    ["handler", "outcome"],
    buckets=PASS_BUCKETS,
    registry=REGISTRY,
)
RECONCILES_IN_PROGRESS = Gauge(
    f"{PREFIX}_reconcile_in_progress",
    "Reconcile passes running now (kopf's workers busy with our handlers).",
    registry=REGISTRY,
)
AWS_CALLS = Counter(
    f"{PREFIX}_aws_calls",
    "AWS API calls as the operator made them (after the SDK's retries), by service, operation and "
    "outcome: success, throttled, client_error, server_error, connection_error.",
    ["service", "operation", "outcome"],
    registry=REGISTRY,
)
AWS_ATTEMPTS = Counter(
    f"{PREFIX}_aws_attempts",
    "HTTP attempts within AWS API calls, retries included, by service, operation and outcome: "
    "a throttle the SDK retried away shows here and not in qa_operator_aws_calls_total.",
    ["service", "operation", "outcome"],
    registry=REGISTRY,
)
PACKAGE_UPLOAD_BYTES = Counter(
    f"{PREFIX}_package_upload_bytes",
    "Bytes of model packages uploaded to S3 (an upload skipped because S3 holds the same digest "
    "counts nothing).",
    registry=REGISTRY,
)
PACKAGE_UPLOAD_SECONDS = Histogram(
    f"{PREFIX}_package_upload_duration_seconds",
    "Duration of one model package upload to S3.",
    buckets=TRANSFER_BUCKETS,
    registry=REGISTRY,
)
IMAGE_PUSH_BYTES = Counter(
    f"{PREFIX}_image_push_bytes",
    "Bytes of image blobs pushed to a registry (blobs the registry had or mounted count nothing).",
    registry=REGISTRY,
)
IMAGE_PUSH_SECONDS = Histogram(
    f"{PREFIX}_image_push_duration_seconds",
    "Duration of publishing one serving image (by mode: s3, baked), pushes and checks included.",
    ["mode"],
    buckets=TRANSFER_BUCKETS,
    registry=REGISTRY,
)


LEADING = Gauge(
    f"{PREFIX}_leading",
    "1 while this replica reconciles (it holds the Lease, or leader election is off); 0 while it "
    "waits as the standby.",
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    f"{PREFIX}_reconcile_queue_depth",
    "Handler passes (change, resync, delete) submitted to the worker pool and not started yet: "
    "above 0 for long, the workers do not keep up (resyncs come late).",
    registry=REGISTRY,
)
WORKERS_BUSY = Gauge(
    f"{PREFIX}_workers_busy",
    "Worker threads running a handler pass now.",
    registry=REGISTRY,
)
WORKERS = Gauge(
    f"{PREFIX}_workers",
    "Worker threads the pool may run (kopf's settings.execution.max_workers).",
    registry=REGISTRY,
)
_serving: list[int] = []  # the port served, once per process


def outcome_of(requeue_after: float | None, transient_error: bool) -> str:
    if requeue_after is None:
        return "done"
    return "retrying" if transient_error else "waiting"


class PassTimer:
    """Times one reconcile pass; the handler names its outcome before leaving."""

    def __init__(self) -> None:
        self.outcome = "error"  # unless set: the pass raised something unexpected


@contextmanager
def reconcile_pass(handler: str) -> Iterator[PassTimer]:
    timer = PassTimer()
    started = time.monotonic()
    RECONCILES_IN_PROGRESS.inc()
    try:
        yield timer
    finally:
        RECONCILES_IN_PROGRESS.dec()
        RECONCILES.labels(handler, timer.outcome).inc()
        RECONCILE_SECONDS.labels(handler, timer.outcome).observe(time.monotonic() - started)


def watch_workers(executor: CountingExecutor) -> None:
    """Read the pool's counts at scrape time."""
    QUEUE_DEPTH.set_function(lambda: executor.queued)
    WORKERS_BUSY.set_function(lambda: executor.running)
    WORKERS.set_function(lambda: executor.capacity)


def record_aws_call(service: str, operation: str, outcome: str) -> None:
    AWS_CALLS.labels(service, operation, outcome).inc()


def record_aws_attempt(service: str, operation: str, outcome: str) -> None:
    AWS_ATTEMPTS.labels(service, operation, outcome).inc()


def record_package_upload(size: int, seconds: float) -> None:
    PACKAGE_UPLOAD_BYTES.inc(size)
    PACKAGE_UPLOAD_SECONDS.observe(seconds)


def record_image_blob_pushed(size: int) -> None:
    IMAGE_PUSH_BYTES.inc(size)


@contextmanager
def image_publish(mode: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        IMAGE_PUSH_SECONDS.labels(mode).observe(time.monotonic() - started)


class ResourceStates(Collector):
    """Resources by phase and by Ready condition, from the status each pass last reported.

    Collected at scrape time from a small table keyed by uid, so a resource that moves from
    Creating to Ready leaves no stale series behind; `forget` drops a deleted resource."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, tuple[str, str]] = {}

    def record(self, uid: str, status: Mapping[str, Any]) -> None:
        phase = str(status.get("phase") or "Unknown")
        ready = next(
            (
                str(c.get("status") or "Unknown")
                for c in status.get("conditions") or []
                if isinstance(c, Mapping) and c.get("type") == "Ready"
            ),
            "Unknown",
        )
        with self._lock:
            self._states[uid] = (phase, ready)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._states.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            states = list(self._states.values())
        by_phase = GaugeMetricFamily(
            f"{PREFIX}_resources", "QAModelDeployments by status.phase.", labels=["phase"]
        )
        by_ready = GaugeMetricFamily(
            f"{PREFIX}_resources_ready",
            "QAModelDeployments by the status of their Ready condition (True, False, Unknown).",
            labels=["status"],
        )
        for phase in sorted({phase for phase, _ in states}):
            by_phase.add_metric([phase], sum(1 for p, _ in states if p == phase))
        for ready in ("True", "False", "Unknown"):
            by_ready.add_metric([ready], sum(1 for _, r in states if r == ready))
        yield by_phase
        yield by_ready


RESOURCES = ResourceStates()
REGISTRY.register(RESOURCES)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on `port`, once per process (a standby starts it before kopf runs)."""
    if not _serving:
        start_http_server(port, addr=address, registry=REGISTRY)
        _serving.append(port)
