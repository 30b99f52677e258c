"""The admin policy as users meet it: at `kubectl apply` for what is always denied, else as
Degraded/PolicyDenied before any AWS call; per-namespace overrides; a policy edited while the
operator runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support.e2e import (
    ROLE_ARN,
    apply,
    condition,
    create_execution_role,
    deployment,
    endpoint_observations,
    events,
    get,
    owned,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-do-not-show"
OTHER_ROLE = "arn:aws:iam::123456789012:role/team-serving"

# name -> (spec overrides, the field and the rule its condition message must name)
DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    "s3-elsewhere": (
        {"model": {"s3": {"uri": "s3://finance-data/models/"}}},
        "spec.model.s3.uri 's3://finance-data/models/'",
        "not under an allowed S3 prefix (allowed: s3://qa-sources/)",
    ),
    "mlflow-file": (
        {
            "model": {
                "mlflow": {
                    "modelUri": "models:/qa/1",
                    "trackingUri": f"file://admin:{SECRET}@localhost/mlruns?token={SECRET}",
                }
            }
        },
        "spec.model.mlflow.trackingUri 'file://***@localhost/mlruns?***'",
        "tracking URI scheme 'file' not allowed (allowed: http, https)",
    ),
    "mlflow-metadata": (
        # 169.254.169.254 spelled as one decimal number: past the CRD's rule, not the policy.
        {"model": {"mlflow": {"modelUri": "models:/qa/1", "trackingUri": "http://2852039166/"}}},
        "spec.model.mlflow.trackingUri 'http://2852039166/'",
        "a link-local or metadata address: always denied",
    ),
    "repository": (
        {"image": {"repository": "payments/api"}},
        "spec.image.repository 'payments/api'",
        "repository not allowed",
    ),
    "role": (
        {"endpoint": {"executionRoleArn": "arn:aws:iam::123456789012:role/Admin"}},
        "spec.endpoint.executionRoleArn 'arn:aws:iam::123456789012:role/Admin'",
        f"role not allowed (allowed: {ROLE_ARN})",
    ),
    "environment": (
        {"endpoint": {"environment": {"AWS_ENDPOINT_URL": SECRET, "OMP_NUM_THREADS": "2"}}},
        "spec.endpoint.environment 'AWS_ENDPOINT_URL'",
        "key matches AWS_*, denied by the policy",
    ),
}


def _body(name: str, overrides: dict[str, Any], source: str) -> dict[str, Any]:
    body = deployment(name, source)
    spec = body["spec"]
    for key, value in overrides.items():
        if key == "model":
            spec["model"] = {"inference": spec["model"]["inference"], **value}
        else:
            spec[key] = {**spec.get(key, {}), **value}
    if "mlflow" in spec["model"]:
        del spec["model"]["inference"]  # an mlflow model keeps its own settings
    return body


def _write_policy(operator: Any, text: str) -> None:
    """Replace the operator's policy file at once, as the kubelet swaps a ConfigMap volume."""
    path = Path(operator.env["QA_OPERATOR_POLICY_FILE"])
    staged = path.with_suffix(".new")
    staged.write_text(text)
    os.replace(staged, path)


