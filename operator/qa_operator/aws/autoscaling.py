"""Application Auto Scaling adapter for an endpoint variant's instance count."""

from __future__ import annotations

from typing import Any

from qa_operator.autoscaling import (
    POLICY_NAME,
    SCALABLE_DIMENSION,
    SERVICE_NAMESPACE,
    ObservedScaling,
    ScalingTarget,
)
from qa_operator.aws.errors import aws_call

_KEYS = {"ServiceNamespace": SERVICE_NAMESPACE, "ScalableDimension": SCALABLE_DIMENSION}


class AutoscalingGateway:
    def __init__(self, client: Any) -> None:
        self._client = client

    def observe(self, resource_id: str) -> ObservedScaling:
        targets = aws_call(
            "DescribeScalableTargets",
            lambda: self._client.describe_scalable_targets(
                ServiceNamespace=SERVICE_NAMESPACE,
                ResourceIds=[resource_id],
                ScalableDimension=SCALABLE_DIMENSION,
            ),
        ).get("ScalableTargets", [])
        if not targets:
            return ObservedScaling()
        policies = aws_call(
            "DescribeScalingPolicies",
            lambda: self._client.describe_scaling_policies(ResourceId=resource_id, **_KEYS),
        ).get("ScalingPolicies", [])
        ours = [p for p in policies if p["PolicyName"] == POLICY_NAME]
        return ObservedScaling(
            min_capacity=targets[0]["MinCapacity"],
            max_capacity=targets[0]["MaxCapacity"],
            policy=ours[0].get("TargetTrackingScalingPolicyConfiguration") if ours else None,
            other_policies=tuple(p["PolicyName"] for p in policies if p not in ours),
        )

    def register(self, target: ScalingTarget) -> None:
        aws_call(
            "RegisterScalableTarget",
            lambda: self._client.register_scalable_target(
                ResourceId=target.resource_id,
                MinCapacity=target.min_capacity,
                MaxCapacity=target.max_capacity,
                **_KEYS,
            ),
        )

    def put_policy(self, target: ScalingTarget) -> None:
        aws_call(
            "PutScalingPolicy",
            lambda: self._client.put_scaling_policy(
                PolicyName=target.policy_name,
                ResourceId=target.resource_id,
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration=dict(target.policy),
                **_KEYS,
            ),
        )

    def deregister(self, resource_id: str) -> bool:
        """Remove the target and the operator's policy; False when there was none."""
        observed = self.observe(resource_id)
        if not observed.registered:
            return False
        if observed.policy is not None:
            aws_call(
                "DeleteScalingPolicy",
                lambda: self._client.delete_scaling_policy(
                    PolicyName=POLICY_NAME, ResourceId=resource_id, **_KEYS
                ),
            )
        aws_call(
            "DeregisterScalableTarget",
            lambda: self._client.deregister_scalable_target(ResourceId=resource_id, **_KEYS),
        )
        return True
