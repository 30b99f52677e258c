"""kopf wiring, and nothing else: every handler hands the resource to the one Reconciler.

Run with `qa-operator run` (or `kopf run -m qa_operator.handlers`). Passes run in kopf's worker
threads (the change handler hands its passes to them itself): uploads and AWS calls never block
the event loop, and packaging runs in its own pool (artifacts.PackagingJobs).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import kopf

from qa_operator import metrics
from qa_operator.aws.clients import AwsClients
from qa_operator.aws.roles import AssumedRoles
from qa_operator.desired import Owner
from qa_operator.observation import resync_timing
from qa_operator.reconciler import Outcome, Reconciler, Resource
from qa_operator.settings import OperatorSettings
from qa_operator.statuspatch import OwnWrites, status_patch
from qa_operator.workers import CountingExecutor

GROUP, VERSION, PLURAL = "serving.qaoperator.io", "v1alpha1", "qamodeldeployments"
SETTINGS = OperatorSettings.from_env()
WAITING, TRANSIENT = "waiting: ", "transient: "
# A change whose package is still being built waits for the packaging job on the event loop (no
# worker held, nothing written) and runs its pass again the moment the job ends: not a kopf
# retry, two PATCHes each, per look. Bounded, so that a deletion or a new spec queued behind it
# waits no longer than this; on its first try only briefly, so that a longer packaging shows as
# Packaging in status at once.
PACKAGING_WAIT_SECONDS = 30.0
FIRST_PACKAGING_WAIT_SECONDS = 1.0
T = TypeVar("T")


class RequeueLogLevels(logging.Filter):
    """kopf logs every TemporaryError at ERROR (and posts it as an Event). Waiting on SageMaker is
    normal: DEBUG. A transient AWS or registry error is worth a WARNING in the log, not an ERROR,
    and no Event per retry: the reconciler posts one when such trouble starts. A resync that
    finished is routine: DEBUG, not an INFO line and an Event per resource per interval."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text.startswith("Timer ") and text.endswith(" succeeded."):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        if "failed temporarily" in text:
            if WAITING in text:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
            elif TRANSIENT in text:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.k8s_skip = True  # kopf's K8sPoster leaves such records unposted
        return True


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = "serving.qaoperator.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="qaoperator.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="qaoperator.io", key="last-handled-configuration"
    )
    workers = CountingExecutor(max_workers=max(4, SETTINGS.max_concurrent_packaging * 4))
    settings.execution.executor = workers
    memo.workers = workers
    settings.execution.max_workers = workers.capacity
    settings.posting.level = logging.INFO
    logging.getLogger("kopf.objects").addFilter(RequeueLogLevels())
    clients = AwsClients()
    roles = AssumedRoles(lambda: clients.client("sts", SETTINGS.default_region), clients.build)
    memo.reconciler = Reconciler(SETTINGS, clients.client, roles=roles.client)
    memo.own_writes = OwnWrites()
    if SETTINGS.metrics_port:
        metrics.watch_workers(workers)
        metrics.serve(SETTINGS.metrics_port)
        metrics.LEADING.set(1)  # kopf runs only in the leader (qa-operator run, leader.py)


def _resource(body: kopf.Body, own_writes: OwnWrites) -> Resource:
    """The resource as kopf saw it, with the status patches it has not seen yet laid over."""
    meta = body.metadata
    return Resource(
        owner=Owner(namespace=meta.namespace or "", name=meta.name or "", uid=meta.uid or ""),
        generation=int(meta.get("generation") or 0),
        spec=dict(body.spec),
        status=own_writes.seen(meta.uid or "", body.status),
    )


def _requeue(outcome: Outcome) -> kopf.TemporaryError:
    prefix = TRANSIENT if outcome.transient_error else WAITING
    delays = [d for d in (outcome.requeue_after, outcome.wake_after) if d is not None]
    return kopf.TemporaryError(prefix + outcome.message, delay=min(delays, default=5))


