"""Create, change and delete a QAModelDeployment end to end."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import (
    PACKAGE_BUCKET,
    ROLE_ARN,
    SERVING_IMAGE,
    apply,
    condition,
    deployment,
    events,
    get,
    owned,
    package_objects,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def test_create_reaches_ready_with_every_status_field(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_endpoint_lifecycle(creating_describes=3)
    operator.start()
    apply(kube_cluster, namespace, deployment("squad", s3_model_uri))

    obj = wait_ready(kube_cluster, namespace, "squad", operator)
    status = obj["status"]
    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=f"{namespace}-squad")
    assert status["phase"] == "Ready"
    assert status["endpointName"] == f"{namespace}-squad"
    assert status["endpointArn"] == endpoint["EndpointArn"]
    assert status["endpointStatus"] == "InService"
    assert status["endpointConfigName"] == endpoint["EndpointConfigName"]
    assert status["invocationUrl"] == (
        f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{namespace}-squad/invocations"
    )
    assert status["region"] == "us-east-1"
    assert status["image"]["uri"] == SERVING_IMAGE
    assert status["modelPackage"]["digest"].startswith("sha256:")
    assert "failureReason" not in status

    config = sm.describe_endpoint_config(EndpointConfigName=status["endpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    assert variant["ModelName"] == status["modelName"]
    model = sm.describe_model(ModelName=status["modelName"])
    assert model["PrimaryContainer"]["Image"] == SERVING_IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == status["modelPackage"]["uri"]
    assert model["ExecutionRoleArn"] == ROLE_ARN
    key = status["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    assert aws.client("s3").head_object(Bucket=PACKAGE_BUCKET, Key=key)["ContentLength"] > 0

    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]}
    assert tags["qaoperator.io/uid"] == obj["metadata"]["uid"]
    assert tags["qaoperator.io/namespace"] == namespace
    assert tags["team"] == "qa"

    ready = condition(obj, "Ready")
    assert ready["reason"] == "EndpointInService"
    assert ready["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Degraded")["status"] == "False"
    assert condition(obj, "Progressing")["status"] == "False"

    table = kube_cluster.kubectl("get", "qamd", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "ENDPOINT", "STATUS", "READY", "INSTANCE", "AGE"]
    assert row.split()[:5] == ["squad", f"{namespace}-squad", "InService", "True", "ml.m5.large"]

    reasons = [reason for reason, _ in events(kube_cluster, namespace, "squad")]
    assert {"CreatedModel", "CreatedEndpointConfig", "CreatingEndpoint"} <= set(reasons)
    assert "[ERROR" not in operator.processes[0].log(lines=10_000), "a normal create logged errors"


def test_a_new_instance_type_makes_a_new_config_and_deletes_the_old_one_once_in_service(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("scale", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "scale", operator)
    old_config = first["status"]["endpointConfigName"]
    aws.set_endpoint_lifecycle(updating_describes=3)

    # A count change alone is applied in place (test_capacity_in_place.py); with a new type it
    # is a new config, created with the new count.
    resized = {"instanceType": "ml.m5.xlarge", "instanceCount": 2}
    apply(kube_cluster, namespace, deployment("scale", s3_model_uri, endpoint=resized))
    wait_for(
        "Updating",
        lambda: (
            (get(kube_cluster, namespace, "scale") or {}).get("status", {}).get("endpointStatus")
            == "Updating"
        ),
        operator=operator,
    )
    assert old_config in owned(aws, first["metadata"]["uid"])["configs"], "deleted before InService"

    second = wait_ready(kube_cluster, namespace, "scale", operator, generation=2)
    new_config = second["status"]["endpointConfigName"]
    assert new_config != old_config
    assert second["status"]["modelName"] == first["status"]["modelName"]
    sm = aws.client("sagemaker")
    variant = sm.describe_endpoint_config(EndpointConfigName=new_config)["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.xlarge", 2)
    assert (
        sm.describe_endpoint(EndpointName=f"{namespace}-scale")["EndpointConfigName"] == new_config
    )
    resources = wait_for(
        "old config deleted",
        lambda: (r := owned(aws, first["metadata"]["uid"]))["configs"] == [new_config] and r,
        operator=operator,
    )
    assert resources["models"] == [first["status"]["modelName"]]


def test_changing_the_model_repackages_and_replaces_model_and_config(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("swap", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "swap", operator)
    changed = deployment("swap", s3_model_uri)
    changed["spec"]["model"]["inference"]["maxAnswerLength"] = 12
    apply(kube_cluster, namespace, changed)

    second = wait_ready(kube_cluster, namespace, "swap", operator, generation=2)
    before, after = first["status"], second["status"]
    assert after["modelPackage"]["digest"] != before["modelPackage"]["digest"]
    assert after["modelName"] != before["modelName"]
    assert after["endpointConfigName"] != before["endpointConfigName"]
    uid = first["metadata"]["uid"]
    # The served package and this resource's reference to it (package_refs.py): the old one
    # lost its last reference and went.
    key = after["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    kept = sorted([key, key.removesuffix("model.tar.gz") + f"refs/{namespace}.swap.{uid}"])
    wait_for(
        "superseded model, config and package deleted",
        lambda: (
            owned(aws, uid)
            == {
                "endpoints": [f"{namespace}-swap"],
                "configs": [after["endpointConfigName"]],
                "models": [after["modelName"]],
            }
            and sorted(package_objects(aws)) == kept
        ),
        operator=operator,
    )


def test_delete_removes_everything_it_owned_and_nothing_else(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName=f"{namespace}-gone-bystander",
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": SERVING_IMAGE},
    )
    operator.start()
    apply(kube_cluster, namespace, deployment("gone", s3_model_uri))
    obj = wait_ready(kube_cluster, namespace, "gone", operator)
    aws.set_endpoint_lifecycle(deleting_describes=2)

    kube_cluster.kubectl("delete", "qamd", "gone", "-n", namespace, "--wait=false")
    wait_for(
        "resource released", lambda: get(kube_cluster, namespace, "gone") is None, operator=operator
    )
    assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert package_objects(aws) == []
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == [f"{namespace}-gone-bystander"]


def test_retain_leaves_the_endpoint_in_aws(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("kept", s3_model_uri, deletionPolicy="Retain"))
    obj = wait_ready(kube_cluster, namespace, "kept", operator)
    kube_cluster.kubectl("delete", "qamd", "kept", "-n", namespace, "--wait=false")
    wait_for(
        "resource released", lambda: get(kube_cluster, namespace, "kept") is None, operator=operator
    )
    left = owned(aws, obj["metadata"]["uid"])
    assert left == {
        "endpoints": [f"{namespace}-kept"],
        "configs": [obj["status"]["endpointConfigName"]],
        "models": [obj["status"]["modelName"]],
    }
    key = obj["status"]["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    marker = key.removesuffix("model.tar.gz") + f"refs/{namespace}.kept.{obj['metadata']['uid']}"
    assert sorted(package_objects(aws)) == sorted([key, marker]), "the package and its reference"
    reasons = [reason for reason, _ in events(kube_cluster, namespace, "kept")]
    assert "Retained" in reasons


def test_deleting_while_creating_waits_then_deletes(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_endpoint_lifecycle(creating_seconds=4)
    operator.start()
    apply(kube_cluster, namespace, deployment("early", s3_model_uri))
    sm = aws.client("sagemaker")
    wait_for(
        "endpoint Creating",
        lambda: any(
            e["EndpointName"] == f"{namespace}-early" and e["EndpointStatus"] == "Creating"
            for e in sm.list_endpoints()["Endpoints"]
        ),
        operator=operator,
    )
    uid = get(kube_cluster, namespace, "early")["metadata"]["uid"]  # type: ignore[index]
    kube_cluster.kubectl("delete", "qamd", "early", "-n", namespace, "--wait=false")
    wait_for(
        "resource released",
        lambda: get(kube_cluster, namespace, "early") is None,
        operator=operator,
    )
    assert owned(aws, uid) == {"endpoints": [], "configs": [], "models": []}
    assert aws.calls("sagemaker", "DeleteEndpoint") == 1
