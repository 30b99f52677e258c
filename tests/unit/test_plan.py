"""plan_reconcile and plan_delete: one table row per branch, plus a no-retry-storm story."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from qa_operator.desired import Artifacts, DesiredState, Owner, desired_state
from qa_operator.plan import (
    TRANSITIONAL,
    Action,
    History,
    Identity,
    Observed,
    ObservedEndpoint,
    Plan,
    PushedImage,
    State,
    applied_tags,
    images_to_delete,
    package_prefixes,
    packages_to_delete,
    plan_delete,
    plan_identity,
    plan_reconcile,
    pushed_image,
    superseded_image,
    tag_delta,
)
from qa_operator.spec import parse_spec

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
C = Action.CREATE_MODEL
CC = Action.CREATE_ENDPOINT_CONFIG
CE = Action.CREATE_ENDPOINT
UE = Action.UPDATE_ENDPOINT
DE = Action.DELETE_ENDPOINT


def endpoint(
    status: str, config: str = WANT, failure: str | None = None, owned: bool = True
) -> ObservedEndpoint:
    return ObservedEndpoint(
        name=DESIRED.endpoint.name,
        arn=f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{DESIRED.endpoint.name}",
        status=status,
        config_name=config,
        failure_reason=failure,
        tags=dict(DESIRED.endpoint.tags),
        owned=owned,
    )


def _desired_with_tags(tags: dict[str, str]) -> DesiredState:
    endpoint_ = dataclasses.replace(DESIRED.endpoint, tags={**DESIRED.endpoint.tags, **tags})
    return dataclasses.replace(DESIRED, endpoint=endpoint_)


@dataclass(frozen=True)
class Row:
    observed: Observed
    history: History
    state: State
    reason: str
    actions: tuple[Action, ...] = ()
    failure_generation: int | None = None


def seen(ep: ObservedEndpoint | None, model: bool = False, config: bool = False) -> Observed:
    return Observed(endpoint=ep, model_exists=model, config_exists=config)


def foreign(ep: ObservedEndpoint | None, model: bool = False, config: bool = False) -> Observed:
    """The desired Model and/or EndpointConfig name exists, tagged for another owner or none."""
    return Observed(
        endpoint=ep,
        model_exists=model,
        config_exists=config,
        model_foreign=model,
        config_foreign=config,
    )


GEN3 = History(generation=3)
# An update to WANT was tried at generation 3.
TRIED3 = History(generation=3, attempted_config=WANT, attempted_generation=3)
# ... and its failure is recorded.
FAILED3 = dataclasses.replace(TRIED3, failed_config=WANT, failed_generation=3)
# The user changed the spec (generation 4) without changing the config.
NEW_GEN4 = dataclasses.replace(FAILED3, generation=4)
# The retry at generation 4 was tried too.
TRIED4 = dataclasses.replace(NEW_GEN4, attempted_generation=4)

# The smoke test is on: WANT has not passed it yet; it passed; it failed at generation 3.
SMOKE3 = dataclasses.replace(GEN3, smoke_required=True, last_known_good=OLD)
PASSED3 = dataclasses.replace(SMOKE3, verified_config=WANT)
SMOKE_FAILED3 = dataclasses.replace(
    SMOKE3,
    failed_config=WANT,
    failed_generation=3,
    failure_cause="SmokeTest",
    failure_reason="ModelError 500: boom",
)

RECONCILE_ROWS: dict[str, Row] = {
    "smoke-in-service-on-desired-asks-first": Row(
        seen(endpoint("InService")), SMOKE3, State.VERIFYING, "SmokeTesting", (Action.SMOKE_TEST,)
    ),
    "smoke-passed-is-ready": Row(
        seen(endpoint("InService")),
        PASSED3,
        State.READY,
        "SmokeTestPassed",
        (Action.DELETE_SUPERSEDED,),
    ),
    "smoke-passed-for-another-config-asks-again": Row(
        seen(endpoint("InService")),
        dataclasses.replace(SMOKE3, verified_config=OLD),
        State.VERIFYING,
        "SmokeTesting",
        (Action.SMOKE_TEST,),
    ),
    "smoke-failed-on-desired-waits-for-a-new-spec": Row(
        seen(endpoint("InService")), SMOKE_FAILED3, State.FAILED, "SmokeTestFailed"
    ),
    "smoke-failed-rolled-back": Row(
        seen(endpoint("InService", OLD)),
        SMOKE_FAILED3,
        State.ROLLED_BACK,
        "SmokeTestFailedRolledBack",
    ),
    "smoke-failed-rolling-back": Row(
        seen(endpoint("Updating")), SMOKE_FAILED3, State.ROLLING_BACK, "SmokeTestFailedRolledBack"
    ),
    "smoke-failed-new-generation-updates-again": Row(
        seen(endpoint("InService", OLD), model=True, config=True),
        dataclasses.replace(SMOKE_FAILED3, generation=4),
        State.UPDATING,
        "UpdatingEndpoint",
        (UE,),
    ),
    "smoke-unverified-while-system-updating-waits": Row(
        seen(endpoint("SystemUpdating")), SMOKE3, State.WAITING, "EndpointSystemUpdating"
    ),
    "absent-nothing-exists": Row(seen(None), GEN3, State.CREATING, "CreatingEndpoint", (C, CC, CE)),
    "absent-model-exists": Row(
        seen(None, model=True), GEN3, State.CREATING, "CreatingEndpoint", (CC, CE)
    ),
    "absent-config-exists": Row(
        seen(None, config=True), GEN3, State.CREATING, "CreatingEndpoint", (C, CE)
    ),
    "absent-both-exist": Row(
        seen(None, model=True, config=True), GEN3, State.CREATING, "CreatingEndpoint", (CE,)
    ),
    "absent-after-failure-recorded": Row(
        seen(None, model=True, config=True), NEW_GEN4, State.CREATING, "CreatingEndpoint", (CE,)
    ),
    "absent-model-foreign": Row(
        foreign(None, model=True), GEN3, State.CONFLICT, "ModelNameConflict"
    ),
    "absent-config-foreign": Row(
        foreign(None, config=True), GEN3, State.CONFLICT, "EndpointConfigNameConflict"
    ),
    "absent-both-foreign": Row(
        foreign(None, model=True, config=True), GEN3, State.CONFLICT, "ModelNameConflict"
    ),
    "in-service-on-other-config-model-foreign": Row(
        foreign(endpoint("InService", OLD), model=True), GEN3, State.CONFLICT, "ModelNameConflict"
    ),
    "in-service-on-other-config-config-foreign": Row(
        foreign(endpoint("InService", OLD), config=True),
        GEN3,
        State.CONFLICT,
        "EndpointConfigNameConflict",
    ),
    "updating-config-foreign-waits-first": Row(
        foreign(endpoint("Updating", OLD), config=True), GEN3, State.WAITING, "EndpointUpdating"
    ),
    "not-owned-in-service": Row(
        seen(endpoint("InService", owned=False)), GEN3, State.CONFLICT, "EndpointNameConflict"
    ),
    "not-owned-creating": Row(
        seen(endpoint("Creating", owned=False)), GEN3, State.CONFLICT, "EndpointNameConflict"
    ),
    "not-owned-failed": Row(
        seen(endpoint("Failed", OLD, "x", owned=False)),
        GEN3,
        State.CONFLICT,
        "EndpointNameConflict",
    ),
    **{
        f"transitional-{status}": Row(
            seen(endpoint(status, OLD)), TRIED3, State.WAITING, f"Endpoint{status}"
        )
        for status in sorted(TRANSITIONAL)
    },
    "serving-desired-while-system-updating": Row(
        seen(endpoint("SystemUpdating")), GEN3, State.SERVING_BUSY, "EndpointSystemUpdating"
    ),
    "serving-desired-while-updating": Row(
        # Someone else's update (capacity, a redeploy): it still serves the desired config.
        seen(endpoint("Updating")),
        GEN3,
        State.SERVING_BUSY,
        "EndpointUpdating",
    ),
    "out-of-service": Row(
        seen(endpoint("OutOfService")), GEN3, State.FAILED, "EndpointOutOfService"
    ),
    "out-of-service-on-other-config": Row(
        seen(endpoint("OutOfService", OLD)), GEN3, State.FAILED, "EndpointOutOfService"
    ),
    "update-rollback-failed": Row(
        seen(endpoint("UpdateRollbackFailed", OLD, "rollback failed"), model=True, config=True),
        TRIED3,
        State.FAILED,
        "EndpointUpdateRollbackFailed",
    ),
    "unknown-status-waits": Row(
        seen(endpoint("SomethingNew")), GEN3, State.WAITING, "EndpointNotInService"
    ),
    "in-service-on-desired": Row(
        seen(endpoint("InService")),
        GEN3,
        State.READY,
        "EndpointInService",
        (Action.DELETE_SUPERSEDED,),
    ),
    "in-service-on-desired-already-cleaned-up": Row(
        seen(endpoint("InService")),
        dataclasses.replace(GEN3, superseded_deleted_for=WANT),
        State.READY,
        "EndpointInService",
    ),
    "in-service-on-desired-cleaned-up-for-another-config": Row(
        seen(endpoint("InService")),
        dataclasses.replace(GEN3, superseded_deleted_for=OLD),
        State.READY,
        "EndpointInService",
        (Action.DELETE_SUPERSEDED,),
    ),
    "in-service-on-desired-after-a-rollback": Row(
        # The user reverted to a config that works; the stale FailureReason does not matter.
        seen(endpoint("InService", WANT, "old trouble")),
        FAILED3,
        State.READY,
        "EndpointInService",
        (Action.DELETE_SUPERSEDED,),
    ),
    "in-service-on-other-config": Row(
        seen(endpoint("InService", OLD)), GEN3, State.UPDATING, "UpdatingEndpoint", (C, CC, UE)
    ),
    "in-service-on-other-config-prerequisites-exist": Row(
        seen(endpoint("InService", OLD), model=True, config=True),
        GEN3,
        State.UPDATING,
        "UpdatingEndpoint",
        (UE,),
    ),
    "in-service-other-config-stale-failure-of-another-config": Row(
        seen(endpoint("InService", OLD, "an older update failed"), model=True, config=True),
        History(3, attempted_config="some-other-config", attempted_generation=2),
        State.UPDATING,
        "UpdatingEndpoint",
        (UE,),
    ),
    "attempted-but-no-failure-reason": Row(
        seen(endpoint("InService", OLD), model=True, config=True),
        TRIED3,
        State.UPDATING,
        "UpdatingEndpoint",
        (UE,),
    ),
    "rolled-back": Row(
        seen(endpoint("InService", OLD, "health check failed"), model=True, config=True),
        TRIED3,
        State.ROLLED_BACK,
        "UpdateRolledBack",
        failure_generation=3,
    ),
    "rolled-back-unrecorded-attempt-generation": Row(
        seen(endpoint("InService", OLD, "health check failed")),
        History(5, attempted_config=WANT),
        State.ROLLED_BACK,
        "UpdateRolledBack",
        failure_generation=5,
    ),
    "rolled-back-already-recorded": Row(
        seen(endpoint("InService", OLD, "health check failed"), model=True, config=True),
        FAILED3,
        State.ROLLED_BACK,
        "UpdateRolledBack",
    ),
    "rolled-back-recorded-reason-gone": Row(
        seen(endpoint("InService", OLD), model=True, config=True),
        FAILED3,
        State.ROLLED_BACK,
        "UpdateRolledBack",
    ),
    "rolled-back-new-generation-retries": Row(
        seen(endpoint("InService", OLD, "health check failed"), model=True, config=True),
        NEW_GEN4,
        State.UPDATING,
        "UpdatingEndpoint",
        (UE,),
    ),
    "rolled-back-again-at-new-generation": Row(
        seen(endpoint("InService", OLD, "health check failed again"), model=True, config=True),
        TRIED4,
        State.ROLLED_BACK,
        "UpdateRolledBack",
        failure_generation=4,
    ),
    "failed-on-desired": Row(
        seen(endpoint("Failed", WANT, "image pull failed")),
        TRIED3,
        State.FAILED,
        "EndpointFailed",
        failure_generation=3,
    ),
    "failed-on-desired-no-history": Row(
        seen(endpoint("Failed", WANT, "image pull failed")),
        History(2),
        State.FAILED,
        "EndpointFailed",
        failure_generation=2,
    ),
    "failed-on-desired-already-recorded": Row(
        seen(endpoint("Failed", WANT, "image pull failed")),
        FAILED3,
        State.FAILED,
        "EndpointFailed",
    ),
    "failed-on-desired-new-generation-recreates": Row(
        seen(endpoint("Failed", WANT, "image pull failed")),
        NEW_GEN4,
        State.DELETING,
        "RecreatingFailedEndpoint",
        (DE,),
    ),
    "failed-on-desired-again-at-new-generation": Row(
        seen(endpoint("Failed", WANT, "image pull failed")),
        TRIED4,
        State.FAILED,
        "EndpointFailed",
        failure_generation=4,
    ),
    "failed-on-other-config": Row(
        seen(endpoint("Failed", OLD, "old model crashed")),
        GEN3,
        State.DELETING,
        "RecreatingFailedEndpoint",
        (DE,),
    ),
    "failed-on-other-config-desired-blocked": Row(
        seen(endpoint("Failed", OLD, "old model crashed")),
        FAILED3,
        State.FAILED,
        "EndpointFailed",
    ),
}


@pytest.mark.parametrize("row", list(RECONCILE_ROWS.values()), ids=list(RECONCILE_ROWS))
def test_plan_reconcile(row: Row) -> None:
    plan = plan_reconcile(DESIRED, row.observed, row.history)
    assert (plan.state, plan.reason, plan.actions, plan.failure_generation) == (
        row.state,
        row.reason,
        row.actions,
        row.failure_generation,
    )
    assert plan.message
    if row.observed.endpoint is not None:
        assert row.observed.endpoint.name in plan.message
    if row.reason.startswith("SmokeTestFailed"):
        assert "ModelError 500: boom" in plan.message, "the steady message keeps the cause"


def test_messages_say_what_happened() -> None:
    rolled = plan_reconcile(
        DESIRED, seen(endpoint("InService", OLD, "health check failed")), TRIED3
    )
    assert WANT in rolled.message
    assert OLD in rolled.message
    assert "health check failed" in rolled.message
    assert "change the spec" in rolled.message

    failed = plan_reconcile(DESIRED, seen(endpoint("Failed", WANT)), TRIED3)
    assert "SageMaker gave no FailureReason" in failed.message

    stuck = plan_reconcile(
        DESIRED, seen(endpoint("UpdateRollbackFailed", OLD, "no capacity")), GEN3
    )
    assert "UpdateRollbackFailed" in stuck.message and "no capacity" in stuck.message
    failed = plan_reconcile(DESIRED, seen(endpoint("OutOfService")), GEN3)
    assert "SageMaker gave no FailureReason" in failed.message

    conflict = plan_reconcile(DESIRED, seen(endpoint("InService", owned=False)), GEN3)
    assert "spec.endpoint.name" in conflict.message

    creating = plan_reconcile(DESIRED, seen(None), GEN3)
    assert DESIRED.endpoint.name in creating.message
    assert WANT in creating.message


def test_a_foreign_model_or_config_is_named_and_never_reused() -> None:
    plan = plan_reconcile(DESIRED, foreign(None, config=True), GEN3)
    assert DESIRED.config.name in plan.message
    assert "never reused" in plan.message
    assert plan.actions == ()
    assert plan.settled


RECORDED = Identity("team-a-squad-qa", "us-east-1")


@pytest.mark.parametrize(
    ("recorded_name", "recorded_region", "desired", "changed"),
    [
        pytest.param(None, None, RECORDED, False, id="nothing-recorded-first-pass"),
        pytest.param("team-a-squad-qa", "us-east-1", RECORDED, False, id="unchanged"),
        pytest.param("team-a-squad-qa", None, RECORDED, False, id="region-not-recorded"),
        pytest.param(
            "team-a-squad-qa",
            "us-east-1",
            Identity("chosen-name", "us-east-1"),
            True,
            id="name-set-or-changed",
        ),
        pytest.param(
            "chosen-name", "us-east-1", Identity("team-a-squad-qa", "us-east-1"), True, id="unset"
        ),
        pytest.param(
            "team-a-squad-qa",
            "us-east-1",
            Identity("team-a-squad-qa", "eu-west-1"),
            True,
            id="region-changed",
        ),
        pytest.param(
            "team-a-squad-qa", "us-east-1", Identity("other", "eu-west-1"), True, id="both-changed"
        ),
        pytest.param(
            None, "us-east-1", Identity("team-a-squad-qa", "eu-west-1"), True, id="only-region"
        ),
    ],
)
def test_plan_identity(
    recorded_name: str | None, recorded_region: str | None, desired: Identity, changed: bool
) -> None:
    plan = plan_identity(recorded_name, recorded_region, desired)
    if not changed:
        assert plan is None
        return
    assert plan is not None
    assert (plan.state, plan.reason, plan.actions) == (
        State.CONFLICT,
        "EndpointIdentityChanged",
        (),
    )
    assert plan.settled
    recorded = Identity(recorded_name or desired.name, recorded_region or desired.region)
    for word in (recorded.name, recorded.region, desired.name, desired.region):
        assert word in plan.message
    assert f"deleting this one deletes {recorded.name}" in plan.message


@pytest.mark.parametrize(
    ("state", "settled"),
    [
        (State.READY, True),
        (State.FAILED, True),
        (State.ROLLED_BACK, True),
        (State.CONFLICT, True),
        (State.CREATING, False),
        (State.UPDATING, False),
        (State.WAITING, False),
        (State.DELETING, False),
        (State.DELETED, False),
        (State.SERVING_BUSY, False),
        (State.VERIFYING, False),
        (State.SMOKE_RETRYING, False),
        (State.ROLLING_BACK, False),
    ],
)
def test_settled(state: State, settled: bool) -> None:
    assert Plan(state, "Reason", "message").settled is settled


@pytest.mark.parametrize(
    ("actions", "starts"),
    [
        ((), False),
        ((Action.CREATE_MODEL, Action.CREATE_ENDPOINT_CONFIG, Action.CREATE_ENDPOINT), True),
        ((Action.UPDATE_ENDPOINT,), True),
        ((Action.ROLL_BACK,), True),
        ((Action.DELETE_ENDPOINT,), True),
        ((Action.SMOKE_TEST,), False),
        ((Action.DELETE_SUPERSEDED, Action.SYNC_TAGS), False),
    ],
)
def test_starts_endpoint_work(actions: tuple[Action, ...], starts: bool) -> None:
    assert Plan(State.CREATING, "Reason", "message", actions).starts_endpoint_work is starts


def test_the_table_reaches_every_reconcile_state() -> None:
    assert {row.state for row in RECONCILE_ROWS.values()} >= {
        State.CREATING,
        State.UPDATING,
        State.WAITING,
        State.READY,
        State.SERVING_BUSY,
        State.FAILED,
        State.ROLLED_BACK,
        State.CONFLICT,
        State.DELETING,
        State.VERIFYING,
        State.ROLLING_BACK,
    }


def _record(history: History, plan: Plan) -> History:
    """What the reconciler writes to status after acting on `plan` (lastAttempt, lastFailure)."""
    if any(action in plan.actions for action in (CE, UE)):
        history = dataclasses.replace(
            history, attempted_config=WANT, attempted_generation=history.generation
        )
    if plan.failure_generation is not None:
        history = dataclasses.replace(
            history, failed_config=WANT, failed_generation=plan.failure_generation
        )
    return history


def test_a_rolled_back_update_is_not_retried_until_the_spec_changes() -> None:
    old = endpoint("InService", OLD)
    rolled_back = endpoint("InService", OLD, "ping health check failed")
    history = History(generation=1)
    updates = 0
    recorded = 0

    def step(ep: ObservedEndpoint) -> Plan:
        nonlocal history, updates, recorded
        plan = plan_reconcile(DESIRED, Observed(ep, model_exists=True, config_exists=True), history)
        updates += UE in plan.actions
        recorded += plan.failure_generation is not None
        history = _record(history, plan)
        return plan

    assert step(old).state is State.UPDATING
    assert step(endpoint("Updating", OLD)).state is State.WAITING
    assert step(rolled_back).state is State.ROLLED_BACK
    for _ in range(20):  # the timer keeps firing at the same generation
        plan = step(rolled_back)
        assert (plan.state, plan.actions, plan.failure_generation) == (State.ROLLED_BACK, (), None)
    assert (updates, recorded) == (1, 1)

    history = dataclasses.replace(history, generation=2)  # the user edits the spec
    assert step(rolled_back).state is State.UPDATING
    assert step(endpoint("RollingBack", OLD)).state is State.WAITING
    plan = step(rolled_back)
    assert (plan.state, plan.failure_generation) == (State.ROLLED_BACK, 2)
    for _ in range(5):
        assert step(rolled_back).actions == ()
    assert (updates, recorded) == (2, 2)


def test_a_failed_endpoint_is_recreated_once_per_generation() -> None:
    failed = endpoint("Failed", WANT, "CannotStartContainerError")
    history = History(generation=1)
    plans = []
    for ep in (None, endpoint("Creating"), failed, failed, failed):
        plan = plan_reconcile(DESIRED, Observed(ep, True, True), history)
        history = _record(history, plan)
        plans.append(plan)
    assert [p.state for p in plans] == [
        State.CREATING,
        State.WAITING,
        State.FAILED,
        State.FAILED,
        State.FAILED,
    ]
    assert [p.failure_generation for p in plans] == [None, None, 1, None, None]
    assert sum(len(p.actions) for p in plans[2:]) == 0

    history = dataclasses.replace(history, generation=2)
    plan = plan_reconcile(DESIRED, Observed(failed, True, True), history)
    assert plan.actions == (DE,)
    history = _record(history, plan)
    plan = plan_reconcile(DESIRED, Observed(None, True, True), history)
    assert plan.actions == (CE,)
    history = _record(history, plan)
    plan = plan_reconcile(DESIRED, Observed(failed, True, True), history)
    assert (plan.state, plan.failure_generation) == (State.FAILED, 2)


DELETE_ROWS: dict[str, tuple[ObservedEndpoint | None, State, str, tuple[Action, ...]]] = {
    **{
        f"transitional-{status}": (endpoint(status), State.DELETING, f"Endpoint{status}", ())
        for status in sorted(TRANSITIONAL)
    },
    "in-service": (endpoint("InService"), State.DELETING, "DeletingEndpoint", (DE,)),
    "failed": (endpoint("Failed", failure="x"), State.DELETING, "DeletingEndpoint", (DE,)),
    "out-of-service": (endpoint("OutOfService"), State.DELETING, "DeletingEndpoint", (DE,)),
    "update-rollback-failed": (
        endpoint("UpdateRollbackFailed"),
        State.DELETING,
        "DeletingEndpoint",
        (DE,),
    ),
    "absent": (None, State.DELETED, "Deleted", (Action.DELETE_OWNED,)),
    "not-owned": (
        endpoint("InService", owned=False),
        State.DELETED,
        "Deleted",
        (Action.DELETE_OWNED,),
    ),
    "not-owned-creating": (
        endpoint("Creating", owned=False),
        State.DELETED,
        "Deleted",
        (Action.DELETE_OWNED,),
    ),
}


@pytest.mark.parametrize(
    ("observed", "state", "reason", "actions"), list(DELETE_ROWS.values()), ids=list(DELETE_ROWS)
)
def test_plan_delete(
    observed: ObservedEndpoint | None, state: State, reason: str, actions: tuple[Action, ...]
) -> None:
    plan = plan_delete(observed)
    assert (plan.state, plan.reason, plan.actions) == (state, reason, actions)
    assert DE not in actions or (observed is not None and observed.owned), (
        "never delete an endpoint this resource does not own"
    )
    assert not plan.settled


def test_tag_delta_sets_changed_tags_and_removes_only_previously_applied_ones() -> None:
    desired = _desired_with_tags({"team": "search", "new": "1"})
    endpoint = ObservedEndpoint(
        name="e",
        arn="arn",
        status="InService",
        config_name=desired.config.name,
        tags={**DESIRED.endpoint.tags, "team": "qa", "old": "x", "other-tool": "keep"},
    )
    history = History(generation=2, applied_tags=("team", "old"))
    to_set, to_remove = tag_delta(desired, endpoint, history)
    assert to_set == {"team": "search", "new": "1"}
    assert to_remove == ["old"]
    plan = plan_reconcile(desired, Observed(endpoint=endpoint), history)
    assert Action.SYNC_TAGS in plan.actions


def test_no_tag_action_when_tags_match() -> None:
    desired = _desired_with_tags({"team": "qa"})
    endpoint = ObservedEndpoint(
        name="e",
        arn="arn",
        status="InService",
        config_name=desired.config.name,
        tags=dict(desired.endpoint.tags),
    )
    plan = plan_reconcile(desired, Observed(endpoint=endpoint), History(generation=1))
    assert Action.SYNC_TAGS not in plan.actions


BEFORE = History(generation=2, applied_tags=("cost", "team"))
NOW = {"team": "search"}
# plan -> the user tag keys recorded as applied after it
APPLIED_ROWS: dict[str, tuple[Plan, tuple[str, ...]]] = {
    "ready-synced": (Plan(State.READY, "R", "m", (Action.SYNC_TAGS,)), ("team",)),
    "ready-nothing-to-sync": (Plan(State.READY, "R", "m"), ("team",)),
    "created-with-the-tags": (Plan(State.CREATING, "R", "m", (C, CC, CE)), ("team",)),
    # The removed key must stay recorded until a Ready pass removes it from the endpoint.
    "updating": (Plan(State.UPDATING, "R", "m", (C, CC, UE)), ("cost", "team")),
    "waiting": (Plan(State.WAITING, "R", "m"), ("cost", "team")),
    "serving-busy": (Plan(State.SERVING_BUSY, "R", "m"), ("cost", "team")),
    "rolled-back": (Plan(State.ROLLED_BACK, "R", "m"), ("cost", "team")),
    "failed": (Plan(State.FAILED, "R", "m"), ("cost", "team")),
    "conflict": (Plan(State.CONFLICT, "R", "m"), ("cost", "team")),
}


@pytest.mark.parametrize(("plan", "recorded"), list(APPLIED_ROWS.values()), ids=list(APPLIED_ROWS))
def test_applied_tags_are_recorded_only_once_on_the_endpoint(
    plan: Plan, recorded: tuple[str, ...]
) -> None:
    assert applied_tags(plan, NOW, BEFORE) == recorded


def test_a_tag_removed_with_an_update_is_removed_once_in_service() -> None:
    """The story behind the table: update and tag removal in one change."""
    desired = _desired_with_tags(NOW)
    old_tags = {**DESIRED.endpoint.tags, "team": "qa", "cost": "1"}
    updating = ObservedEndpoint("e", "arn", "InService", OLD, tags=old_tags)
    plan = plan_reconcile(
        desired, Observed(updating, model_exists=True, config_exists=True), BEFORE
    )
    assert plan.actions == (UE,)
    history = dataclasses.replace(BEFORE, applied_tags=applied_tags(plan, NOW, BEFORE))

    in_service = dataclasses.replace(updating, config_name=desired.config.name)
    plan = plan_reconcile(desired, Observed(in_service), history)
    assert Action.SYNC_TAGS in plan.actions
    assert tag_delta(desired, in_service, history) == ({"team": "search"}, ["cost"])


# -- clean-up: what is deleted ------------------------------------------------------------------

SEGMENT = "squad-qa-uid-1"
PKG = "s3://old-bucket/old/team-a/squad-qa-uid-1/sha256-aa/model.tar.gz"


@pytest.mark.parametrize(
    ("current", "recorded", "places"),
    [
        (("b", "p/team-a/squad-qa-uid-1/"), [], [("b", "p/team-a/squad-qa-uid-1/")]),
        (None, [None], []),
        (
            ("b", "p/team-a/squad-qa-uid-1/"),
            [PKG, PKG],
            [("b", "p/team-a/squad-qa-uid-1/"), ("old-bucket", "old/team-a/squad-qa-uid-1/")],
        ),
        # Not under this owner's segment: never listed (only its exact URI would be deleted).
        (None, ["s3://b/p/team-a/other-uid-2/sha256-aa/model.tar.gz"], []),
        (None, ["s3://b/model.tar.gz", "file:///x/y/z", ""], []),
    ],
)
def test_package_prefixes(
    current: tuple[str, str] | None,
    recorded: list[str | None],
    places: list[tuple[str, str]],
) -> None:
    assert package_prefixes(current, recorded, SEGMENT) == places


@pytest.mark.parametrize(
    ("listed", "recorded", "keep", "doomed"),
    [
        ([], [], None, []),
        ([("b", "k1"), ("b", "k2")], [], "s3://b/k2", [("b", "k1")]),
        ([("b", "k1")], [PKG, None], None, [("b", "k1"), ("old-bucket", PKG[16:])]),
        ([], ["s3://b/k1"], "s3://b/k1", []),
        ([("b", "k1")], ["s3://b/k1"], None, [("b", "k1")]),
    ],
)
def test_packages_to_delete(
    listed: list[tuple[str, str]],
    recorded: list[str | None],
    keep: str | None,
    doomed: list[tuple[str, str]],
) -> None:
    assert packages_to_delete(listed, recorded, keep) == doomed


D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
BAKED = {"repository": "qa", "digest": D1, "tag": "pkg-111111111111", "pushed": True}


@pytest.mark.parametrize(
    ("recorded", "image"),
    [
        (BAKED, PushedImage("qa", D1)),
        ({**BAKED, "pushed": False}, None),  # s3 mode: the shared serving image
        ({k: v for k, v in BAKED.items() if k != "pushed"}, None),  # recorded before pushes were
        ({**BAKED, "tag": "latest"}, None),
        ({**BAKED, "repository": None}, None),
        ({**BAKED, "digest": None}, None),
        ({}, None),
    ],
)
def test_pushed_image(recorded: dict[str, object], image: PushedImage | None) -> None:
    assert pushed_image(recorded) == image


@pytest.mark.parametrize(
    ("previous", "current", "superseded"),
    [
        (BAKED, {**BAKED, "digest": D2}, PushedImage("qa", D1)),
        (BAKED, BAKED, None),
        (BAKED, {"digest": D1, "pushed": False}, None),  # same image, now shared: keep it
        (BAKED, {"digest": None, "pushed": False}, PushedImage("qa", D1)),
        ({**BAKED, "pushed": False}, {**BAKED, "digest": D2}, None),
    ],
)
def test_superseded_image(
    previous: dict[str, object], current: dict[str, object], superseded: PushedImage | None
) -> None:
    assert superseded_image(previous, current) == superseded


@pytest.mark.parametrize(
    ("superseded", "current", "finalizing", "doomed"),
    [
        ([BAKED], {**BAKED, "digest": D2}, False, [PushedImage("qa", D1)]),
        ([BAKED], {**BAKED, "digest": D2}, True, [PushedImage("qa", D1), PushedImage("qa", D2)]),
        ([BAKED], BAKED, False, []),  # reverted to it: it is served again
        ([BAKED, BAKED], BAKED, True, [PushedImage("qa", D1)]),
        ([], {**BAKED, "pushed": False}, True, []),
    ],
)
def test_images_to_delete(
    superseded: list[dict[str, object]],
    current: dict[str, object],
    finalizing: bool,
    doomed: list[PushedImage],
) -> None:
    assert images_to_delete(superseded, current, finalizing=finalizing) == doomed
