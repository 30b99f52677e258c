"""Pure: the endpoint variant's autoscaling (Application Auto Scaling), as the spec wants it.

A scalable target on the variant's DesiredInstanceCount (MinCapacity, MaxCapacity) and one
target-tracking policy on SageMakerVariantInvocationsPerInstance. Each pass on a serving endpoint
compares them with what Application Auto Scaling holds and repairs the difference; a target the
operator registered is deregistered when the spec drops autoscaling, and before the endpoint is
deleted. While autoscaling is on, the autoscaler owns the count: UpdateEndpoint retains the
variant's count (RetainAllVariantProperties) and capacity.py leaves it alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qa_operator.desired import VARIANT_NAME
from qa_operator.spec import Autoscaling

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
POLICY_NAME = "qa-operator-invocations-per-instance"


@dataclass(frozen=True)
class ScalingTarget:
    resource_id: str
    min_capacity: int
    max_capacity: int
    policy: Mapping[str, Any]  # TargetTrackingScalingPolicyConfiguration
    policy_name: str = POLICY_NAME


@dataclass(frozen=True)
class ObservedScaling:
    """What Application Auto Scaling holds for the variant: no target gives min/max None."""

    min_capacity: int | None = None
    max_capacity: int | None = None
    policy: Mapping[str, Any] | None = None  # our policy's configuration, if it exists
    other_policies: tuple[str, ...] = field(default_factory=tuple)

    @property
    def registered(self) -> bool:
        return self.min_capacity is not None


class ScalingAction(enum.Enum):
    REGISTER = "RegisterScalableTarget"
    PUT_POLICY = "PutScalingPolicy"
    DEREGISTER = "DeregisterScalableTarget"


def resource_id(endpoint: str, variant: str = VARIANT_NAME) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def desired_scaling(endpoint: str, autoscaling: Autoscaling | None) -> ScalingTarget | None:
    if autoscaling is None:
        return None
    return ScalingTarget(
        resource_id=resource_id(endpoint),
        min_capacity=autoscaling.min_instances,
        max_capacity=autoscaling.max_instances,
        policy={
            "TargetValue": float(autoscaling.target_invocations_per_instance),
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleInCooldown": autoscaling.scale_in_cooldown_seconds,
            "ScaleOutCooldown": autoscaling.scale_out_cooldown_seconds,
        },
    )


def _policy_matches(observed: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Only the fields the operator sets count (AWS adds others, such as DisableScaleIn)."""
    if observed is None:
        return False
    return all(
        (float(observed.get(k, -1)) == v if k == "TargetValue" else observed.get(k) == v)
        for k, v in wanted.items()
    )


def plan_scaling_sync(
    desired: ScalingTarget | None, observed: ObservedScaling, *, recorded: bool
) -> tuple[ScalingAction, ...]:
    """What to call so that Application Auto Scaling holds the desired target and policy. A
    target is deregistered only when this resource recorded registering it (status.autoscaling):
    one somebody else put on the endpoint is left alone."""
    if desired is None:
        return (ScalingAction.DEREGISTER,) if recorded and observed.registered else ()
    actions = []
    if (observed.min_capacity, observed.max_capacity) != (
        desired.min_capacity,
        desired.max_capacity,
    ):
        actions.append(ScalingAction.REGISTER)
    if not _policy_matches(observed.policy, desired.policy):
        actions.append(ScalingAction.PUT_POLICY)
    return tuple(actions)


def scaling_status(desired: ScalingTarget | None, recorded: bool) -> dict[str, Any]:
    """The status patch for `status.autoscaling` after the sync."""
    if desired is None:
        return {"autoscaling": None} if recorded else {}
    return {
        "autoscaling": {
            "resourceId": desired.resource_id,
            "minInstances": desired.min_capacity,
            "maxInstances": desired.max_capacity,
            "policyName": desired.policy_name,
        }
    }
