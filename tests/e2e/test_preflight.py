"""Preflight end to end (on by default; the `operator` fixture provisions the execution role and
the serving image, and these tests take them away): each failed check is a terminal
PreflightFailed naming it, with no SageMaker resource created; a passing one is cached per
generation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.e2e import (
    PACKAGE_BUCKET,
    ROLE_ARN,
    SERVING_DIGEST,
    SERVING_REPOSITORY,
    apply,
    condition,
    deployment,
    endpoint_observations,
    get,
    owned,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

ROLE_NAME = ROLE_ARN.rsplit("/", 1)[-1]
CREATES = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")


def trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def pushed_image(aws: Any) -> str:
    """A serving image that exists in (moto's) ECR, by digest."""
    ecr = aws.client("ecr")
    uri = ecr.create_repository(repositoryName="qa-serving-real")["repository"]["repositoryUri"]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": 2, "digest": "sha256:" + "c" * 64},
            "layers": [],
        }
    )  # fmt: skip
    image = ecr.put_image(repositoryName="qa-serving-real", imageManifest=manifest, imageTag="v1")
    return f"{uri}@{image['image']['imageId']['imageDigest']}"


def preflight_failure(
    kube_cluster: Any, namespace: str, name: str, operator: Any, generation: int
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, name)
        status = (obj or {}).get("status", {})
        if status.get("observedGeneration") != generation:
            return None
        return obj if condition(obj, "Degraded").get("reason") == "PreflightFailed" else None

    found: dict[str, Any] = wait_for(f"{name} PreflightFailed", probe, operator=operator)
    return found


def nothing_created(aws: Any, obj: dict[str, Any]) -> None:
    assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert [aws.calls("sagemaker", op) for op in CREATES] == [0, 0, 0]


def test_role_missing_then_not_trusting_sagemaker_then_image_missing_each_fail_with_nothing_created(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    iam = aws.client("iam")
    iam.delete_role(RoleName=ROLE_NAME)
    ecr = aws.client("ecr")
    ecr.batch_delete_image(
        repositoryName=SERVING_REPOSITORY, imageIds=[{"imageDigest": SERVING_DIGEST}]
    )
    operator.start()
    apply(kube_cluster, namespace, deployment("pre", s3_model_uri))
    obj = preflight_failure(kube_cluster, namespace, "pre", operator, 1)
    message = condition(obj, "Degraded")["message"]
    assert "preflight check ExecutionRole failed" in message and ROLE_ARN in message
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["preflight"]["passed"] is False
    nothing_created(aws, obj)

    # Cached for this generation: resyncs do not ask IAM again.
    get_role = aws.calls("iam", "GetRole")
    describes = endpoint_observations(aws)
    wait_for(
        "several more passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("iam", "GetRole") == get_role

    iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=trust("ec2.amazonaws.com"))
    apply(kube_cluster, namespace, deployment("pre", s3_model_uri, endpoint={"tags": {"t": "2"}}))
    obj = preflight_failure(kube_cluster, namespace, "pre", operator, 2)
    assert "preflight check ExecutionRoleTrust failed" in condition(obj, "Degraded")["message"]
    nothing_created(aws, obj)

    iam.update_assume_role_policy(
        RoleName=ROLE_NAME, PolicyDocument=trust("sagemaker.amazonaws.com")
    )
    apply(kube_cluster, namespace, deployment("pre", s3_model_uri, endpoint={"tags": {"t": "3"}}))
    obj = preflight_failure(kube_cluster, namespace, "pre", operator, 3)
    message = condition(obj, "Degraded")["message"]
    assert "preflight check Image failed" in message and "does not exist in ECR" in message
    nothing_created(aws, obj)
    results = {c["name"]: c["result"] for c in obj["status"]["preflight"]["checks"]}
    assert results["ExecutionRole"] == results["ExecutionRoleTrust"] == "Passed"


def test_a_package_gone_fails_the_resume_and_a_sound_spec_passes_with_quota_skipped_politely(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()  # the fixtures' role and serving image, as every e2e test has them

    apply(kube_cluster, namespace, deployment("sound", s3_model_uri))
    ready = wait_ready(kube_cluster, namespace, "sound", operator)
    checks = {c["name"]: c for c in ready["status"]["preflight"]["checks"]}
    assert {name: c["result"] for name, c in checks.items()} == {
        "ExecutionRole": "Passed",
        "ExecutionRoleTrust": "Passed",
        "PassRole": "Skipped",  # moto answers no iam:SimulatePrincipalPolicy
        "Image": "Passed",
        "Package": "Passed",
        "InstanceQuota": "Skipped",  # moto's Service Quotas knows no SageMaker quotas
    }
    assert checks["InstanceQuota"]["message"].startswith("not checked: ")

    # Suspended from the start: packaged, nothing created; then its package disappears.
    apply(kube_cluster, namespace, deployment("gone", s3_model_uri, suspend=True))

    def suspended() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "gone")
        return obj if (obj or {}).get("status", {}).get("phase") == "Suspended" else None

    package = wait_for("gone Suspended", suspended, operator=operator)["status"]["modelPackage"]
    key = package["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    aws.client("s3").delete_object(Bucket=PACKAGE_BUCKET, Key=key)
    creates = [aws.calls("sagemaker", op) for op in CREATES]

    apply(kube_cluster, namespace, deployment("gone", s3_model_uri, suspend=False))
    obj = preflight_failure(kube_cluster, namespace, "gone", operator, 2)
    message = condition(obj, "Degraded")["message"]
    assert "preflight check Package failed" in message and key in message
    assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert [aws.calls("sagemaker", op) for op in CREATES] == creates
    assert wait_degraded(kube_cluster, namespace, "gone", operator)


def test_an_instance_type_without_quota_or_not_offered_fails_with_nothing_created(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_service_quotas(
        "sagemaker",
        {"ml.m5.large for endpoint usage": 1, "ml.g5.xlarge for endpoint usage": 0},
    )
    operator.start(QA_OPERATOR_SERVING_IMAGE=pushed_image(aws))

    apply(kube_cluster, namespace, deployment("many", s3_model_uri, endpoint={"instanceCount": 3}))
    obj = preflight_failure(kube_cluster, namespace, "many", operator, 1)
    message = condition(obj, "Degraded")["message"]
    assert "preflight check InstanceQuota failed" in message and "is 1, fewer than the 3" in message
    nothing_created(aws, obj)

    offered_nowhere = {"instanceType": "ml.p9.huge", "instanceCount": 1}
    apply(kube_cluster, namespace, deployment("many", s3_model_uri, endpoint=offered_nowhere))
    obj = preflight_failure(kube_cluster, namespace, "many", operator, 2)
    assert "ml.p9.huge is not offered" in condition(obj, "Degraded")["message"]
    nothing_created(aws, obj)

    apply(kube_cluster, namespace, deployment("many", s3_model_uri, endpoint={"instanceCount": 1}))
    ready = wait_ready(kube_cluster, namespace, "many", operator, generation=3)
    checks = {c["name"]: c["result"] for c in ready["status"]["preflight"]["checks"]}
    assert checks["InstanceQuota"] == "Passed"
