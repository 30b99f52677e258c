"""Autoscaling end to end: the variant registered with Application Auto Scaling and its
target-tracking policy put, the count the autoscaler chose kept through resyncs and an unrelated
update, drift repaired, the target removed with the spec's autoscaling and before the endpoint on
delete."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.moto_ext.autoscaling import autoscale
from support.e2e import apply, deployment, endpoint_observations, get, wait_for, wait_ready

pytestmark = pytest.mark.e2e

SCALING = {
    "minInstances": 1,
    "maxInstances": 4,
    "targetInvocationsPerInstance": 50,
    "scaleInCooldownSeconds": 120,
}
KEYS = {
    "ServiceNamespace": "sagemaker",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


def _targets(aws: Any, endpoint: str) -> list[dict[str, Any]]:
    aas = aws.client("application-autoscaling")
    found = aas.describe_scalable_targets(
        ResourceIds=[f"endpoint/{endpoint}/variant/AllTraffic"], **KEYS
    )["ScalableTargets"]
    return list(found)


def _policies(aws: Any, endpoint: str) -> list[dict[str, Any]]:
    aas = aws.client("application-autoscaling")
    found = aas.describe_scaling_policies(
        ResourceId=f"endpoint/{endpoint}/variant/AllTraffic", **KEYS
    )["ScalingPolicies"]
    return list(found)


def _count(aws: Any, endpoint: str) -> int:
    (variant,) = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint)[
        "ProductionVariants"
    ]
    return int(variant["DesiredInstanceCount"])


def _more_passes(aws: Any, operator: Any, passes: int = 4) -> None:
    describes = endpoint_observations(aws)
    wait_for(
        f"{passes} more reconcile passes",
        lambda: endpoint_observations(aws) >= describes + passes,
        operator=operator,
    )


def test_autoscaling_is_registered_and_the_autoscaled_count_survives_an_update(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = deployment("auto", s3_model_uri, endpoint={"autoscaling": SCALING})
    operator.start()
    apply(kube_cluster, namespace, body)
    first = wait_ready(kube_cluster, namespace, "auto", operator)
    endpoint = first["status"]["endpointName"]
    (target,) = wait_for("registered", lambda: _targets(aws, endpoint), operator=operator)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = wait_for("policy put", lambda: _policies(aws, endpoint), operator=operator)
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 50.0,
        "PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
        },
        "ScaleInCooldown": 120,
        "ScaleOutCooldown": 60,
    }
    obj = wait_for(
        "status.autoscaling",
        lambda: (o := get(kube_cluster, namespace, "auto")) and o["status"].get("autoscaling"),
        operator=operator,
    )
    assert obj["resourceId"] == f"endpoint/{endpoint}/variant/AllTraffic"

    # The autoscaler scales out; resyncs leave its count alone.
    assert autoscale(endpoint, 3) == 3
    _more_passes(aws, operator)
    assert _count(aws, endpoint) == 3
    assert aws.calls("sagemaker", "UpdateEndpointWeightsAndCapacities") == 0

    # An unrelated update (a new Model and EndpointConfig) keeps the autoscaled count.
    body["spec"]["endpoint"]["environment"] = {"LOG_LEVEL": "debug"}
    apply(kube_cluster, namespace, body)
    wait_ready(kube_cluster, namespace, "auto", operator, generation=2)
    served = wait_for(
        "the new config InService",
        lambda: (
            (o := get(kube_cluster, namespace, "auto"))
            and o["status"].get("endpointStatus") == "InService"
            and o["status"]["endpointConfigName"] != first["status"]["endpointConfigName"]
            and o
        ),
        operator=operator,
    )
    sm = aws.client("sagemaker")
    assert (
        sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        == (served["status"]["endpointConfigName"])
    )
    assert aws.calls("sagemaker", "UpdateEndpoint") == 1
    assert _count(aws, endpoint) == 3, "the update reset the autoscaled count"

    # Drift: the policy deleted and the range changed by hand are put back.
    aas = aws.client("application-autoscaling")
    aas.delete_scaling_policy(
        PolicyName=policy["PolicyName"],
        ResourceId=f"endpoint/{endpoint}/variant/AllTraffic",
        **KEYS,
    )
    aas.register_scalable_target(
        ResourceId=f"endpoint/{endpoint}/variant/AllTraffic", MinCapacity=1, MaxCapacity=9, **KEYS
    )
    wait_for(
        "the drift repaired",
        lambda: _policies(aws, endpoint) and _targets(aws, endpoint)[0]["MaxCapacity"] == 4,
        operator=operator,
    )

    # On delete, the target goes before the endpoint does.
    aws.set_endpoint_lifecycle(deleting_describes=3)
    kube_cluster.kubectl("delete", "qamd", "auto", "-n", namespace, "--wait=false")
    wait_for(
        "the endpoint Deleting",
        lambda: sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Deleting",
        operator=operator,
    )
    assert _targets(aws, endpoint) == []
    assert _policies(aws, endpoint) == []
    wait_for("deleted", lambda: get(kube_cluster, namespace, "auto") is None, operator=operator)


def test_removing_autoscaling_deregisters_it_and_the_count_follows_the_spec_again(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = deployment("manual", s3_model_uri, endpoint={"autoscaling": SCALING})
    operator.start()
    apply(kube_cluster, namespace, body)
    ready = wait_ready(kube_cluster, namespace, "manual", operator)
    endpoint = ready["status"]["endpointName"]
    wait_for("registered", lambda: _policies(aws, endpoint), operator=operator)
    autoscale(endpoint, 4)

    del body["spec"]["endpoint"]["autoscaling"]
    body["spec"]["endpoint"]["instanceCount"] = 2
    apply(kube_cluster, namespace, body)
    wait_ready(kube_cluster, namespace, "manual", operator, generation=2)
    wait_for(
        "deregistered, 2 instances",
        lambda: (
            _targets(aws, endpoint) == []
            and _count(aws, endpoint) == 2
            and "autoscaling" not in (get(kube_cluster, namespace, "manual") or {})["status"]
        ),
        operator=operator,
    )
    assert aws.calls("sagemaker", "UpdateEndpoint") == 0


def test_moto_refuses_a_scalable_target_for_a_missing_variant(aws: Any) -> None:
    aas = aws.client("application-autoscaling")
    with pytest.raises(aas.exceptions.ValidationException) as refused:
        aas.register_scalable_target(
            ResourceId="endpoint/nowhere/variant/AllTraffic", MinCapacity=1, MaxCapacity=2, **KEYS
        )
    assert "does not exist" in str(refused.value)
