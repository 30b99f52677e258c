"""Capacity-only changes end to end: a new instanceCount is set in place with
UpdateEndpointWeightsAndCapacities (no new Model or EndpointConfig), a count changed outside the
spec is put back, and a change that also touches the instance type still makes a new config."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import apply, deployment, events, get, wait_for, wait_ready

pytestmark = pytest.mark.e2e

CREATES = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint")


def _creates(aws: Any) -> dict[str, int]:
    return {op: aws.calls("sagemaker", op) for op in CREATES}


def _variant(aws: Any, endpoint: str) -> dict[str, Any]:
    (variant,) = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)[
        "ProductionVariants"
    ]
    return dict(variant)


def _settled(cluster: Any, namespace: str, name: str, count: int) -> Any:
    """The resource once the endpoint is InService again with `count` instances recorded."""
    obj = get(cluster, namespace, name) or {}
    status = obj.get("status", {})
    done = status.get("endpointStatus") == "InService" and (
        status.get("desiredInstanceCount") == count
    )
    return obj if done else None


def test_a_count_change_is_applied_in_place_without_a_new_config(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("scaled", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "scaled", operator)
    assert first["status"]["desiredInstanceCount"] == 1
    endpoint = first["status"]["endpointName"]
    before = _creates(aws)
    aws.set_endpoint_lifecycle(updating_describes=2)

    apply(
        kube_cluster, namespace, deployment("scaled", s3_model_uri, endpoint={"instanceCount": 3})
    )
    wait_for(
        "Updating while it scales",
        lambda: (
            (get(kube_cluster, namespace, "scaled") or {}).get("status", {}).get("endpointStatus")
            == "Updating"
        ),
        operator=operator,
    )
    wait_ready(kube_cluster, namespace, "scaled", operator, generation=2)
    obj = wait_for(
        "3 instances, InService",
        lambda: _settled(kube_cluster, namespace, "scaled", 3),
        operator=operator,
    )
    status = obj["status"]
    assert _creates(aws) == before, "a count change created or updated something"
    assert aws.calls("sagemaker", "UpdateEndpointWeightsAndCapacities") == 1
    assert status["endpointConfigName"] == first["status"]["endpointConfigName"]
    assert status["modelName"] == first["status"]["modelName"]
    variant = _variant(aws, endpoint)
    assert (variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]) == (3, 3)
    assert variant["CurrentWeight"] == 1.0, "the weight was not asked to change"
    reasons = [reason for reason, _ in events(kube_cluster, namespace, "scaled")]
    assert "ScalingEndpoint" in reasons

    # Someone scales the endpoint outside the spec: the next pass puts the spec's count back.
    sm = aws.client("sagemaker")
    sm.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 5}],
    )
    wait_for(
        "the drift repaired",
        lambda: (
            _variant(aws, endpoint)["CurrentInstanceCount"] == 3
            and aws.calls("sagemaker", "UpdateEndpointWeightsAndCapacities") == 3
        ),
        operator=operator,
        timeout=180,
    )
    assert _creates(aws) == before


def test_a_count_change_with_a_new_instance_type_takes_the_new_config_path(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("resized", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "resized", operator)

    resized = {"instanceType": "ml.m5.xlarge", "instanceCount": 2}
    apply(kube_cluster, namespace, deployment("resized", s3_model_uri, endpoint=resized))
    wait_ready(kube_cluster, namespace, "resized", operator, generation=2)
    obj = wait_for(
        "2 instances on the new config",
        lambda: _settled(kube_cluster, namespace, "resized", 2),
        operator=operator,
    )
    status = obj["status"]
    assert status["endpointConfigName"] != first["status"]["endpointConfigName"]
    assert aws.calls("sagemaker", "UpdateEndpoint") == 1
    assert aws.calls("sagemaker", "UpdateEndpointWeightsAndCapacities") == 0
    config = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=status["endpointConfigName"]
    )
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.xlarge", 2)


def test_moto_refuses_a_capacity_change_while_the_endpoint_is_busy(aws: Any) -> None:
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "i"},
    )  # fmt: skip
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "m", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1, "InitialVariantWeight": 1.0}
        ],
    )  # fmt: skip
    aws.set_endpoint_lifecycle(creating_describes=5)
    sm.create_endpoint(EndpointName="e", EndpointConfigName="c")
    with pytest.raises(sm.exceptions.ClientError) as refused:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="e",
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    assert "Cannot update in-progress endpoint" in str(refused.value)
