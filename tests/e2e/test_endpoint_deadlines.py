"""spec.endpoint.timeouts end to end: an endpoint moto holds in Creating runs past its deadline."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from support.e2e import (
    apply,
    condition,
    deployment,
    endpoint_observations,
    events,
    get,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

HELD = 10**9  # DescribeEndpoint calls before moto lets the endpoint leave Creating: never


def test_create_deadline_passing_is_degraded_with_sagemakers_status_and_leaves_the_endpoint(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_endpoint_lifecycle(creating_describes=HELD)
    operator.start()
    apply(
        kube_cluster,
        namespace,
        deployment("stuck", s3_model_uri, endpoint={"timeouts": {"create": "3s"}}),
    )

    degraded = wait_degraded(kube_cluster, namespace, "stuck", operator)
    assert condition(degraded, "Degraded")["reason"] == "CreateTimedOut"
    assert "still reported Creating" in condition(degraded, "Degraded")["message"]
    assert condition(degraded, "Ready")["status"] == "False"
    assert degraded["status"]["deadline"]["timedOut"] is True
    endpoint = f"{namespace}-stuck"
    sm = aws.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"

    describes = endpoint_observations(aws)
    wait_for(
        "several more passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("sagemaker", "DeleteEndpoint") == 0, "onTimeout Fail deleted the endpoint"
    assert aws.calls("sagemaker", "CreateEndpoint") == 1
    reasons = [reason for reason, _ in events(kube_cluster, namespace, "stuck")]
    assert reasons.count("CreateTimedOut") == 1, reasons


def test_create_deadline_with_on_timeout_delete_deletes_the_stuck_endpoint_until_the_spec_changes(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_endpoint_lifecycle(creating_describes=HELD)
    operator.start()
    timeouts = {"create": "3s", "onTimeout": "Delete"}
    apply(
        kube_cluster, namespace, deployment("stuck", s3_model_uri, endpoint={"timeouts": timeouts})
    )
    endpoint = f"{namespace}-stuck"
    sm = aws.client("sagemaker")

    def endpoint_gone() -> bool:
        try:
            sm.describe_endpoint(EndpointName=endpoint)
        except ClientError:
            return True
        return False

    wait_for("the stuck endpoint deleted", endpoint_gone, operator=operator)
    degraded = wait_degraded(kube_cluster, namespace, "stuck", operator)
    assert condition(degraded, "Degraded")["reason"] == "CreateTimedOut"
    assert "onTimeout Delete" in condition(degraded, "Degraded")["message"]
    # The model and config stay for the next try; nothing is created again on the resyncs.
    assert sm.describe_model(ModelName=degraded["status"]["modelName"])
    assert sm.describe_endpoint_config(EndpointConfigName=degraded["status"]["endpointConfigName"])
    describes = endpoint_observations(aws)
    wait_for(
        "several more passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("sagemaker", "CreateEndpoint") == 1, "the timed-out endpoint was recreated"
    assert aws.calls("sagemaker", "DeleteEndpoint") == 1
    assert (
        condition(get(kube_cluster, namespace, "stuck"), "Degraded")["reason"] == "CreateTimedOut"
    )

    aws.set_endpoint_lifecycle()  # SageMaker healthy again; a new spec tries again
    apply(
        kube_cluster,
        namespace,
        deployment("stuck", s3_model_uri, endpoint={"timeouts": {**timeouts, "create": "10m"}}),
    )
    ready = wait_ready(kube_cluster, namespace, "stuck", operator, generation=2)
    assert condition(ready, "Degraded")["status"] == "False"
    assert aws.calls("sagemaker", "CreateEndpoint") == 2
