"""Failures and how the operator reports them: rollbacks, throttling, crashes, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import (
    apply,
    assert_rejected_at_apply,
    condition,
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


def test_failed_update_is_degraded_with_the_reason_and_not_retried_until_the_spec_changes(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("flaky", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "flaky", operator)
    endpoint = f"{namespace}-flaky"
    aws.fail_next_endpoint_update(endpoint, "The primary container failed ping health checks")

    resized = {"instanceType": "ml.m5.xlarge"}  # a new config (a count alone is set in place)
    apply(kube_cluster, namespace, deployment("flaky", s3_model_uri, endpoint=resized))
    degraded = wait_degraded(kube_cluster, namespace, "flaky", operator)
    assert degraded["status"]["phase"] == "Degraded"
    assert condition(degraded, "Degraded")["reason"] == "UpdateRolledBack"
    assert "failed ping health checks" in condition(degraded, "Degraded")["message"]
    assert condition(degraded, "Ready")["status"] == "False"
    sm = aws.client("sagemaker")
    assert (
        sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        == first["status"]["endpointConfigName"]
    )

    updates = aws.calls("sagemaker", "UpdateEndpoint")
    describes = endpoint_observations(aws)
    wait_for(
        "several more reconcile passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("sagemaker", "UpdateEndpoint") == updates, "the failed config was retried"

    fixed_spec = {"instanceType": "ml.c5.xlarge", "instanceCount": 2}
    apply(kube_cluster, namespace, deployment("flaky", s3_model_uri, endpoint=fixed_spec))
    fixed = wait_ready(kube_cluster, namespace, "flaky", operator, generation=3)
    assert condition(fixed, "Degraded")["status"] == "False"
    variant = sm.describe_endpoint_config(EndpointConfigName=fixed["status"]["endpointConfigName"])
    assert variant["ProductionVariants"][0]["InitialInstanceCount"] == 2


def test_failed_endpoint_reports_sagemakers_failure_reason(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.fail_next_endpoint_creation(f"{namespace}-broken", "Image pull failed: access denied")
    operator.start()
    apply(kube_cluster, namespace, deployment("broken", s3_model_uri))
    failed = wait_for(
        "Failed",
        lambda: (
            (o := get(kube_cluster, namespace, "broken"))
            and o.get("status", {}).get("endpointStatus") == "Failed"
            and condition(o, "Degraded").get("status") == "True"
            and o
        ),
        operator=operator,
    )
    assert failed["status"]["failureReason"] == "Image pull failed: access denied"
    assert condition(failed, "Degraded")["reason"] == "EndpointFailed"
    assert "Image pull failed" in condition(failed, "Ready")["message"]

    apply(
        kube_cluster, namespace, deployment("broken", s3_model_uri, endpoint={"instanceCount": 2})
    )
    recovered = wait_ready(kube_cluster, namespace, "broken", operator, generation=2)
    assert recovered["status"]["endpointStatus"] == "InService"
    assert owned(aws, failed["metadata"]["uid"])["endpoints"] == [f"{namespace}-broken"]


def test_throttling_and_server_errors_still_converge(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.inject_fault("sagemaker", "*", "throttle", rate=0.5)
    aws.inject_fault("s3", "PutObject", "5xx", count=2, http_status=503)
    operator.start()
    apply(kube_cluster, namespace, deployment("busy", s3_model_uri))
    obj = wait_ready(kube_cluster, namespace, "busy", operator, timeout=180)
    assert aws.calls("sagemaker", "CreateEndpoint") >= 1
    aws.clear_faults()
    assert owned(aws, obj["metadata"]["uid"]) == {
        "endpoints": [f"{namespace}-busy"],
        "configs": [obj["status"]["endpointConfigName"]],
        "models": [obj["status"]["modelName"]],
    }


def test_a_streak_of_throttling_is_one_warning_event_not_one_per_retry(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.inject_fault("sagemaker", "CreateModel", "throttle")
    process = operator.start()
    apply(kube_cluster, namespace, deployment("throttled", s3_model_uri))
    retried = "failed temporarily: transient: Progressing=True (AwsThrottlingException)"
    try:
        wait_for(
            "three retries after throttling",
            lambda: process.log(lines=10_000).count(retried) >= 3,
            timeout=180,
            operator=operator,
        )
    finally:
        aws.clear_faults()
    wait_ready(kube_cluster, namespace, "throttled", operator)

    posted = events(kube_cluster, namespace, "throttled")
    throttled = [message for reason, message in posted if reason == "AwsThrottlingException"]
    # One per streak; a resync pass that reads the status just before the retry's own patch
    # lands can add a second. Never one per retry.
    assert 1 <= len(throttled) <= 2, posted
    assert throttled[0] == "CreateModel: ThrottlingException: Rate exceeded"
    assert not [m for _, m in posted if "failed temporarily" in m], posted


def test_operator_killed_mid_create_makes_exactly_one_of_each(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    aws.set_endpoint_lifecycle(creating_seconds=6)
    first = operator.start()
    apply(kube_cluster, namespace, deployment("crash", s3_model_uri))
    sm = aws.client("sagemaker")
    wait_for(
        "CreateEndpoint sent",
        lambda: any(
            e["EndpointName"] == f"{namespace}-crash" for e in sm.list_endpoints()["Endpoints"]
        ),
        operator=operator,
    )
    first.kill()
    operator.start()
    obj = wait_ready(kube_cluster, namespace, "crash", operator)
    assert owned(aws, obj["metadata"]["uid"]) == {
        "endpoints": [f"{namespace}-crash"],
        "configs": [obj["status"]["endpointConfigName"]],
        "models": [obj["status"]["modelName"]],
    }
    assert aws.calls("sagemaker", "CreateEndpoint") == 1


def test_an_error_only_aws_can_find_is_reported_with_the_aws_message(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(
        kube_cluster,
        namespace,
        deployment("odd", s3_model_uri, endpoint={"instanceType": "ml.zz9.huge"}),
    )
    obj = wait_degraded(kube_cluster, namespace, "odd", operator)
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "AwsValidationException"
    assert "CreateEndpointConfig" in degraded["message"]
    assert "ml.zz9.huge" in degraded["message"]
    assert obj["status"]["phase"] == "Failed"


def _valid() -> dict[str, Any]:
    return deployment("bad", "s3://qa-sources/tiny/")


def _with(path: str, value: Any) -> dict[str, Any]:
    body = _valid()
    node = body["spec"]
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return body


INVALID = [
    ("two sources", _with("model.huggingface", {"id": "bert-base-uncased"}), "exactly one of"),
    ("no source", _with("model.s3", None), "exactly one of"),
    ("bad s3 uri", _with("model.s3", {"uri": "http://bucket/x"}), "spec.model.s3.uri"),
    ("bad endpoint name", _with("endpoint.name", "has_underscore"), "spec.endpoint.name"),
    (
        "serverless and instances",
        _with("endpoint.serverless", {"memorySizeInMB": 2048, "maxConcurrency": 2}),
        "exactly one of endpoint.instanceType",
    ),
    ("no compute", _with("endpoint.instanceType", None), "exactly one of endpoint.instanceType"),
    ("count out of range", _with("endpoint.instanceCount", 0), "spec.endpoint.instanceCount"),
    ("bad role", _with("endpoint.executionRoleArn", "role/x"), "spec.endpoint.executionRoleArn"),
    ("bad region", _with("endpoint.region", "mars-1"), "spec.endpoint.region"),
    ("stride too big", _with("model.inference.docStride", 200), "docStride must be smaller"),
    ("bad quantize", _with("model.inference.quantize", "int4"), "spec.model.inference.quantize"),
    ("reserved tag", _with("endpoint.tags", {"aws:owner": "me"}), "tag keys"),
    ("bad env name", _with("endpoint.environment", {"1BAD": "x"}), "environment variable names"),
    ("unknown field", _with("endpoint.instanceFamily", "m5"), "unknown field"),
    (
        "bad memory",
        _with("endpoint.serverless", {"memorySizeInMB": 1000, "maxConcurrency": 1}),
        "spec.endpoint.serverless.memorySizeInMB",
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_invalid_specs_are_rejected_at_apply_with_a_clear_message(
    kube_cluster: Any, namespace: str, body: dict[str, Any], expected: str
) -> None:
    assert_rejected_at_apply(kube_cluster, namespace, body, expected)


def test_endpoint_name_and_region_are_immutable(kube_cluster: Any, namespace: str) -> None:
    apply(kube_cluster, namespace, _with("endpoint.name", "fixed-name"))
    renamed = apply(kube_cluster, namespace, _with("endpoint.name", "other-name"), check=False)
    assert renamed.returncode != 0
    assert "endpoint.name is immutable" in renamed.stderr
