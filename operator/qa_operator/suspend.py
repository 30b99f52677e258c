"""Pure planning for hibernation: `spec.suspend` deletes the endpoint (the only part that bills by
the hour) and keeps its Model, EndpointConfig and package; `suspend: false` recreates the endpoint
from that same config, with no repackaging, and Ready is gated as on any create.

The pass plans as usual, then `plan_suspended` replaces the plan while the spec asks for suspension.
`next_record` keeps status.suspension, which reports when it was suspended and how long the last
resume took, from the first pass that saw `suspend: false` to Ready.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qa_operator.desired import DesiredState
from qa_operator.plan import TRANSITIONAL, Action, ObservedEndpoint, Plan, State

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def plan_suspended(
    plan: Plan,
    endpoint: ObservedEndpoint | None,
    desired: DesiredState,
    by_schedule: bool = False,
) -> Plan:
    """What a pass does while the spec says suspend. An endpoint that is not ours stays the
    conflict the usual plan reports; one SageMaker is working on is deleted once it settles."""
    kept = f"model {desired.model.name} and endpoint config {desired.config.name} are kept"
    if endpoint is None:
        return Plan(
            State.SUSPENDED,
            "Suspended",
            f"suspended: no endpoint runs; {kept}; "
            + (
                "spec.schedule resumes it in its next awake window"
                if by_schedule
                else "set spec.suspend to false to resume"
            ),
        )
    if not endpoint.owned:
        return plan
    if endpoint.status == "Deleting":
        return Plan(
            State.SUSPENDING, "Suspending", f"suspending: endpoint {endpoint.name} is Deleting"
        )
    if endpoint.status in TRANSITIONAL:
        return Plan(
            State.SUSPENDING,
            "Suspending",
            f"suspending: endpoint {endpoint.name} is {endpoint.status}; deleting it once it "
            "settles",
        )
    return Plan(
        State.SUSPENDING,
        "Suspending",
        f"suspending: deleting endpoint {endpoint.name}; {kept}",
        (Action.DELETE_ENDPOINT,),
    )


@dataclass(frozen=True)
class Suspension:
    """status.suspension"""

    suspended_at: str | None = None
    resuming_since: str | None = None
    resumed_at: str | None = None
    resume_seconds: float | None = None

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> Suspension:
        raw = raw or {}
        seconds = raw.get("resumeSeconds")
        return cls(
            suspended_at=raw.get("suspendedAt"),
            resuming_since=raw.get("resumingSince"),
            resumed_at=raw.get("resumedAt"),
            resume_seconds=float(seconds) if isinstance(seconds, int | float) else None,
        )

    def to_status(self) -> dict[str, Any]:
        return {
            "suspendedAt": self.suspended_at,
            "resumingSince": self.resuming_since,
            "resumedAt": self.resumed_at,
            "resumeSeconds": self.resume_seconds,
        }


@dataclass(frozen=True)
class SuspensionStep:
    record: Suspension
    resumed_now: bool = False  # Ready again on this pass after a resume: post one event


def next_record(
    previous: Suspension, suspend: bool, state: State, now: dt.datetime
) -> SuspensionStep:
    stamp = now.strftime(TIME_FORMAT)
    if suspend:
        if state is State.SUSPENDED and (
            previous.suspended_at is None or previous.resuming_since is not None
        ):
            return SuspensionStep(Suspension(suspended_at=stamp))
        return SuspensionStep(previous)
    if previous.suspended_at is None or previous.resumed_at is not None:
        return SuspensionStep(previous)  # never suspended, or its resume already reported
    since = previous.resuming_since or stamp
    if state is not State.READY:
        return SuspensionStep(Suspension(suspended_at=previous.suspended_at, resuming_since=since))
    started = dt.datetime.strptime(since, TIME_FORMAT).replace(tzinfo=dt.UTC)
    seconds = round(max((now - started).total_seconds(), 0.0), 1)
    return SuspensionStep(
        Suspension(previous.suspended_at, since, stamp, seconds), resumed_now=True
    )
