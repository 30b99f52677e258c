"""capacity.py: a count change alone is set in place, on a Ready endpoint only; the count is not
part of the EndpointConfig's name."""

from __future__ import annotations

import pytest

from qa_operator.capacity import (
    CapacityChange,
    capacity_change,
    desired_instance_count,
    plan_scaling,
)
from qa_operator.desired import Artifacts, Owner, desired_state
from qa_operator.plan import Plan, State
from qa_operator.spec import InstanceCompute, ServerlessCompute, parse_spec

INSTANCES_2 = InstanceCompute("ml.m5.large", 2)


@pytest.mark.parametrize(
    ("compute", "counts", "expected"),
    [
        pytest.param(INSTANCES_2, {"AllTraffic": 1}, CapacityChange("AllTraffic", 2, 1), id="up"),
        pytest.param(
            InstanceCompute("ml.m5.large", 1),
            {"AllTraffic": 3},
            CapacityChange("AllTraffic", 1, 3),
            id="drift-down",
        ),
        pytest.param(INSTANCES_2, {"AllTraffic": 2}, None, id="already"),
        pytest.param(INSTANCES_2, None, None, id="not-observed"),
        pytest.param(INSTANCES_2, {}, None, id="no-counts"),
        pytest.param(INSTANCES_2, {"Other": 1}, None, id="another-variant"),
        pytest.param(ServerlessCompute(2048, 5), {"AllTraffic": 1}, None, id="serverless"),
    ],
)
def test_capacity_change(
    compute: InstanceCompute | ServerlessCompute,
    counts: dict[str, int] | None,
    expected: CapacityChange | None,
) -> None:
    assert capacity_change(compute, counts) == expected


READY = Plan(State.READY, "EndpointInService", "ready")
CHANGE = CapacityChange("AllTraffic", 3, 1)


@pytest.mark.parametrize(
    ("plan", "change", "state", "reason"),
    [
        pytest.param(READY, CHANGE, State.SERVING_BUSY, "ScalingEndpoint", id="ready-scales"),
        pytest.param(READY, None, State.READY, "EndpointInService", id="nothing-to-do"),
        pytest.param(
            Plan(State.UPDATING, "UpdatingEndpoint", "x"),
            CHANGE,
            State.UPDATING,
            "UpdatingEndpoint",
            id="new-config-first",
        ),
        pytest.param(
            Plan(State.VERIFYING, "SmokeTesting", "x"),
            CHANGE,
            State.VERIFYING,
            "SmokeTesting",
            id="smoke-test-first",
        ),
        pytest.param(
            Plan(State.WAITING, "EndpointUpdating", "x"),
            CHANGE,
            State.WAITING,
            "EndpointUpdating",
            id="busy-waits",
        ),
    ],
)
def test_only_a_ready_endpoint_is_scaled(
    plan: Plan, change: CapacityChange | None, state: State, reason: str
) -> None:
    scaled = plan_scaling(plan, change, "ep")
    assert (scaled.state, scaled.reason) == (state, reason)
    if reason == "ScalingEndpoint":
        assert "from 1 to 3" in scaled.message and scaled.actions == ()


def test_status_shows_the_count_asked_for_else_the_observed_one() -> None:
    assert desired_instance_count({"AllTraffic": 1}, CHANGE) == {"desiredInstanceCount": 3}
    assert desired_instance_count({"AllTraffic": 2}, None) == {"desiredInstanceCount": 2}
    assert desired_instance_count(None, None) == {}


def test_a_count_change_keeps_the_model_and_config_names() -> None:
    owner = Owner("ns", "qa", "uid-1")
    artifacts = Artifacts("sha256:" + "cd" * 32, "img@sha256:" + "ef" * 32, "s3://b/k")

    def names(count: int, instance_type: str = "ml.m5.large") -> tuple[str, str, int]:
        spec = parse_spec(
            {
                "model": {"s3": {"uri": "s3://bucket/m/"}},
                "endpoint": {"instanceType": instance_type, "instanceCount": count},
            }
        )
        state = desired_state(spec, owner, artifacts, execution_role_arn="arn:aws:iam::1:role/r")
        assert isinstance(state.config.compute, InstanceCompute)
        return state.model.name, state.config.name, state.config.compute.instance_count

    assert names(1)[:2] == names(4)[:2]
    assert names(4)[2] == 4, "a new config is created with the spec's count"
    assert names(1, "ml.c5.xlarge")[1] != names(1)[1]
