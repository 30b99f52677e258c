"""Pure smoke-test logic: what to ask the endpoint, whether its answer is one, and what follows.

An endpoint is Ready only once it answered a question: InService alone says the container passed
SageMaker's /ping, not that the model answers (a model without a QA head, a container that 500s
on every request, one too slow for its callers). The reconciler invokes the endpoint through
`aws.runtime` and hands the invocation here; this module judges it and plans the next step:
Ready, a bounded retry, a roll back to the last config that passed, or a terminal failure.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qa_operator.desired import DesiredState
from qa_operator.plan import (
    SMOKE_TEST_CAUSE,
    Action,
    History,
    ObservedEndpoint,
    Plan,
    State,
    plan_ready,
)
from qa_operator.spec import SmokeTest

EXCERPT_CHARS = 200


@dataclass(frozen=True)
class Invocation:
    """What one InvokeEndpoint call gave: the container's status and body when it answered (a
    container error arrives as SageMaker's ModelError with the original status), else the error
    SageMaker or the transport gave (`error`), and how long it took."""

    status_code: int | None
    body: bytes
    latency_ms: int
    error: str | None = None


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    answer: str | None
    status_code: int | None
    latency_ms: int
    detail: str  # why it failed, or what it answered


@dataclass(frozen=True)
class SmokeRecord:
    """status.smokeTest: the latest smoke test of `config` under the smoke spec `key`, and how
    many times in a row it failed at `generation`."""

    config: str
    key: str
    generation: int
    passed: bool
    attempts: int
    answer: str | None
    status_code: int | None
    latency_ms: int
    message: str

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> SmokeRecord | None:
        if not raw or not isinstance(raw.get("config"), str):
            return None
        return cls(
            config=raw["config"],
            key=str(raw.get("key", "")),
            generation=int(raw.get("generation") or 0),
            passed=raw.get("passed") is True,
            attempts=int(raw.get("attempts") or 0),
            answer=raw.get("answer"),
            status_code=raw.get("statusCode"),
            latency_ms=int(raw.get("latencyMs") or 0),
            message=str(raw.get("message", "")),
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "key": self.key,
            "generation": self.generation,
            "passed": self.passed,
            "attempts": self.attempts,
            "answer": self.answer,
            "statusCode": self.status_code,
            "latencyMs": self.latency_ms,
            "message": self.message,
        }


def smoke_key(test: SmokeTest) -> str:
    """Changes when the question, text or expected answer does: a passed test is kept per key."""
    material = json.dumps([test.question, test.text, test.expect_answer])
    return hashlib.sha256(material.encode()).hexdigest()[:12]


def verified_config(latest: SmokeRecord | None, test: SmokeTest) -> str | None:
    """The config that passed the smoke test as the spec asks it now, if the latest one did."""
    if latest is None or not latest.passed or latest.key != smoke_key(test):
        return None
    return latest.config


def request_body(test: SmokeTest) -> bytes:
    """One row in the serving contract's records form (what the post's callers send)."""
    return json.dumps([{"question": test.question, "text": test.text}]).encode()


def excerpt(body: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """One printable line of at most `limit` characters, for a condition message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise_answer(answer: str) -> str:
    """Case, surrounding punctuation and inner whitespace do not make an answer wrong."""
    words = re.sub(r"^[\W_]+|[\W_]+$", "", answer.casefold()).split()
    return " ".join(words)


def judge(test: SmokeTest, invocation: Invocation) -> SmokeResult:
    def failed(detail: str, answer: str | None = None) -> SmokeResult:
        return SmokeResult(False, answer, invocation.status_code, invocation.latency_ms, detail)

    if invocation.error is not None or invocation.status_code != 200:
        status = invocation.status_code if invocation.status_code is not None else "no answer"
        label = f"{invocation.error} " if invocation.error else "HTTP "
        return failed(f"{label}{status}: {excerpt(invocation.body) or 'no body'}")
    if invocation.latency_ms > test.timeout_seconds * 1000:
        return failed(
            f"answered in {invocation.latency_ms} ms, over the {test.timeout_seconds} s deadline"
        )
    answer = _first_answer(invocation.body)
    if answer is None:
        return failed(f"not an answer in the serving contract: {excerpt(invocation.body)}")
    if not answer.strip() or normalise_answer(answer) not in normalise_answer(test.text):
        return failed(f"answered {excerpt(answer, 80)!r}, which is not a span of the text", answer)
    if test.expect_answer is not None and normalise_answer(answer) != normalise_answer(
        test.expect_answer
    ):
        return failed(
            f"answered {excerpt(answer, 80)!r}, expected {excerpt(test.expect_answer, 80)!r}",
            answer,
        )
    return SmokeResult(
        True,
        answer,
        invocation.status_code,
        invocation.latency_ms,
        f"answered {excerpt(answer, 80)!r} in {invocation.latency_ms} ms",
    )


def _first_answer(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    rows = parsed.get("predictions") if isinstance(parsed, dict) else parsed
    if not isinstance(rows, list) or not rows:
        return None
    first = rows[0]
    answer = first.get("answer") if isinstance(first, dict) else None
    return answer if isinstance(answer, str) else None


def next_record(
    previous: SmokeRecord | None, config: str, key: str, generation: int, result: SmokeResult
) -> SmokeRecord:
    """Failures in a row count per (config, smoke key, generation); any change starts again."""
    same = (
        previous is not None
        and not previous.passed
        and (previous.config, previous.key, previous.generation) == (config, key, generation)
    )
    attempts = (previous.attempts if same and previous is not None else 0) + 1
    return SmokeRecord(
        config=config,
        key=key,
        generation=generation,
        passed=result.passed,
        attempts=1 if result.passed else attempts,
        answer=result.answer,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        message=result.detail,
    )


def plan_after_smoke(
    desired: DesiredState,
    endpoint: ObservedEndpoint,
    history: History,
    record: SmokeRecord,
    max_attempts: int,
) -> Plan:
    config = desired.config.name
    if record.passed:
        return plan_ready(desired, endpoint, history, answered=True)
    failure = f"smoke test of config {config} failed: {record.message}"
    if record.attempts < max_attempts:
        return Plan(
            State.SMOKE_RETRYING,
            "SmokeTestFailed",
            f"{failure} (attempt {record.attempts} of {max_attempts}); asking again",
        )
    good = history.last_known_good
    if good is not None and good != config:
        return Plan(
            State.ROLLING_BACK,
            "SmokeTestFailedRolledBack",
            f"{failure} ({record.attempts} attempts); rolling endpoint {endpoint.name} back to "
            f"{good}, the last config that passed; change the spec to try again",
            (Action.ROLL_BACK,),
            failure_generation=history.generation,
            failure_cause=SMOKE_TEST_CAUSE,
            failure_reason=record.message,
        )
    return Plan(
        State.FAILED,
        "SmokeTestFailed",
        f"{failure} ({record.attempts} attempts); no earlier config passed to roll back to, so "
        f"endpoint {endpoint.name} stays on it; change the spec to try again",
        failure_generation=history.generation,
        failure_cause=SMOKE_TEST_CAUSE,
        failure_reason=record.message,
    )