def test_each_field_outside_the_policy_is_denied_before_any_aws_call(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    process = operator.start()
    for name, (overrides, _, _) in DENIED.items():
        apply(kube_cluster, namespace, _body(name, overrides, s3_model_uri))
    for name, (_, shown, rule) in DENIED.items():
        obj = wait_degraded(kube_cluster, namespace, name, operator)
        degraded = condition(obj, "Degraded")
        assert degraded["reason"] == "PolicyDenied", degraded
        assert f"{shown}: {rule}" in degraded["message"], degraded["message"]
        assert obj["status"]["phase"] == "Failed"
    environment = condition(get(kube_cluster, namespace, "environment"), "Degraded")
    assert "OMP_NUM_THREADS" not in environment["message"], "only what is denied is named"

    for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "DescribeEndpoint"):
        assert aws.calls("sagemaker", operation) == 0, operation
    assert aws.calls("s3", "ListObjectsV2") == 0, "a source was read"

    # Resyncs of a blocked resource stay quiet: a resource that is allowed shows they happen.
    apply(kube_cluster, namespace, deployment("allowed", s3_model_uri))
    wait_ready(kube_cluster, namespace, "allowed", operator)
    describes = endpoint_observations(aws)
    wait_for(
        "a few resyncs",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    for name in DENIED:
        posted = events(kube_cluster, namespace, name)
        assert [reason for reason, _ in posted].count("PolicyDenied") == 1, posted
        found = get(kube_cluster, namespace, name)
        assert found is not None
        nothing: dict[str, list[str]] = {"endpoints": [], "configs": [], "models": []}
        assert owned(aws, found["metadata"]["uid"]) == nothing
    assert aws.calls("sagemaker", "CreateModel") == 1, "only the allowed resource's model"

    told = [str((get(kube_cluster, namespace, name) or {}).get("status")) for name in DENIED]
    told += [m for name in DENIED for _, m in events(kube_cluster, namespace, name)]
    process.stop()
    told.append(process.log(lines=100_000))
    assert not [text for text in told if SECRET in text], "a secret reached status, events or log"


def test_a_namespace_section_allows_what_the_defaults_deny(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    _write_policy(
        operator,
        f"""
s3Sources: ["s3://qa-sources/"]
namespaces:
  {namespace}:
    executionRoles: ["arn:aws:iam::123456789012:role/team-*"]
  someone-else:
    executionRoles: ["arn:aws:iam::123456789012:role/*"]
""",
    )
    create_execution_role(aws, OTHER_ROLE)  # the team's role exists: preflight passes
    operator.start()
    apply(
        kube_cluster,
        namespace,
        deployment("team", s3_model_uri, endpoint={"executionRoleArn": OTHER_ROLE}),
    )
    admin = "arn:aws:iam::123456789012:role/Admin"
    apply(
        kube_cluster,
        namespace,
        deployment("admin", s3_model_uri, endpoint={"executionRoleArn": admin}),
    )

    ready = wait_ready(kube_cluster, namespace, "team", operator)
    model = aws.client("sagemaker").describe_model(ModelName=ready["status"]["modelName"])
    assert model["ExecutionRoleArn"] == OTHER_ROLE
    denied = condition(wait_degraded(kube_cluster, namespace, "admin", operator), "Degraded")
    assert denied["reason"] == "PolicyDenied"
    assert "arn:aws:iam::123456789012:role/team-*" in denied["message"]


def test_a_policy_edited_while_the_operator_runs_applies_at_the_next_pass(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    create_execution_role(aws, OTHER_ROLE)  # the team's role exists: preflight passes
    operator.start()
    body = deployment("later", s3_model_uri, endpoint={"executionRoleArn": OTHER_ROLE})
    apply(kube_cluster, namespace, body)
    denied = wait_degraded(kube_cluster, namespace, "later", operator)
    assert condition(denied, "Degraded")["reason"] == "PolicyDenied"

    allowing = f"s3Sources: ['s3://qa-sources/']\nexecutionRoles: ['{OTHER_ROLE}']\n"
    _write_policy(operator, allowing)
    wait_ready(kube_cluster, namespace, "later", operator)

    # A broken policy blocks every pass (fail closed), and says why; the endpoint stays.
    _write_policy(operator, allowing + "executionRoles: [\n")

    def invalid() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "later")
        return obj if condition(obj, "Degraded").get("reason") == "PolicyInvalid" else None

    blocked = wait_for("PolicyInvalid", invalid, operator=operator)
    assert "not valid YAML" in condition(blocked, "Degraded")["message"]
    assert aws.client("sagemaker").describe_endpoint(EndpointName=f"{namespace}-later")

    _write_policy(operator, allowing)
    wait_ready(kube_cluster, namespace, "later", operator)


ADMISSION = [
    ("LD_PRELOAD", {"endpoint": {"environment": {"LD_PRELOAD": "/tmp/x.so"}}}),
    ("ld_preload", {"endpoint": {"environment": {"ld_preload": "/tmp/x.so"}}}),
    ("PythonPath", {"endpoint": {"environment": {"PythonPath": "/tmp"}}}),
    (
        "metadata",
        {"model": {"mlflow": {"modelUri": "m", "trackingUri": "http://169.254.169.254/"}}},
    ),
    (
        "link-local v6",
        {"model": {"mlflow": {"modelUri": "m", "trackingUri": "HTTP://u:pw@[FE80::1]:5000/"}}},
    ),
    (
        "mapped",
        {"model": {"mlflow": {"modelUri": "m", "trackingUri": "https://[::ffff:169.254.169.254]"}}},
    ),
    ("aws v6", {"model": {"mlflow": {"modelUri": "m", "trackingUri": "http://[fd00:ec2::254]/"}}}),
    ("model uri", {"model": {"mlflow": {"modelUri": "http://169.254.170.2/v2/credentials"}}}),
]


@pytest.mark.parametrize(("case", "overrides"), ADMISSION, ids=[c for c, _ in ADMISSION])
def test_what_no_policy_can_allow_is_rejected_at_apply(
    kube_cluster: Any, namespace: str, case: str, overrides: dict[str, Any]
) -> None:
    result = apply(
        kube_cluster, namespace, _body("x", overrides, "s3://qa-sources/m/"), check=False
    )
    assert result.returncode != 0, case
    assert "always denied" in result.stderr, result.stderr
    assert "pw@" not in result.stderr


@pytest.mark.parametrize(
    "uri",
    ["http://169.254.169.254.nip.io/", "http://mlflow.example.com/", "http://[fd00:ec3::254]/"],
)
def test_look_alikes_are_admitted_and_left_to_the_operator(
    kube_cluster: Any, namespace: str, uri: str
) -> None:
    body = _body("x", {"model": {"mlflow": {"modelUri": "m", "trackingUri": uri}}}, "s3://q/m/")
    result = apply(kube_cluster, namespace, body, check=False)
    assert result.returncode == 0, result.stderr
