"""The kopf wiring's logic: how loudly a requeue is logged, and how a change waits for its
package."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf
import pytest

from qa_operator import handlers
from qa_operator.artifacts import ModelPackager, PreparedPackage
from qa_operator.aws.clients import AwsClients
from qa_operator.handlers import RequeueLogLevels
from qa_operator.reconciler import Reconciler
from qa_operator.settings import OperatorSettings
from qa_operator.spec import DeploymentSpec
from qa_operator.statuspatch import OwnWrites, as_written
from support.reconciler_stack import reconciler_stack


@pytest.fixture(autouse=True)
def _restore_kopf_log_level() -> Iterator[None]:
    logger = logging.getLogger("kopf.objects")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("Handler 'reconcile' failed temporarily: waiting: endpoint is Creating", logging.DEBUG),
        ("Handler 'reconcile' failed temporarily: transient: AwsThrottling", logging.WARNING),
        ("Handler 'reconcile' failed temporarily: something else", logging.ERROR),
        ("Handler 'reconcile' failed with an exception. Will retry.", logging.ERROR),
    ],
)
def test_requeues_are_logged_by_what_they_mean(message: str, level: int) -> None:
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG)
    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, message, None, None)
    assert RequeueLogLevels().filter(record)
    assert (record.levelno, record.levelname) == (level, logging.getLevelName(level))
    # Transient retries are logged but not posted as Events (the reconciler posts one per streak).
    assert getattr(record, "k8s_skip", False) == ("transient: " in message)


def test_a_finished_resync_is_debug_and_silent_at_info() -> None:
    logger = logging.getLogger("kopf.objects")
    logger.setLevel(logging.INFO)
    record = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Timer 'resync' succeeded.", None, None
    )
    assert not RequeueLogLevels().filter(record)
    assert record.levelno == logging.DEBUG
    logger.setLevel(logging.DEBUG)
    assert RequeueLogLevels().filter(record)
    handled = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Handler 'reconcile' succeeded.", None, None
    )
    assert RequeueLogLevels().filter(handled)
    assert handled.levelno == logging.INFO, "a change handled is still worth a line"


def test_waiting_is_silent_unless_debug_logging_is_on() -> None:
    logger = logging.getLogger("kopf.objects")
    logger.setLevel(logging.INFO)
    message = "Handler 'reconcile' failed temporarily: waiting: endpoint is Creating"
    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, message, None, None)
    assert not RequeueLogLevels().filter(record)


class HeldPackager(ModelPackager):
    """The real packager, holding each job until the test lets it go."""

    def __init__(self, settings: OperatorSettings) -> None:
        super().__init__(
            settings.work_dir,
            max_concurrent=1,
            s3_client=lambda region: AwsClients(max_attempts=1).client("s3", region),
        )
        self.gate = threading.Event()

    def _package(self, spec: DeploymentSpec, region: str, staging: Path) -> PreparedPackage:
        assert self.gate.wait(60)
        return super()._package(spec, region, staging)


@pytest.fixture
def held(
    aws: Any, tiny_qa_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[HeldPackager, kopf.Memo, dict[str, Any]]]:
    settings, spec = reconciler_stack(aws, tiny_qa_model_dir, tmp_path, monkeypatch)
    posted: list[str] = []  # kopf posts Events only from a running operator
    monkeypatch.setattr(kopf, "event", lambda body, *, type, reason, message: posted.append(reason))
    packager = HeldPackager(settings)
    memo = kopf.Memo()
    memo.reconciler = Reconciler(settings, AwsClients(max_attempts=1).client, packager=packager)
    memo.own_writes = OwnWrites()
    memo.posted = posted
    with ThreadPoolExecutor(2) as workers:
        memo.workers = workers
        body = {
            "metadata": {"namespace": "team-a", "name": "qa", "uid": "u-1", "generation": 1},
            "spec": spec,
            "status": {},
        }
        yield packager, memo, body
        packager.gate.set()


def change(memo: kopf.Memo, body: dict[str, Any], retry: int) -> tuple[dict[str, Any], str]:
    """One run of the change handler on `body`: its status once the handler's patch landed, and
    why it asked to run again ("" if it did not)."""
    # kopf's decorator types it as its callback, whose keyword arguments are all required.
    reconcile: Any = handlers.reconcile
    raw: Any = body
    patch = kopf.Patch()
    requeue = ""
    try:
        asyncio.run(reconcile(body=kopf.Body(raw), patch=patch, retry=retry, memo=memo))
    except kopf.TemporaryError as error:
        requeue = str(error)
    return as_written(body["status"], [patch.get("status", {})]), requeue


def reasons(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["reason"] for c in status["conditions"]}


@pytest.mark.e2e
def test_a_retry_waiting_for_its_package_runs_again_when_the_job_ends(
    held: tuple[HeldPackager, kopf.Memo, dict[str, Any]],
) -> None:
    packager, memo, body = held
    status, requeue = change(memo, body, retry=0)
    assert reasons(status)["Progressing"] == "Packaging", "the first try waits briefly, then says"
    assert requeue.startswith("waiting: Ready=False (Packaging)")
    threading.Timer(0.3, packager.gate.set).start()
    status, requeue = change(memo, {**body, "status": status}, retry=1)
    assert reasons(status)["Progressing"] == "CreatingEndpoint", (
        "the pass after the job, in one retry"
    )
    assert status["modelPackage"]["digest"].startswith("sha256:")
    assert memo.posted[:2] == ["UploadedPackage", "CreatedModel"]
    assert requeue.startswith("waiting: "), "now for SageMaker"


@pytest.mark.e2e
def test_a_wait_for_a_package_is_bounded_and_leaves_the_job_running(
    held: tuple[HeldPackager, kopf.Memo, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    packager, memo, body = held
    monkeypatch.setattr(handlers, "PACKAGING_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(handlers, "FIRST_PACKAGING_WAIT_SECONDS", 0.1)
    status, _ = change(memo, body, retry=0)
    status, requeue = change(memo, {**body, "status": status}, retry=1)
    assert reasons(status)["Progressing"] == "Packaging"
    assert requeue.startswith("waiting: Ready=False (Packaging)"), "kopf retries after the bound"
    packager.gate.set()
    monkeypatch.setattr(handlers, "PACKAGING_WAIT_SECONDS", 60.0)
    status, _ = change(memo, {**body, "status": status}, retry=2)
    assert "modelPackage" in status, "the job the first wait gave up on was not cancelled"


@pytest.mark.e2e
def test_a_package_built_within_the_first_wait_goes_through_in_one_try(
    held: tuple[HeldPackager, kopf.Memo, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    packager, memo, body = held
    monkeypatch.setattr(handlers, "FIRST_PACKAGING_WAIT_SECONDS", 60.0)
    threading.Timer(0.3, packager.gate.set).start()
    status, requeue = change(memo, body, retry=0)
    assert reasons(status)["Progressing"] == "CreatingEndpoint", "never reported Packaging"
    assert requeue.startswith("waiting: ")
