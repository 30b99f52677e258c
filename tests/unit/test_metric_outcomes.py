"""Pure parts of the metrics: how an AWS response is named, and resources counted by state."""

from __future__ import annotations

import pytest

from qa_operator.aws.call_metrics import outcome
from qa_operator.metrics import ResourceStates, outcome_of


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (200, None, "success"),
        (400, "ThrottlingException", "throttled"),
        (400, "Throttling", "throttled"),
        (503, "SlowDown", "throttled"),
        (429, None, "throttled"),
        (400, "ValidationException", "client_error"),
        (404, "NoSuchKey", "client_error"),
        (500, "InternalFailure", "server_error"),
        (503, None, "server_error"),
    ],
)
def test_an_aws_response_is_named_by_outcome(status: int, code: str | None, expected: str) -> None:
    assert outcome(status, code) == expected


@pytest.mark.parametrize(
    ("requeue_after", "transient", "expected"),
    [(None, False, "done"), (5.0, False, "waiting"), (5.0, True, "retrying")],
)
def test_a_pass_is_named_by_outcome(
    requeue_after: float | None, transient: bool, expected: str
) -> None:
    assert outcome_of(requeue_after, transient) == expected


def _counts(states: ResourceStates) -> dict[str, dict[tuple[str, ...], float]]:
    return {
        family.name: {tuple(s.labels.values()): s.value for s in family.samples}
        for family in states.collect()
    }


def test_resources_are_counted_by_their_latest_phase_and_ready_status() -> None:
    states = ResourceStates()
    ready = {"type": "Ready", "status": "True"}
    states.record("a", {"phase": "Creating", "conditions": [{"type": "Ready", "status": "False"}]})
    states.record("b", {"phase": "Ready", "conditions": [ready]})
    states.record("a", {"phase": "Ready", "conditions": [ready]})  # a moved on: no stale series
    states.record("c", {})
    counts = _counts(states)
    assert counts["qa_operator_resources"] == {("Ready",): 2, ("Unknown",): 1}
    assert counts["qa_operator_resources_ready"] == {("True",): 2, ("False",): 0, ("Unknown",): 1}
    states.forget("b")
    assert _counts(states)["qa_operator_resources"] == {("Ready",): 1, ("Unknown",): 1}
