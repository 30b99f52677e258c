"""endpoint.deployment: parsed with SageMaker's exclusions, and mapped to UpdateEndpoint's
DeploymentConfig (rollout.py)."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.endpoint_options import update_endpoint_options
from qa_operator.rollout import deployment_config
from qa_operator.spec import Deployment, SpecError, parse_spec

ALARMS = ["qa-5xx", "qa-latency"]


def body(deployment: dict[str, Any], **endpoint: Any) -> dict[str, Any]:
    return {
        "model": {"huggingface": {"id": "deepset/roberta-base-squad2"}},
        "endpoint": {"instanceType": "ml.m5.large", **endpoint, "deployment": deployment},
    }


def percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": value}


CASES = [
    (
        "canary",
        {"strategy": "Canary", "canary": {"percent": 10, "waitSeconds": 300},
         "terminationWaitSeconds": 120, "rollbackAlarms": ALARMS},
        Deployment("Canary", 10, 300, None, 120, tuple(ALARMS)),
        {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY", "WaitIntervalInSeconds": 300, "CanarySize": percent(10),
                },
                "TerminationWaitInSeconds": 120,
            },
            "AutoRollbackConfiguration": {
                "Alarms": [{"AlarmName": "qa-5xx"}, {"AlarmName": "qa-latency"}]
            },
        },
    ),
    (
        "linear",
        {"strategy": "Linear", "linear": {"stepPercent": 25, "waitSeconds": 60}},
        Deployment("Linear", 25, 60),
        {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {
            "Type": "LINEAR", "WaitIntervalInSeconds": 60, "LinearStepSize": percent(25)}}},
    ),
    (
        "all-at-once",
        {"strategy": "AllAtOnce", "rollbackAlarms": ["qa-5xx"]},
        Deployment("AllAtOnce", rollback_alarms=("qa-5xx",)),
        {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "qa-5xx"}]},
        },
    ),
    (
        "rolling",
        {"strategy": "Rolling",
         "rolling": {"batchPercent": 20, "waitSeconds": 30, "rollbackBatchPercent": 50}},
        Deployment("Rolling", 20, 30, 50),
        {"RollingUpdatePolicy": {"MaximumBatchSize": percent(20), "WaitIntervalInSeconds": 30,
                                 "RollbackMaximumBatchSize": percent(50)}},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "parsed", "config"), [pytest.param(r, p, c, id=case) for case, r, p, c in CASES]
)
def test_strategies_map_to_the_deployment_config(
    raw: dict[str, Any], parsed: Deployment, config: dict[str, Any]
) -> None:
    spec = parse_spec(body(raw))
    assert spec.endpoint.deployment == parsed
    assert deployment_config(spec.endpoint.deployment) == {"DeploymentConfig": config}
    assert update_endpoint_options(spec.endpoint) == {"DeploymentConfig": config}


def test_no_deployment_leaves_sagemakers_default() -> None:
    assert deployment_config(None) == {}


SERVERLESS = {"instanceType": None, "serverless": {"memorySizeInMB": 2048, "maxConcurrency": 2}}
INVALID = [
    ("unknown strategy", {"strategy": "Shadow"}, {}, "endpoint.deployment.strategy"),
    ("canary without its block", {"strategy": "Canary"}, {}, "endpoint.deployment.canary"),
    ("block of another strategy",
     {"strategy": "Canary", "canary": {"percent": 5}, "linear": {"stepPercent": 10}}, {},
     "endpoint.deployment.linear"),
    ("canary above half", {"strategy": "Canary", "canary": {"percent": 60}}, {},
     "endpoint.deployment.canary.percent"),
    ("linear step too small", {"strategy": "Linear", "linear": {"stepPercent": 5}}, {},
     "endpoint.deployment.linear.stepPercent"),
    ("rolling serverless", {"strategy": "Rolling", "rolling": {"batchPercent": 10}}, SERVERLESS,
     "endpoint.deployment.strategy"),
    ("rolling with termination wait",
     {"strategy": "Rolling", "rolling": {"batchPercent": 10}, "terminationWaitSeconds": 5}, {},
     "endpoint.deployment.terminationWaitSeconds"),
    ("eleven alarms", {"strategy": "AllAtOnce", "rollbackAlarms": [f"a{i}" for i in range(11)]},
     {}, "endpoint.deployment.rollbackAlarms"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("deployment", "endpoint", "field"),
    [pytest.param(d, e, f, id=case) for case, d, e, f in INVALID],
)
def test_invalid_deployments_name_their_field(
    deployment: dict[str, Any], endpoint: dict[str, Any], field: str
) -> None:
    raw = body(deployment, **endpoint)
    raw["endpoint"] = {k: v for k, v in raw["endpoint"].items() if v is not None}
    with pytest.raises(SpecError) as raised:
        parse_spec(raw)
    assert raised.value.field_path == field
