"""UpdateEndpoint's DeploymentConfig as far as an update's outcome shows it (SageMaker API
reference, UpdateEndpoint and DescribeEndpoint; "Deployment guardrails").

moto 5.2 has no UpdateEndpoint; sagemaker.py adds it and calls `check()` and `alarm_failure()`:
- a RollingUpdatePolicy for a config with a serverless variant is refused (ValidationException,
  our wording: rolling deployments need instances);
- DescribeEndpoint returns the update's DeploymentConfig as `LastDeploymentConfig`;
- CloudWatch alarms: `set_alarm(name, in_alarm=True)` puts an alarm in ALARM (no CloudWatch
  here). An update whose AutoRollbackConfiguration names an alarm in ALARM rolls back: Updating ->
  RollingBack -> InService on the old config, with a FailureReason naming the alarm(s) (our
  wording). Traffic shifting itself (canary, linear, batches, waits) is not simulated: the
  update's Updating phase stands for the whole deployment.
"""

from __future__ import annotations

from typing import Any

from moto.sagemaker.exceptions import ValidationError

from .controls import CONTROLS

_alarms_in_alarm: set[str] = set()


def set_alarm(name: str, *, in_alarm: bool = True) -> None:
    with CONTROLS.lock:
        if in_alarm:
            _alarms_in_alarm.add(name)
        else:
            _alarms_in_alarm.discard(name)


def reset() -> None:
    with CONTROLS.lock:
        _alarms_in_alarm.clear()


def check(deployment_config: dict[str, Any] | None, variants: list[dict[str, Any]]) -> None:
    rolling = bool(deployment_config) and "RollingUpdatePolicy" in (deployment_config or {})
    if rolling and any("ServerlessConfig" in v for v in variants):
        raise ValidationError(
            message="RollingUpdatePolicy is not supported for an endpoint configuration "
            "with a serverless production variant."
        )


def alarm_failure(deployment_config: dict[str, Any] | None) -> str | None:
    """The FailureReason of a roll back caused by the deployment's alarms, or None. Call with
    CONTROLS.lock held."""
    rollback = (deployment_config or {}).get("AutoRollbackConfiguration") or {}
    fired = [
        a["AlarmName"] for a in rollback.get("Alarms", []) if a["AlarmName"] in _alarms_in_alarm
    ]
    if not fired:
        return None
    return (
        "The update was rolled back because CloudWatch alarm(s) "
        f"{', '.join(fired)} went into ALARM state during the deployment."
    )
