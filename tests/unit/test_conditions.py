"""Conditions by the Kubernetes API conventions: verdicts per state and a stable merge."""

from __future__ import annotations

import re

import pytest

from qa_operator.conditions import (
    Condition,
    blocked,
    internal_error,
    merge_conditions,
    retrying,
    verdict_for,
)
from qa_operator.errors import describe_exception
from qa_operator.plan import State

T0 = "2024-01-01T00:00:00Z"
T1 = "2024-01-01T00:05:00Z"
REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


# state -> (phase, Ready, Progressing, Degraded)
VERDICTS = {
    State.CREATING: ("Creating", "False", "True", "False"),
    State.UPDATING: ("Updating", "False", "True", "False"),
    State.WAITING: ("Progressing", "False", "True", "False"),
    State.DELETING: ("Deleting", "False", "True", "False"),
    State.DELETED: ("Deleted", "False", "False", "False"),
    State.READY: ("Ready", "True", "False", "False"),
    State.SERVING_BUSY: ("Ready", "True", "True", "False"),
    State.VERIFYING: ("Verifying", "False", "True", "False"),
    State.SMOKE_RETRYING: ("Verifying", "False", "True", "True"),
    State.ROLLING_BACK: ("Degraded", "False", "True", "True"),
    State.FAILED: ("Failed", "False", "False", "True"),
    State.ROLLED_BACK: ("Degraded", "False", "False", "True"),
    State.CONFLICT: ("Failed", "False", "False", "True"),
    State.SUSPENDING: ("Suspending", "False", "True", "False"),
    State.SUSPENDED: ("Suspended", "False", "False", "False"),
}


def test_every_state_has_a_verdict_row() -> None:
    assert set(VERDICTS) == set(State)


@pytest.mark.parametrize(
    ("state", "phase", "ready", "progressing", "degraded"),
    [(state, *row) for state, row in VERDICTS.items()],
    ids=[state.name for state in VERDICTS],
)
def test_verdict_for(state: State, phase: str, ready: str, progressing: str, degraded: str) -> None:
    verdict = verdict_for(state, "SomeReason", "what happened")
    assert verdict.phase == phase
    by_type = {c.type: c for c in verdict.conditions}
    assert [c.type for c in verdict.conditions] == ["Ready", "Progressing", "Degraded"]
    assert (by_type["Ready"].status, by_type["Progressing"].status, by_type["Degraded"].status) == (
        ready,
        progressing,
        degraded,
    )
    # Ready always carries the pass's reason; the others only when they are True.
    assert (by_type["Ready"].reason, by_type["Ready"].message) == ("SomeReason", "what happened")
    for kind, quiet in (("Progressing", "Idle"), ("Degraded", "AsExpected")):
        condition = by_type[kind]
        if condition.status == "True":
            assert (condition.reason, condition.message) == ("SomeReason", "what happened")
        else:
            assert (condition.reason, condition.message) == (quiet, "")
    for condition in verdict.conditions:
        assert REASON.match(condition.reason), condition


def test_blocked_is_failed_and_degraded() -> None:
    verdict = blocked("AwsAccessDenied", "no access")
    assert verdict.phase == "Failed"
    assert [(c.type, c.status, c.reason) for c in verdict.conditions] == [
        ("Ready", "False", "AwsAccessDenied"),
        ("Progressing", "False", "Idle"),
        ("Degraded", "True", "AwsAccessDenied"),
    ]


def test_merge_into_nothing_sets_all_fields() -> None:
    merged = merge_conditions(
        None, verdict_for(State.READY, "EndpointInService", "ok").conditions, generation=2, now=T0
    )
    assert merged == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "EndpointInService",
            "message": "ok",
            "observedGeneration": 2,
            "lastTransitionTime": T0,
        },
        {
            "type": "Progressing",
            "status": "False",
            "reason": "Idle",
            "message": "",
            "observedGeneration": 2,
            "lastTransitionTime": T0,
        },
        {
            "type": "Degraded",
            "status": "False",
            "reason": "AsExpected",
            "message": "",
            "observedGeneration": 2,
            "lastTransitionTime": T0,
        },
    ]


def test_transition_time_moves_only_when_status_changes() -> None:
    creating = verdict_for(State.CREATING, "CreatingEndpoint", "creating").conditions
    first = merge_conditions([], creating, generation=1, now=T0)

    waiting = verdict_for(State.WAITING, "EndpointCreating", "still creating").conditions
    second = merge_conditions(first, waiting, generation=1, now=T1)
    assert [c["lastTransitionTime"] for c in second] == [T0, T0, T0]
    assert second[0]["reason"] == "EndpointCreating", "reason and message follow the latest pass"
    assert second[0]["message"] == "still creating"

    ready = verdict_for(State.READY, "EndpointInService", "ok").conditions
    third = merge_conditions(second, ready, generation=2, now=T1)
    times = {c["type"]: c["lastTransitionTime"] for c in third}
    assert times == {"Ready": T1, "Progressing": T1, "Degraded": T0}
    assert {c["observedGeneration"] for c in third} == {2}


