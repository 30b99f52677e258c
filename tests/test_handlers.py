"""The kopf wiring's one piece of logic: how loudly a requeue is logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from qa_operator.handlers import RequeueLogLevels


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
