"""The smoke test, pure: judging an invocation, counting failures, and the plan that follows."""

from __future__ import annotations

import dataclasses
import json

import pytest

from qa_operator.desired import Artifacts, Owner, desired_state
from qa_operator.plan import (
    SMOKE_TEST_CAUSE,
    Action,
    History,
    Observed,
    ObservedEndpoint,
    State,
    plan_reconcile,
)
from qa_operator.smoke import (
    Invocation,
    SmokeRecord,
    SmokeResult,
    excerpt,
    judge,
    next_record,
    normalise_answer,
    plan_after_smoke,
    request_body,
    smoke_key,
    verified_config,
)
from qa_operator.spec import SmokeTest, parse_spec

TEXT = "My name is Alex, I am 32 and live in Copenhagen."
TEST = SmokeTest(question="Where do I live?", text=TEXT)
EXPECTING = dataclasses.replace(TEST, expect_answer="Copenhagen")


def answer(text: str, status: int = 200, latency_ms: int = 40) -> Invocation:
    body = {"predictions": [{"answer": text, "start": 0, "end": len(text), "score": 0.9}]}
    return Invocation(status, json.dumps(body).encode(), latency_ms)


JUDGE_ROWS = {
    "a-span-of-the-text": (TEST, answer("copenhagen"), True, "answered 'copenhagen'"),
    "the-expected-answer-any-case-and-punctuation": (
        EXPECTING,
        answer(" Copenhagen. "),
        True,
        "answered",
    ),
    "another-answer-than-expected": (
        EXPECTING,
        answer("alex"),
        False,
        "answered 'alex', expected 'Copenhagen'",
    ),
    "not-a-span": (TEST, answer("paris"), False, "not a span of the text"),
    "empty-answer": (TEST, answer(""), False, "not a span of the text"),
    "a-records-list-is-an-answer-too": (
        TEST,
        Invocation(200, json.dumps([{"answer": "Copenhagen"}]).encode(), 5),
        True,
        "answered",
    ),
    "no-predictions": (
        TEST,
        Invocation(200, b'{"predictions": []}', 5),
        False,
        "not an answer in the serving contract",
    ),
    "not-json": (TEST, Invocation(200, b"<html>ok</html>", 5), False, "<html>ok</html>"),
    "container-500": (
        TEST,
        Invocation(
            500,
            b'{"error_code": "INTERNAL_ERROR", "message": "index out of range"}',
            9,
            "ModelError",
        ),
        False,
        'ModelError 500: {"error_code"',
    ),
    "endpoint-not-found": (
        TEST,
        Invocation(400, b"Endpoint x of account 1 not found.", 3, "ValidationError"),
        False,
        "ValidationError 400: Endpoint x",
    ),
    "no-answer-in-time": (
        TEST,
        Invocation(None, b"no answer before the read timeout", 70_000, "Timeout"),
        False,
        "Timeout no answer",
    ),
    "too-slow": (
        dataclasses.replace(TEST, timeout_seconds=1),
        answer("copenhagen", latency_ms=1500),
        False,
        "over the 1 s deadline",
    ),
    "http-error-without-body": (TEST, Invocation(503, b"", 3), False, "HTTP 503: no body"),
}


@pytest.mark.parametrize(
    ("test", "invocation", "passed", "detail"), JUDGE_ROWS.values(), ids=list(JUDGE_ROWS)
)
def test_judge(test: SmokeTest, invocation: Invocation, passed: bool, detail: str) -> None:
    result = judge(test, invocation)
    assert result.passed is passed
    assert detail in result.detail
    assert (result.status_code, result.latency_ms) == (
        invocation.status_code,
        invocation.latency_ms,
    )


def test_a_failure_never_quotes_the_question_or_text() -> None:
    secret = SmokeTest(question="what is the token?", text="the token is hunter2-secret")
    result = judge(secret, Invocation(500, b"model crashed", 5, "ModelError"))
    assert "hunter2" not in result.detail and "token" not in result.detail


def test_excerpt_is_one_short_printable_line() -> None:
    text = excerpt(b"line one\n\tline\x00two " + b"x" * 500)
    assert "\n" not in text and "\x00" not in text and "\t" not in text
    assert len(text) == 200 and text.endswith("...")
    assert text.startswith("line one line two")
    assert excerpt(b"\xff\xfeok") == "\ufffd\ufffdok"


def test_the_request_is_one_row_of_the_serving_contract() -> None:
    assert json.loads(request_body(TEST)) == [{"question": "Where do I live?", "text": TEXT}]


def test_the_key_changes_with_what_is_asked_and_expected_only() -> None:
    assert smoke_key(TEST) == smoke_key(dataclasses.replace(TEST, timeout_seconds=5))
    assert smoke_key(TEST) != smoke_key(EXPECTING)
    assert smoke_key(TEST) != smoke_key(dataclasses.replace(TEST, question="Who am I?"))
    assert smoke_key(TEST) != smoke_key(dataclasses.replace(TEST, text=TEXT + " Really."))


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("Copenhagen", "copenhagen"), (" 'Copenhagen'. ", "copenhagen"), ("New\n York", "new york")],
)
def test_normalise_answer(raw: str, normalised: str) -> None:
    assert normalise_answer(raw) == normalised


FAILED = SmokeResult(False, None, 500, 10, "ModelError 500: boom")
PASSED = SmokeResult(True, "copenhagen", 200, 10, "answered 'copenhagen' in 10 ms")


def record(
    attempts: int,
    *,
    config: str = "cfg-a",
    key: str = "k1",
    generation: int = 2,
    passed: bool = False,
) -> SmokeRecord:
    return SmokeRecord(config, key, generation, passed, attempts, None, 500, 10, "boom")


