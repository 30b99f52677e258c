"""Pure planning for deadlines: how long an endpoint may stay Creating or Updating.

SageMaker can hold an endpoint in Creating for an hour or more (a container that never passes its
ping, an image it cannot pull) while it bills. Each CreateEndpoint/UpdateEndpoint starts a clock
recorded in status.deadline; once it passes, the pass reports `CreateTimedOut`/`UpdateTimedOut`
with SageMaker's last status instead of waiting on, and with `onTimeout: Delete` a stuck Creating
endpoint is deleted (never a serving endpoint stuck Updating: it still serves its old config).
A timed-out config is not tried again until the spec changes (a new generation).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from qa_operator.plan import Action, ObservedEndpoint, Plan, State
from qa_operator.timeouts import Timeouts

# The SageMaker status each timed operation waits through.
WAITS_IN = {"Create": frozenset({"Creating"}), "Update": frozenset({"Updating"})}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Clock:
    """status.deadline: the timed operation of one config at one generation."""

    operation: Literal["Create", "Update"]
    config: str
    generation: int
    started_at: dt.datetime
    timed_out: bool = False
    last_status: str | None = None

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> Clock | None:
        if not raw or raw.get("operation") not in WAITS_IN:
            return None
        try:
            started = dt.datetime.strptime(str(raw["startedAt"]), TIME_FORMAT)
            return cls(
                operation=raw["operation"],
                config=str(raw["config"]),
                generation=int(raw["generation"]),
                started_at=started.replace(tzinfo=dt.UTC),
                timed_out=bool(raw.get("timedOut")),
                last_status=raw.get("lastStatus"),
            )
        except (KeyError, TypeError, ValueError):
            return None  # a record from another version: start the clock again

    def to_status(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "config": self.config,
            "generation": self.generation,
            "startedAt": self.started_at.strftime(TIME_FORMAT),
            "timedOut": self.timed_out,
            "lastStatus": self.last_status,
        }


@dataclass(frozen=True)
class DeadlineCheck:
    plan: Plan
    clock: Clock | None
    timed_out_now: bool = False  # the deadline passed on this pass: post one Warning


def check_deadline(
    plan: Plan,
    endpoint: ObservedEndpoint | None,
    config: str,
    generation: int,
    previous: Clock | None,
    timeouts: Timeouts,
    defaults: tuple[float, float],
    now: dt.datetime,
) -> DeadlineCheck:
    """The plan, overridden when the operation on `config` ran past its deadline, and the clock to
    record. `defaults` are the operator's (create, update) seconds."""
    clock = previous if previous and previous.config == config else None
    if clock is not None and clock.generation != generation:
        # A new spec: a timed-out config may be tried again; one still in flight is judged by
        # the new timeouts from its original start.
        clock = (
            replace(clock, generation=generation, timed_out=False)
            if _waiting(clock, endpoint)
            else None
        )
    if clock is not None and clock.timed_out and _still_stuck(clock, endpoint):
        limit = _limit(clock.operation, timeouts, defaults)
        return DeadlineCheck(_timed_out_plan(clock, endpoint, timeouts, limit), clock)
    if Action.CREATE_ENDPOINT in plan.actions or Action.UPDATE_ENDPOINT in plan.actions:
        operation: Literal["Create", "Update"] = (
            "Create" if Action.CREATE_ENDPOINT in plan.actions else "Update"
        )
        return DeadlineCheck(plan, Clock(operation, config, generation, now))
    if endpoint is None or endpoint.status not in WAITS_IN["Create"] | WAITS_IN["Update"]:
        return DeadlineCheck(plan, None)
    operation = "Create" if endpoint.status in WAITS_IN["Create"] else "Update"
    if clock is None or clock.operation != operation:
        # Waiting on an operation no clock was recorded for (started before an upgrade, or
        # by hand): its clock starts now.
        return DeadlineCheck(plan, Clock(operation, config, generation, now))
    limit = _limit(operation, timeouts, defaults)
    if (now - clock.started_at).total_seconds() <= limit:
        return DeadlineCheck(plan, clock)
    expired = replace(clock, timed_out=True, last_status=endpoint.status)
    return DeadlineCheck(
        _timed_out_plan(expired, endpoint, timeouts, limit), expired, timed_out_now=True
    )


def _still_stuck(clock: Clock, endpoint: ObservedEndpoint | None) -> bool:
    """Timed out and not come good since (an endpoint that reached InService after all is
    planned as usual); gone or going (deleted on timeout, or by hand) stays timed out."""
    return endpoint is None or endpoint.status == "Deleting" or _waiting(clock, endpoint)


def _waiting(clock: Clock, endpoint: ObservedEndpoint | None) -> bool:
    return endpoint is not None and endpoint.status in WAITS_IN[clock.operation]


def _limit(operation: str, timeouts: Timeouts, defaults: tuple[float, float]) -> float:
    if operation == "Create":
        return timeouts.create_seconds or defaults[0]
    return timeouts.update_seconds or defaults[1]


def _timed_out_plan(
    clock: Clock, endpoint: ObservedEndpoint | None, timeouts: Timeouts, limit: float
) -> Plan:
    """Degraded `<Operation>TimedOut`, the same message on every pass (no status patch for
    nothing); with onTimeout Delete, the stuck Creating endpoint is deleted, and later passes
    repeat the verdict without creating it again."""
    name = endpoint.name if endpoint is not None else "the endpoint"
    message = (
        f"{clock.operation}Endpoint of config {clock.config} (started "
        f"{clock.started_at.strftime(TIME_FORMAT)}) ran past its {limit:g}s deadline: SageMaker "
        f"still reported {clock.last_status}"
    )
    actions: tuple[Action, ...] = ()
    if clock.operation == "Create" and timeouts.on_timeout == "Delete":
        message += f"; onTimeout Delete: {name} is deleted so that it stops billing"
        if endpoint is not None and endpoint.status not in ("Deleting", "Failed"):
            actions = (Action.DELETE_ENDPOINT,)
    message += "; change the spec to try again"
    return Plan(State.FAILED, f"{clock.operation}TimedOut", message, actions)
