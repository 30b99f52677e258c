"""Status conditions by the Kubernetes API conventions.

Ready, Progressing and Degraded, each with a CamelCase reason, a message, the generation it
describes, and a lastTransitionTime that moves only when the condition's status changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from qa_operator.errors import INTERNAL_ERROR, describe_exception
from qa_operator.plan import State

READY = "Ready"
PROGRESSING = "Progressing"
PACKAGING = "Packaging"  # Progressing's reason while the package is built
DEGRADED = "Degraded"
CONDITION_TYPES = (READY, PROGRESSING, DEGRADED)

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The phase and conditions that one reconcile pass reports."""

    phase: str
    conditions: tuple[Condition, ...]


def verdict_for(state: State, reason: str, message: str) -> Verdict:
    def trio(ready: Status, progressing: Status, degraded: Status) -> tuple[Condition, ...]:
        quiet_reason = {READY: "NotReady", PROGRESSING: "Idle", DEGRADED: "AsExpected"}
        return tuple(
            Condition(kind, status, reason, message)
            if _speaks(kind, status)
            else Condition(kind, status, quiet_reason[kind], "")
            for kind, status in ((READY, ready), (PROGRESSING, progressing), (DEGRADED, degraded))
        )

    table: dict[State, tuple[str, tuple[Condition, ...]]] = {
        State.CREATING: ("Creating", trio("False", "True", "False")),
        State.UPDATING: ("Updating", trio("False", "True", "False")),
        State.WAITING: ("Progressing", trio("False", "True", "False")),
        State.DELETING: ("Deleting", trio("False", "True", "False")),
        State.DELETED: ("Deleted", trio("False", "False", "False")),
        State.READY: ("Ready", trio("True", "False", "False")),
        State.SERVING_BUSY: ("Ready", trio("True", "True", "False")),
        State.VERIFYING: ("Verifying", trio("False", "True", "False")),
        State.SMOKE_RETRYING: ("Verifying", trio("False", "True", "True")),
        State.FAILED: ("Failed", trio("False", "False", "True")),
        State.ROLLING_BACK: ("Degraded", trio("False", "True", "True")),
        State.ROLLED_BACK: ("Degraded", trio("False", "False", "True")),
        State.CONFLICT: ("Failed", trio("False", "False", "True")),
        State.SUSPENDING: ("Suspending", trio("False", "True", "False")),
        State.SUSPENDED: ("Suspended", trio("False", "False", "False")),
    }
    phase, conditions = table[state]
    return Verdict(phase, conditions)


def _speaks(kind: str, status: Status) -> bool:
    """Which conditions carry the pass's own reason: the one that is 'active'."""
    if kind == READY:
        return True
    return status == "True"


def blocked(reason: str, message: str) -> Verdict:
    """Terminal trouble that only a spec or account change can fix (bad input, access denied)."""
    return Verdict(
        "Failed",
        (
            Condition(READY, "False", reason, message),
            Condition(PROGRESSING, "False", "Idle", ""),
            Condition(DEGRADED, "True", reason, message),
        ),
    )


def retrying(reason: str, message: str, phase: str = "") -> Verdict:
    """A transient error: only Progressing speaks, Ready keeps what it knew."""
    return Verdict(phase, (Condition(PROGRESSING, "True", reason, message),))


def packaging(message: str) -> Verdict:
    """The model is being packaged (off the reconcile): not Ready for this generation, as while
    an update is under way (an endpoint that served before still serves the old package)."""
    return Verdict(
        "Packaging",
        (
            Condition(READY, "False", PACKAGING, message),
            Condition(PROGRESSING, "True", PACKAGING, message),
            Condition(DEGRADED, "False", "AsExpected", ""),
        ),
    )


def internal_error(exc: BaseException, retry_in: float, phase: str = "") -> Verdict:
    """An exception no table classifies (a bug, a malformed setting, a failing disk): Degraded,
    since nothing says it will heal, and Progressing, since it is retried. Ready keeps what it
    knew: an endpoint that served before still serves."""
    message = describe_exception(exc)
    return Verdict(
        phase,
        (
            Condition(PROGRESSING, "True", INTERNAL_ERROR, f"retrying in {retry_in:g}s: {message}"),
            Condition(DEGRADED, "True", INTERNAL_ERROR, message),
        ),
    )


def merge_conditions(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    by_type = {c["type"]: dict(c) for c in existing or () if "type" in c}
    for update in updates:
        previous = by_type.get(update.type) or {}
        changed = previous.get("status") != update.status
        by_type[update.type] = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else previous.get("lastTransitionTime", now),
        }
    ordered = [by_type.pop(kind) for kind in CONDITION_TYPES if kind in by_type]
    return ordered + [by_type[key] for key in sorted(by_type)]