@pytest.mark.parametrize(
    ("previous", "result", "attempts", "passed"),
    [
        (None, FAILED, 1, False),
        (record(1), FAILED, 2, False),
        (record(2, config="cfg-b"), FAILED, 1, False),
        (record(2, key="k2"), FAILED, 1, False),
        (record(2, generation=1), FAILED, 1, False),
        (record(1, passed=True), FAILED, 1, False),
        (record(2), PASSED, 1, True),
    ],
    ids=[
        "first",
        "in-a-row",
        "other-config-restarts",
        "other-question-restarts",
        "new-generation-restarts",
        "after-a-pass-restarts",
        "a-pass",
    ],
)
def test_next_record_counts_failures_in_a_row(
    previous: SmokeRecord | None, result: SmokeResult, attempts: int, passed: bool
) -> None:
    new = next_record(previous, "cfg-a", "k1", 2, result)
    assert (new.attempts, new.passed, new.config, new.key, new.generation) == (
        attempts,
        passed,
        "cfg-a",
        "k1",
        2,
    )


def test_a_config_is_verified_only_by_a_pass_of_the_question_asked_now() -> None:
    passed = next_record(None, "cfg-a", smoke_key(TEST), 2, PASSED)
    failed = next_record(None, "cfg-a", smoke_key(TEST), 2, FAILED)
    assert verified_config(passed, TEST) == "cfg-a"
    assert verified_config(passed, EXPECTING) is None
    assert verified_config(failed, TEST) is None
    assert verified_config(None, TEST) is None


def test_a_record_survives_the_status_round_trip() -> None:
    original = next_record(None, "cfg-a", "k1", 2, PASSED)
    assert SmokeRecord.from_status(original.to_status()) == original
    assert SmokeRecord.from_status(None) is None
    assert SmokeRecord.from_status({"passed": True}) is None


DESIRED = desired_state(
    parse_spec(
        {
            "model": {"huggingface": {"id": "deepset/roberta-base-squad2"}},
            "endpoint": {"instanceType": "ml.m5.xlarge"},
        }
    ),
    Owner("team-a", "squad-qa", "uid-1"),
    Artifacts("sha256:" + "ab" * 32, "registry.local/qa-serving:1", "s3://bucket/model.tar.gz"),
    execution_role_arn="arn:aws:iam::123456789012:role/qa",
)
WANT = DESIRED.config.name
OLD = "team-a-squad-qa-0123456789"
ENDPOINT = ObservedEndpoint(
    name=DESIRED.endpoint.name,
    arn="arn:ep",
    status="InService",
    config_name=WANT,
    tags=dict(DESIRED.endpoint.tags),
)
HISTORY = History(generation=4, smoke_required=True, last_known_good=OLD)


def mine(attempts: int, passed: bool = False) -> SmokeRecord:
    return SmokeRecord(WANT, "k", 4, passed, attempts, None, 500, 10, "ModelError 500: boom")


@pytest.mark.parametrize(
    ("history", "smoke", "state", "reason", "actions", "failed_at"),
    [
        (
            HISTORY,
            mine(1, passed=True),
            State.READY,
            "SmokeTestPassed",
            (Action.DELETE_SUPERSEDED,),
            None,
        ),
        (HISTORY, mine(1), State.SMOKE_RETRYING, "SmokeTestFailed", (), None),
        (HISTORY, mine(2), State.SMOKE_RETRYING, "SmokeTestFailed", (), None),
        (HISTORY, mine(3), State.ROLLING_BACK, "SmokeTestFailedRolledBack", (Action.ROLL_BACK,), 4),
        (
            dataclasses.replace(HISTORY, last_known_good=None),
            mine(3),
            State.FAILED,
            "SmokeTestFailed",
            (),
            4,
        ),
        (
            dataclasses.replace(HISTORY, last_known_good=WANT),
            mine(3),
            State.FAILED,
            "SmokeTestFailed",
            (),
            4,
        ),
    ],
    ids=[
        "passed-is-ready-and-cleans-up",
        "first-failure-asks-again",
        "second-failure-asks-again",
        "last-failure-rolls-back-to-the-last-good-config",
        "last-failure-without-a-good-config-fails",
        "last-failure-of-the-good-config-itself-fails",
    ],
)
def test_plan_after_smoke(
    history: History,
    smoke: SmokeRecord,
    state: State,
    reason: str,
    actions: tuple[Action, ...],
    failed_at: int | None,
) -> None:
    plan = plan_after_smoke(DESIRED, ENDPOINT, history, smoke, max_attempts=3)
    assert (plan.state, plan.reason, plan.actions, plan.failure_generation) == (
        state,
        reason,
        actions,
        failed_at,
    )
    assert plan.failure_cause == (SMOKE_TEST_CAUSE if failed_at is not None else None)
    assert plan.failure_reason == (smoke.message if failed_at is not None else None)
    assert ENDPOINT.name in plan.message
    if not smoke.passed:
        assert "ModelError 500: boom" in plan.message


def test_the_ready_condition_after_a_pass_is_the_one_every_resync_reports() -> None:
    """The pass that ran the test and the resyncs after it report the same reason and message,
    so a resync changes nothing in status."""
    record = mine(1, passed=True)
    after_test = plan_after_smoke(DESIRED, ENDPOINT, HISTORY, record, max_attempts=3)
    resync = plan_reconcile(
        DESIRED,
        Observed(endpoint=ENDPOINT, model_exists=True, config_exists=True),
        dataclasses.replace(HISTORY, verified_config=WANT),
    )
    assert (resync.state, resync.reason, resync.message) == (
        after_test.state,
        after_test.reason,
        after_test.message,
    )
    assert after_test.reason == "SmokeTestPassed"
