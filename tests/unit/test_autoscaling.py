"""autoscaling.py and the spec's endpoint.autoscaling: the scalable target and target-tracking
policy the spec asks for, what a sync calls, and UpdateEndpoint keeping the autoscaled count."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.autoscaling import (
    ObservedScaling,
    ScalingAction,
    desired_scaling,
    plan_scaling_sync,
    scaling_status,
)
from qa_operator.capacity import capacity_change
from qa_operator.endpoint_options import update_endpoint_options
from qa_operator.spec import Autoscaling, InstanceCompute, SpecError, parse_spec

SCALING = {"minInstances": 1, "maxInstances": 4, "targetInvocationsPerInstance": 70}


def body(**endpoint: Any) -> dict[str, Any]:
    return {
        "model": {"huggingface": {"id": "deepset/roberta-base-squad2"}},
        "endpoint": {"instanceType": "ml.m5.large", **endpoint},
    }


def test_autoscaling_parses_with_default_cooldowns() -> None:
    spec = parse_spec(body(instanceCount=2, autoscaling=SCALING))
    assert spec.endpoint.autoscaling == Autoscaling(1, 4, 70, 300, 60)


@pytest.mark.parametrize(
    ("endpoint", "field", "message"),
    [
        ({"autoscaling": {**SCALING, "minInstances": 5}},
         "endpoint.autoscaling.maxInstances", "below"),
        ({"autoscaling": {**SCALING, "minInstances": 2}}, "endpoint.instanceCount", "within"),
        ({"instanceCount": 5, "autoscaling": SCALING}, "endpoint.instanceCount", "within"),
        (
            {"autoscaling": {"minInstances": 1, "maxInstances": 2}},
            "endpoint.autoscaling.targetInvocationsPerInstance",
            "is required",
        ),
        (
            {"instanceType": None, "serverless": {"memorySizeInMB": 2048, "maxConcurrency": 2},
             "autoscaling": SCALING},
            "endpoint.autoscaling",
            "needs instances",
        ),
    ],
)  # fmt: skip
def test_invalid_autoscaling_names_its_field(
    endpoint: dict[str, Any], field: str, message: str
) -> None:
    raw = body(**endpoint)
    raw["endpoint"] = {k: v for k, v in raw["endpoint"].items() if v is not None}
    with pytest.raises(SpecError) as raised:
        parse_spec(raw)
    assert raised.value.field_path == field
    assert message in raised.value.detail


TARGET = desired_scaling("ep", Autoscaling(1, 4, 70, 300, 60))
METRIC = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
POLICY = {
    "TargetValue": 70.0,
    "PredefinedMetricSpecification": METRIC,
    "ScaleInCooldown": 300,
    "ScaleOutCooldown": 60,
}  # fmt: skip


def test_the_target_and_policy_in_the_api_shapes() -> None:
    assert TARGET is not None
    assert (TARGET.resource_id, TARGET.min_capacity, TARGET.max_capacity) == (
        "endpoint/ep/variant/AllTraffic",
        1,
        4,
    )
    assert TARGET.policy == POLICY
    assert desired_scaling("ep", None) is None


REGISTER, PUT, DEREGISTER = (
    ScalingAction.REGISTER,
    ScalingAction.PUT_POLICY,
    ScalingAction.DEREGISTER,
)
IN_LINE = ObservedScaling(1, 4, {**POLICY, "DisableScaleIn": False})


@pytest.mark.parametrize(
    ("desired", "observed", "recorded", "expected"),
    [
        pytest.param(TARGET, ObservedScaling(), False, (REGISTER, PUT), id="new"),
        pytest.param(TARGET, IN_LINE, True, (), id="in-line"),
        pytest.param(TARGET, ObservedScaling(1, 8, POLICY), True, (REGISTER,), id="range-drift"),
        pytest.param(TARGET, ObservedScaling(1, 4, None), True, (PUT,), id="policy-deleted"),
        pytest.param(
            TARGET,
            ObservedScaling(1, 4, {**POLICY, "TargetValue": 10.0}),
            True,
            (PUT,),
            id="policy-drift",
        ),
        pytest.param(None, IN_LINE, True, (DEREGISTER,), id="removed-from-spec"),
        pytest.param(None, IN_LINE, False, (), id="someone-elses"),
        pytest.param(None, ObservedScaling(), True, (), id="already-gone"),
    ],
)
def test_sync_calls(
    desired: Any, observed: ObservedScaling, recorded: bool, expected: tuple[ScalingAction, ...]
) -> None:
    assert plan_scaling_sync(desired, observed, recorded=recorded) == expected


def test_status_records_the_target_and_forgets_it_once_removed() -> None:
    assert scaling_status(TARGET, False)["autoscaling"]["resourceId"] == (
        "endpoint/ep/variant/AllTraffic"
    )
    assert scaling_status(None, True) == {"autoscaling": None}
    assert scaling_status(None, False) == {}


def test_with_autoscaling_updates_keep_the_count_and_capacity_leaves_it_alone() -> None:
    scaled = parse_spec(body(autoscaling=SCALING)).endpoint
    assert update_endpoint_options(scaled) == {
        "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DataCaptureConfig"}],
    }
    assert update_endpoint_options(parse_spec(body()).endpoint) == {}
    compute = InstanceCompute("ml.m5.large", 1)
    assert capacity_change(compute, {"AllTraffic": 3}, autoscaled=True) is None
    assert capacity_change(compute, {"AllTraffic": 3}) is not None