def test_merge_does_not_mutate_the_existing_conditions() -> None:
    existing = [{"type": "Ready", "status": "False", "lastTransitionTime": T0}]
    merge_conditions(existing, [Condition("Ready", "True", "Up", "")], generation=1, now=T1)
    assert existing == [{"type": "Ready", "status": "False", "lastTransitionTime": T0}]


def test_unchanged_status_without_a_recorded_time_gets_now() -> None:
    existing = [{"type": "Ready", "status": "True"}]
    merged = merge_conditions(
        existing, [Condition("Ready", "True", "Up", "")], generation=1, now=T1
    )
    assert merged[0]["lastTransitionTime"] == T1


def test_standard_conditions_come_first_then_others_by_type() -> None:
    existing = [
        {"type": "Zeta", "status": "True", "lastTransitionTime": T0},
        {"type": "Degraded", "status": "False", "lastTransitionTime": T0},
        {"type": "Alpha", "status": "Unknown", "lastTransitionTime": T0},
        {"status": "True"},  # no type: dropped
    ]
    merged = merge_conditions(
        existing,
        [Condition("Progressing", "True", "Working", "m"), Condition("Ready", "False", "No", "")],
        generation=7,
        now=T1,
    )
    assert [c["type"] for c in merged] == ["Ready", "Progressing", "Degraded", "Alpha", "Zeta"]
    untouched = {c["type"]: c for c in merged}
    assert untouched["Alpha"] == {"type": "Alpha", "status": "Unknown", "lastTransitionTime": T0}
    assert "observedGeneration" not in untouched["Degraded"]


def test_retrying_leaves_ready_untouched() -> None:
    ready = merge_conditions(
        [], verdict_for(State.READY, "EndpointInService", "ok").conditions, generation=3, now=T0
    )
    verdict = retrying("AwsThrottlingException", "slow down")
    assert verdict.phase == "", "an empty phase means: keep the phase you had"
    merged = merge_conditions(ready, verdict.conditions, generation=4, now=T1)
    by_type = {c["type"]: c for c in merged}
    assert by_type["Ready"] == ready[0]
    assert by_type["Degraded"] == ready[2]
    assert by_type["Progressing"] == {
        "type": "Progressing",
        "status": "True",
        "reason": "AwsThrottlingException",
        "message": "slow down",
        "observedGeneration": 4,
        "lastTransitionTime": T1,
    }


def test_retrying_while_deleting_keeps_the_deleting_phase() -> None:
    assert retrying("AwsThrottlingException", "slow down", phase="Deleting").phase == "Deleting"


def test_an_internal_error_is_degraded_and_progressing_and_leaves_ready_alone() -> None:
    ready = merge_conditions(
        [], verdict_for(State.READY, "EndpointInService", "ok").conditions, generation=3, now=T0
    )
    verdict = internal_error(ValueError("invalid reference format"), retry_in=7.5)
    assert verdict.phase == ""
    merged = {
        c["type"]: c for c in merge_conditions(ready, verdict.conditions, generation=3, now=T1)
    }
    assert merged["Ready"] == ready[0], "an endpoint that served still serves"
    assert (merged["Degraded"]["status"], merged["Degraded"]["reason"]) == ("True", "InternalError")
    assert merged["Degraded"]["message"] == "ValueError: invalid reference format"
    assert merged["Degraded"]["lastTransitionTime"] == T1
    progressing = merged["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("True", "InternalError")
    assert progressing["message"] == "retrying in 7.5s: ValueError: invalid reference format"
    assert internal_error(OSError("x"), 1, phase="Deleting").phase == "Deleting"


LONG = "x" * 1000
# exception -> what status may say about it
DESCRIBED = {
    "type-and-message": (ValueError("bad image ref"), "ValueError: bad image ref"),
    "no-message": (RuntimeError(), "RuntimeError"),
    "os-error": (
        OSError(28, "No space left on device"),
        "OSError: [Errno 28] No space left on device",
    ),
    "one-line": (KeyError("a\n  b"), "KeyError: 'a\\n b'"),
    "multi-line": (ValueError("first\n   second"), "ValueError: first second"),
    "url-credentials": (
        ValueError("cannot reach https://bob:s3cret@registry.local/v2/"),
        "ValueError: cannot reach https://***:***@registry.local/v2/",
    ),
    "password-pair": (
        ValueError("login failed password=hunter2"),
        "ValueError: login failed password=***",
    ),
    "token-colon": (ValueError("auth_token: 'abc def'"), "ValueError: auth_token: ***"),
    "aws-key-id": (ValueError("key AKIAIOSFODNN7EXAMPLE denied"), "ValueError: key *** denied"),
    "bearer": (ValueError("header Bearer eyJhbGciOi.x.y"), "ValueError: header Bearer ***"),
    "truncated": (ValueError(LONG), "ValueError: " + "x" * 285 + "..."),
}


@pytest.mark.parametrize(("exc", "described"), list(DESCRIBED.values()), ids=list(DESCRIBED))
def test_describe_exception(exc: BaseException, described: str) -> None:
    assert describe_exception(exc) == described
    assert len(describe_exception(exc)) <= 300