def _counted(timed: metrics.PassTimer, outcome: Outcome, body: kopf.Body) -> None:
    timed.outcome = metrics.outcome_of(outcome.requeue_after, outcome.transient_error)
    metrics.RESOURCES.record(body.metadata.uid or "", {**body.status, **outcome.status})


def _report(outcome: Outcome, body: kopf.Body, patch: kopf.Patch | None, memo: kopf.Memo) -> None:
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if patch is not None:
        written = status_patch(body.status, outcome.status)
        patch.status.update(written)
        memo.own_writes.wrote(body.metadata.uid or "", written)


async def _in_worker(memo: kopf.Memo, work: Callable[[], T]) -> T:
    """`work` in kopf's worker threads, in this handler's context (as kopf runs sync handlers)."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(memo.workers, functools.partial(context.run, work))


async def _ends_within(job: Future[Any], seconds: float) -> bool:
    """Whether `job` ends within `seconds`. Never cancels it: other resources may wait on it."""
    done, _ = await asyncio.wait({asyncio.wrap_future(job)}, timeout=seconds)
    return bool(done)


def _change_pass(body: kopf.Body, retry: int, memo: kopf.Memo) -> Outcome:
    reconciler: Reconciler = memo.reconciler
    with metrics.reconcile_pass("change") as timed:
        with reconciler.lock_for(body.metadata.uid or ""):
            outcome = reconciler.reconcile(_resource(body, memo.own_writes), attempt=retry)
        _counted(timed, outcome, body)
    return outcome


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(
    body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any
) -> None:
    change_pass = functools.partial(_change_pass, body, retry, memo)
    outcome = await _in_worker(memo, change_pass)
    job = outcome.waiting_on
    wait = PACKAGING_WAIT_SECONDS if retry else FIRST_PACKAGING_WAIT_SECONDS
    if job is not None and await _ends_within(job, wait):
        outcome = await _in_worker(memo, change_pass)
    _report(outcome, body, patch, memo)
    if outcome.requeue_after is not None or outcome.wake_after is not None:
        raise _requeue(outcome)


RESYNC = resync_timing(SETTINGS.resync_seconds)


# Sharp: every RESYNC.interval from the first start, however long a pass takes. Idle: not while
# the resource changes (the change handler works on it then).
@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC.interval, idle=RESYNC.interval, sharp=True)
def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Level-triggered drift detection: SageMaker changes without telling Kubernetes."""
    reconciler: Reconciler = memo.reconciler
    lock = reconciler.lock_for(body.metadata.uid or "")
    if not lock.acquire(blocking=False):
        return  # a change handler is mid-pass; it reports for both of us
    try:
        with metrics.reconcile_pass("resync") as timed:
            outcome = reconciler.reconcile(_resource(body, memo.own_writes), resync=True)
            _counted(timed, outcome, body)
    finally:
        lock.release()
    _report(outcome, body, patch, memo)
    if outcome.wake_after is not None:
        # A schedule boundary before the next interval: kopf runs the timer again at its delay.
        raise kopf.TemporaryError(
            WAITING + "the schedule's next boundary", delay=outcome.wake_after
        )


@kopf.on.delete(GROUP, VERSION, PLURAL)
def finalize(body: kopf.Body, patch: kopf.Patch, retry: int, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    uid = body.metadata.uid or ""
    with metrics.reconcile_pass("delete") as timed, reconciler.lock_for(uid):
        outcome = reconciler.finalize(_resource(body, memo.own_writes), attempt=retry)
        timed.outcome = metrics.outcome_of(None if outcome.done else 0.0, outcome.transient_error)
    # Progress goes to status while the finalizer works; once done the object is gone.
    _report(outcome, body, None if outcome.done else patch, memo)
    if not outcome.done:
        raise _requeue(outcome)
    reconciler.forget(uid)
    memo.own_writes.forget(uid)
    metrics.RESOURCES.forget(uid)
