"""spec.adoption end to end: an endpoint made outside with boto3 is adopted and changed."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import (
    ROLE_ARN,
    SERVING_IMAGE,
    apply,
    condition,
    deployment,
    events,
    get,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def make_by_hand(aws: Any, name: str) -> str:
    """Model, config and endpoint as a team would make them with the SDK; returns the ARN."""
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName=f"{name}-model",
        PrimaryContainer={"Image": SERVING_IMAGE},
        ExecutionRoleArn=ROLE_ARN,
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-cfg",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    created = sm.create_endpoint(
        EndpointName=name, EndpointConfigName=f"{name}-cfg", Tags=[{"Key": "team", "Value": "ops"}]
    )
    return str(created["EndpointArn"])


def test_adopt_an_endpoint_made_outside_then_change_it_and_delete_leaves_what_it_found(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    name = f"{namespace[:40]}-handmade"
    arn = make_by_hand(aws, name)
    sm = aws.client("sagemaker")
    operator.start()

    body = deployment(
        "adopter", s3_model_uri, endpoint={"name": name}, adoption={"policy": "Adopt"}
    )
    apply(kube_cluster, namespace, body)
    ready = wait_ready(kube_cluster, namespace, "adopter", operator)
    status = ready["status"]
    assert status["adopted"]["endpointArn"] == arn
    assert status["adopted"]["endpointConfigName"] == f"{name}-cfg"
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["qaoperator.io/uid"] == ready["metadata"]["uid"]
    assert tags["team"] == "qa"  # the spec's tags now, synced like any endpoint of ours
    # Reconciled to the spec: its first change was a normal update, to this resource's config.
    assert (
        sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        == status["endpointConfigName"]
    )
    assert aws.calls("sagemaker", "UpdateEndpoint") == 1
    assert aws.calls("sagemaker", "CreateEndpoint") == 1  # the hand-made one only
    assert "AdoptedEndpoint" in [reason for reason, _ in events(kube_cluster, namespace, "adopter")]

    apply(
        kube_cluster,
        namespace,
        {
            **body,
            "spec": {**body["spec"], "endpoint": {**body["spec"]["endpoint"], "instanceCount": 2}},
        },
    )
    changed = wait_ready(kube_cluster, namespace, "adopter", operator, generation=2)
    # A count alone is set in place on the adopted endpoint, as on any endpoint of ours.
    assert changed["status"]["endpointConfigName"] == status["endpointConfigName"]
    variants = sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    assert variants[0]["DesiredInstanceCount"] == 2
    assert aws.calls("sagemaker", "UpdateEndpointWeightsAndCapacities") == 1

    kube_cluster.kubectl("delete", "qamodeldeployments", "adopter", "-n", namespace, "--wait=false")
    wait_for(
        "adopter gone", lambda: get(kube_cluster, namespace, "adopter") is None, operator=operator
    )
    # The endpoint was ours to delete; what it served when found is left as found.
    assert name not in [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert sm.describe_endpoint_config(EndpointConfigName=f"{name}-cfg")
    assert sm.describe_model(ModelName=f"{name}-model")


def test_adopt_with_nothing_to_adopt_is_blocked_and_creates_nothing(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("lonely", s3_model_uri, adoption={"policy": "Adopt"}))

    def blocked() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "lonely")
        return obj if condition(obj, "Degraded").get("reason") == "NothingToAdopt" else None

    obj = wait_for("lonely NothingToAdopt", blocked, operator=operator)
    assert "AdoptOrCreate" in condition(obj, "Degraded")["message"]
    assert aws.calls("sagemaker", "CreateEndpoint") == 0
