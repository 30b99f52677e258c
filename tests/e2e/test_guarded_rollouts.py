"""Guarded rollouts end to end: a canary update goes to SageMaker as UpdateEndpoint's
DeploymentConfig and reaches Ready; an alarm that fires during the deployment rolls it back, and
the resource says which alarm; SageMaker's exclusions are refused at apply."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.moto_ext.deployment import set_alarm
from support.e2e import (
    apply,
    assert_rejected_at_apply,
    condition,
    deployment,
    endpoint_observations,
    get,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

CANARY = {
    "strategy": "Canary",
    "canary": {"percent": 10, "waitSeconds": 300},
    "terminationWaitSeconds": 60,
    "rollbackAlarms": ["qa-5xx", "qa-latency"],
}


def test_a_canary_update_carries_its_deployment_config_and_reaches_ready(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = deployment("canary", s3_model_uri, endpoint={"deployment": CANARY})
    operator.start()
    apply(kube_cluster, namespace, body)
    first = wait_ready(kube_cluster, namespace, "canary", operator)

    body["spec"]["endpoint"]["environment"] = {"LOG_LEVEL": "debug"}
    apply(kube_cluster, namespace, body)
    wait_ready(kube_cluster, namespace, "canary", operator, generation=2)
    endpoint = aws.client("sagemaker").describe_endpoint(
        EndpointName=first["status"]["endpointName"]
    )
    assert endpoint["EndpointConfigName"] != first["status"]["endpointConfigName"]
    assert endpoint["LastDeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 60,
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": "qa-5xx"}, {"AlarmName": "qa-latency"}]
        },
    }


def test_an_alarm_rollback_is_degraded_naming_the_alarm_and_not_retried(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = deployment("guarded", s3_model_uri, endpoint={"deployment": CANARY})
    operator.start()
    apply(kube_cluster, namespace, body)
    first = wait_ready(kube_cluster, namespace, "guarded", operator)
    set_alarm("qa-latency")

    body["spec"]["endpoint"]["environment"] = {"LOG_LEVEL": "debug"}
    apply(kube_cluster, namespace, body)
    degraded = wait_degraded(kube_cluster, namespace, "guarded", operator)
    reported = condition(degraded, "Degraded")
    assert reported["reason"] == "UpdateRolledBack"
    assert "qa-latency" in reported["message"] and "ALARM" in reported["message"]
    assert "qa-5xx" not in reported["message"]
    sm = aws.client("sagemaker")
    name = first["status"]["endpointName"]
    assert (
        sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        == (first["status"]["endpointConfigName"])
    )
    updates = aws.calls("sagemaker", "UpdateEndpoint")
    describes = endpoint_observations(aws)
    wait_for(
        "more passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("sagemaker", "UpdateEndpoint") == updates, "the rolled back config was retried"
    assert (get(kube_cluster, namespace, "guarded") or {})["status"]["phase"] == "Degraded"


def _bad(**endpoint: Any) -> dict[str, Any]:
    body = deployment("bad", "s3://qa-sources/tiny/")
    body["spec"]["endpoint"] = {"tags": {"team": "qa"}, **endpoint}
    return body


INSTANCES = {"instanceType": "ml.m5.large"}
SERVERLESS = {"serverless": {"memorySizeInMB": 2048, "maxConcurrency": 2}}
REJECTED = [
    ("canary without its block", _bad(**INSTANCES, deployment={"strategy": "Canary"}),
     "endpoint.deployment.canary is required with strategy Canary"),
    ("another strategy's block",
     _bad(**INSTANCES, deployment={"strategy": "Linear", "linear": {"stepPercent": 20},
                                   "canary": {"percent": 5}}),
     "apply only to their own strategy"),
    ("rolling serverless",
     _bad(**SERVERLESS, deployment={"strategy": "Rolling", "rolling": {"batchPercent": 10}}),
     "Rolling needs instances"),
    ("canary too big",
     _bad(**INSTANCES, deployment={"strategy": "Canary", "canary": {"percent": 80}}),
     "spec.endpoint.deployment.canary.percent"),
    ("unknown strategy", _bad(**INSTANCES, deployment={"strategy": "Shadow"}),
     "spec.endpoint.deployment.strategy"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected"), [pytest.param(b, e, id=case) for case, b, e in REJECTED]
)
def test_deployments_sagemaker_refuses_are_rejected_at_apply(
    kube_cluster: Any, namespace: str, body: dict[str, Any], expected: str
) -> None:
    assert_rejected_at_apply(kube_cluster, namespace, body, expected)
