"""Pure: `spec.endpoint.deployment` as UpdateEndpoint's DeploymentConfig (SageMaker's deployment
guardrails): blue/green with all-at-once, canary or linear traffic shifting, or a rolling update,
with automatic roll back when a CloudWatch alarm fires. A roll back is reported like any other
(Degraded/UpdateRolledBack with SageMaker's FailureReason, which names the alarm)."""

from __future__ import annotations

from typing import Any

from qa_operator.spec import Deployment

TRAFFIC_TYPES = {"AllAtOnce": "ALL_AT_ONCE", "Canary": "CANARY", "Linear": "LINEAR"}


def _percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": value}


def deployment_config(deployment: Deployment | None) -> dict[str, Any]:
    """The DeploymentConfig parameter of UpdateEndpoint, or nothing (SageMaker's default:
    blue/green, all at once)."""
    if deployment is None:
        return {}
    config: dict[str, Any] = {}
    if deployment.strategy == "Rolling":
        assert deployment.step_percent is not None
        rolling: dict[str, Any] = {
            "MaximumBatchSize": _percent(deployment.step_percent),
            "WaitIntervalInSeconds": deployment.wait_seconds,
        }
        if deployment.rollback_batch_percent is not None:
            rolling["RollbackMaximumBatchSize"] = _percent(deployment.rollback_batch_percent)
        config["RollingUpdatePolicy"] = rolling
    else:
        routing: dict[str, Any] = {
            "Type": TRAFFIC_TYPES[deployment.strategy],
            "WaitIntervalInSeconds": deployment.wait_seconds,
        }
        if deployment.strategy == "Canary":
            assert deployment.step_percent is not None
            routing["CanarySize"] = _percent(deployment.step_percent)
        elif deployment.strategy == "Linear":
            assert deployment.step_percent is not None
            routing["LinearStepSize"] = _percent(deployment.step_percent)
        blue_green: dict[str, Any] = {"TrafficRoutingConfiguration": routing}
        if deployment.termination_wait_seconds is not None:
            blue_green["TerminationWaitInSeconds"] = deployment.termination_wait_seconds
        config["BlueGreenUpdatePolicy"] = blue_green
    if deployment.rollback_alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": name} for name in deployment.rollback_alarms]
        }
    return {"DeploymentConfig": config}
