"""suspend.py: the plan while suspended, and the suspension record, one row per branch."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_operator.desired import Artifacts, Owner, desired_state
from qa_operator.plan import Action, ObservedEndpoint, Plan, State
from qa_operator.spec import SpecError, parse_spec
from qa_operator.suspend import Suspension, SuspensionStep, next_record, plan_suspended

RAW = {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
DESIRED = desired_state(
    parse_spec(RAW),
    Owner("ns", "squad", "uid-1"),
    Artifacts("sha256:" + "a" * 64, "img@sha256:" + "b" * 64, "s3://pkg/x/model.tar.gz"),
    execution_role_arn="arn:aws:iam::123456789012:role/sm",
)
USUAL = Plan(State.READY, "EndpointInService", "ready")
CONFLICT = Plan(State.CONFLICT, "EndpointNameConflict", "not ours")


def endpoint(status: str, owned: bool = True) -> ObservedEndpoint:
    return ObservedEndpoint("ep", "arn:ep", status, DESIRED.config.name, owned=owned)


PLAN_ROWS = [
    ("no endpoint: suspended", None, USUAL, State.SUSPENDED, ()),
    ("in service: deleted", endpoint("InService"), USUAL, State.SUSPENDING,
     (Action.DELETE_ENDPOINT,)),
    ("failed: deleted", endpoint("Failed"), USUAL, State.SUSPENDING, (Action.DELETE_ENDPOINT,)),
    ("creating: waits to delete", endpoint("Creating"), USUAL, State.SUSPENDING, ()),
    ("updating: waits to delete", endpoint("Updating"), USUAL, State.SUSPENDING, ()),
    ("deleting: waits", endpoint("Deleting"), USUAL, State.SUSPENDING, ()),
    ("not ours: the conflict stands", endpoint("InService", owned=False), CONFLICT,
     State.CONFLICT, ()),
]  # fmt: skip


@pytest.mark.parametrize(("name", "observed", "usual", "state", "actions"), PLAN_ROWS)
def test_plan_suspended(
    name: str,
    observed: ObservedEndpoint | None,
    usual: Plan,
    state: State,
    actions: tuple[Action, ...],
) -> None:
    plan = plan_suspended(usual, observed, DESIRED)
    assert plan.state is state
    assert plan.actions == actions
    if state is State.SUSPENDED:
        assert plan.reason == "Suspended"
        assert DESIRED.config.name in plan.message and DESIRED.model.name in plan.message
        assert plan.settled


T0 = dt.datetime(2026, 11, 27, 8, 0, tzinfo=dt.UTC)
STAMP = "2026-11-27T08:00:00Z"
SUSPENDED = Suspension(suspended_at="2026-11-26T19:00:00Z")
RESUMING = Suspension("2026-11-26T19:00:00Z", "2026-11-27T07:59:00Z")
RESUMED = Suspension("2026-11-26T19:00:00Z", "2026-11-27T07:59:00Z", "2026-11-27T07:59:42Z", 42.0)

RECORD_ROWS = [
    ("never suspended", Suspension(), False, State.READY, SuspensionStep(Suspension())),
    ("suspending: not yet", Suspension(), True, State.SUSPENDING, SuspensionStep(Suspension())),
    ("suspended: stamped", Suspension(), True, State.SUSPENDED,
     SuspensionStep(Suspension(suspended_at=STAMP))),
    ("still suspended: unchanged", SUSPENDED, True, State.SUSPENDED, SuspensionStep(SUSPENDED)),
    ("resume starts its clock", SUSPENDED, False, State.CREATING,
     SuspensionStep(Suspension(SUSPENDED.suspended_at, STAMP))),
    ("resuming keeps its start", RESUMING, False, State.WAITING, SuspensionStep(RESUMING)),
    ("ready again: time to resume", RESUMING, False, State.READY,
     SuspensionStep(Suspension(RESUMING.suspended_at, RESUMING.resuming_since, STAMP, 60.0),
                    resumed_now=True)),
    ("resumed: reported once", RESUMED, False, State.READY, SuspensionStep(RESUMED)),
    ("suspended again: a new record", RESUMED, True, State.SUSPENDED,
     SuspensionStep(Suspension(suspended_at=STAMP))),
    ("suspended while resuming: a new record", RESUMING, True, State.SUSPENDED,
     SuspensionStep(Suspension(suspended_at=STAMP))),
]  # fmt: skip


@pytest.mark.parametrize(("name", "previous", "suspend", "state", "expected"), RECORD_ROWS)
def test_next_record(
    name: str, previous: Suspension, suspend: bool, state: State, expected: SuspensionStep
) -> None:
    assert next_record(previous, suspend, state, T0) == expected


def test_record_round_trips_through_status() -> None:
    assert Suspension.from_status(RESUMED.to_status()) == RESUMED
    assert Suspension.from_status(None) == Suspension()


def test_spec_suspend_is_a_boolean() -> None:
    assert parse_spec(RAW).suspend is False
    assert parse_spec({**RAW, "suspend": True}).suspend is True
    with pytest.raises(SpecError) as error:
        parse_spec({**RAW, "suspend": "yes"})
    assert error.value.field_path == "suspend"
