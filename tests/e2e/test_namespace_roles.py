"""AWS identity per namespace (the policy's identity section): each namespace's resources are
made, observed and deleted as its own IAM role (STS AssumeRole), the test stack's call log naming
the role of every request; status shows the role; a namespace the policy gives no identity is
refused before any AWS call; deletion acts as the recorded role even after the policy dropped it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_ext.callers import BASE, Caller
from qa_operator.aws_identity import session_name
from support.e2e import (
    SOURCE_BUCKET,
    apply,
    condition,
    deployment,
    get,
    owned,
    package_objects,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

ROLE_A = "arn:aws:iam::123456789012:role/qa-team-a"
ROLE_B = "arn:aws:iam::123456789012:role/qa-team-b"
# Roles of their own: packages are cached by source and reading role for the whole session.
ROLE_C = "arn:aws:iam::123456789012:role/qa-team-c"
ROLE_D = "arn:aws:iam::123456789012:role/qa-team-d"
CREATES = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")


def _policy(roles: dict[str, str], *, allow_default: bool) -> str:
    lines = [
        f"s3Sources: ['s3://{SOURCE_BUCKET}/']",
        "identity:",
        f"  allowOperatorDefault: {'true' if allow_default else 'false'}",
        "  roles:" + ("" if roles else " {}"),
        *(f"    {namespace}: {role}" for namespace, role in roles.items()),
    ]
    return "\n".join(lines) + "\n"


def _write_policy(operator: Any, text: str) -> None:
    """Replace the operator's policy file at once, as the kubelet swaps a ConfigMap volume."""
    path = Path(operator.env["QA_OPERATOR_POLICY_FILE"])
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


@pytest.fixture
def second_namespace(kube_cluster: Any, namespace: str) -> Iterator[str]:
    name = f"{namespace[:55]}-b"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _delete(kube_cluster: Any, namespace: str, name: str, operator: Any) -> None:
    kube_cluster.kubectl("delete", "qamd", name, "-n", namespace, "--wait=false")
    wait_for(
        f"{namespace}/{name} released",
        lambda: get(kube_cluster, namespace, name) is None,
        operator=operator,
    )


def test_two_namespaces_act_as_their_two_roles_from_create_to_delete(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    second_namespace: str,
    operator: Any,
    s3_model_uri: str,
) -> None:
    team_a, team_b = namespace, second_namespace
    session_a = Caller(ROLE_A, session_name(team_a))
    session_b = Caller(ROLE_B, session_name(team_b))
    _write_policy(operator, _policy({team_a: ROLE_A, team_b: ROLE_B}, allow_default=False))
    uploaded_by_test = aws.callers("s3", "PutObject")[BASE]  # the model's files, by s3_model_uri
    operator.start(also_watch=[team_b])
    apply(kube_cluster, team_a, deployment("qa", s3_model_uri))
    apply(kube_cluster, team_b, deployment("qa", s3_model_uri))
    first = wait_ready(kube_cluster, team_a, "qa", operator)
    second = wait_ready(kube_cluster, team_b, "qa", operator)

    assert first["status"]["awsIdentity"] == {"roleArn": ROLE_A, "source": "Policy"}
    assert second["status"]["awsIdentity"] == {"roleArn": ROLE_B, "source": "Policy"}
    for operation in CREATES:
        assert aws.callers("sagemaker", operation) == {session_a: 1, session_b: 1}, operation
    # Every SageMaker call, observation included, and every package upload: as a team's role.
    assert BASE not in aws.callers("sagemaker")
    uploads = aws.callers("s3", "PutObject")
    assert uploads[session_a] >= 1 and uploads[session_b] >= 1, uploads
    assert uploads[BASE] == uploaded_by_test, uploads
    # One source, two roles: each read it itself; no package read by one is handed to the other.
    reads = aws.callers("s3", "GetObject")
    assert reads[session_a] >= 1 and reads[session_b] >= 1, reads
    assert (
        first["status"]["modelPackage"]["sourceKey"]
        != second["status"]["modelPackage"]["sourceKey"]
    )
    assert set(aws.callers("sts", "AssumeRole")) == {BASE}  # the operator's own keys assume

    # Team b's mapping is removed (and the default is not allowed): deleting its resource still
    # acts as the role that made its things, so nothing is left behind.
    _write_policy(operator, _policy({team_a: ROLE_A}, allow_default=False))
    _delete(kube_cluster, team_b, "qa", operator)
    _delete(kube_cluster, team_a, "qa", operator)
    assert aws.callers("sagemaker", "DeleteEndpoint") == {session_a: 1, session_b: 1}
    assert aws.callers("sagemaker", "DeleteModel") == {session_a: 1, session_b: 1}
    assert BASE not in aws.callers("sagemaker")  # (the test's own look below uses the base keys)
    for obj in (first, second):
        assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert package_objects(aws) == []


def test_a_namespace_without_an_identity_is_refused_before_any_aws_call(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    _write_policy(operator, _policy({"someone-else": ROLE_A}, allow_default=False))
    s3_before = aws.callers("s3")  # the model's files, uploaded by s3_model_uri
    operator.start()
    apply(kube_cluster, namespace, deployment("orphan", s3_model_uri))
    obj = wait_degraded(kube_cluster, namespace, "orphan", operator)
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "NoAwsIdentity", degraded
    assert f"maps namespace {namespace} to no AWS role" in degraded["message"]
    assert "awsIdentity" not in obj["status"]
    assert aws.callers("sagemaker") == {}
    assert aws.calls("sts", "AssumeRole") == 0
    assert aws.callers("s3") == s3_before, "the source was read or a package uploaded"

    _delete(kube_cluster, namespace, "orphan", operator)  # nothing to delete: released at once
    assert aws.callers("sagemaker") == {}


def test_a_changed_mapping_blocks_instead_of_losing_what_the_old_role_made(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    _write_policy(operator, _policy({namespace: ROLE_C}, allow_default=False))
    operator.start()
    apply(kube_cluster, namespace, deployment("moved", s3_model_uri))
    wait_ready(kube_cluster, namespace, "moved", operator)

    _write_policy(operator, _policy({namespace: ROLE_D}, allow_default=False))
    obj = wait_degraded(kube_cluster, namespace, "moved", operator)  # at the next resync
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "AwsIdentityChanged", degraded
    assert ROLE_C in degraded["message"] and ROLE_D in degraded["message"]
    assert obj["status"]["awsIdentity"]["roleArn"] == ROLE_C
    assert set(aws.callers("sagemaker")) == {Caller(ROLE_C, session_name(namespace))}

    _delete(kube_cluster, namespace, "moved", operator)
    assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert set(aws.callers("sagemaker", "DeleteEndpoint")) == {
        Caller(ROLE_C, session_name(namespace))
    }
