"""spec.suspend end to end: hibernate deletes only the endpoint; resume serves the kept config."""

from __future__ import annotations

import datetime as dt
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
    package_objects,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

CREATES = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")


def test_suspend_keeps_config_model_and_package_and_resume_serves_them_again(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("sleepy", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "sleepy", operator)["status"]
    endpoint = f"{namespace}-sleepy"
    sm = aws.client("sagemaker")
    packages = package_objects(aws)
    creates = {op: aws.calls("sagemaker", op) for op in CREATES}
    uploads = aws.calls("s3", "PutObject") + aws.calls("s3", "CreateMultipartUpload")

    apply(kube_cluster, namespace, deployment("sleepy", s3_model_uri, suspend=True))

    def suspended() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "sleepy")
        status = (obj or {}).get("status", {})
        return (
            obj
            if (status.get("phase"), status.get("observedGeneration")) == ("Suspended", 2)
            else None
        )

    obj = wait_for("sleepy Suspended", suspended, operator=operator)
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Ready")["reason"] == "Suspended"
    assert condition(obj, "Degraded")["status"] == "False"
    assert obj["status"]["suspension"]["suspendedAt"]
    with pytest.raises(ClientError):
        sm.describe_endpoint(EndpointName=endpoint)
    assert sm.describe_endpoint_config(EndpointConfigName=first["endpointConfigName"])
    assert sm.describe_model(ModelName=first["modelName"])
    assert package_objects(aws) == packages

    describes = endpoint_observations(aws)
    wait_for(
        "several suspended passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert aws.calls("sagemaker", "CreateEndpoint") == creates["CreateEndpoint"]

    apply(kube_cluster, namespace, deployment("sleepy", s3_model_uri, suspend=False))
    resumed = wait_ready(kube_cluster, namespace, "sleepy", operator, generation=3)["status"]
    assert resumed["endpointConfigName"] == first["endpointConfigName"]
    assert resumed["modelPackage"] == first["modelPackage"]
    assert (
        sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        == (first["endpointConfigName"])
    )
    assert aws.calls("sagemaker", "CreateEndpoint") == creates["CreateEndpoint"] + 1
    assert aws.calls("sagemaker", "CreateModel") == creates["CreateModel"], "repackaged"
    assert aws.calls("sagemaker", "CreateEndpointConfig") == creates["CreateEndpointConfig"]
    assert aws.calls("s3", "PutObject") + aws.calls("s3", "CreateMultipartUpload") == uploads
    timed = wait_for(
        "the time to resume",
        lambda: (
            (get(kube_cluster, namespace, "sleepy") or {})
            .get("status", {})
            .get("suspension", {})
            .get("resumeSeconds")
            is not None
        ),
        operator=operator,
    )
    assert timed
    reasons = [reason for reason, _ in events(kube_cluster, namespace, "sleepy")]
    assert "Resumed" in reasons


def test_schedule_keeps_an_endpoint_asleep_outside_its_windows_and_wakes_it_inside(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    # A one-minute window two days from now: asleep whenever the test runs.
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%a")
    operator.start()
    asleep = {"timezone": "UTC", "awake": [f"{later} 00:00-00:01"]}
    apply(kube_cluster, namespace, deployment("nightly", s3_model_uri, schedule=asleep))

    def suspended() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "nightly")
        return obj if (obj or {}).get("status", {}).get("phase") == "Suspended" else None

    obj = wait_for("nightly Suspended", suspended, operator=operator)
    assert "spec.schedule" in condition(obj, "Ready")["message"]
    assert aws.calls("sagemaker", "CreateEndpoint") == 0

    awake = {"timezone": "Europe/Copenhagen", "awake": ["Mon-Sun 00:00-24:00"]}
    apply(kube_cluster, namespace, deployment("nightly", s3_model_uri, schedule=awake))
    ready = wait_ready(kube_cluster, namespace, "nightly", operator, generation=2)
    assert ready["status"]["endpointStatus"] == "InService"
    assert aws.calls("sagemaker", "CreateEndpoint") == 1


def test_the_schedule_suspends_at_its_boundary_not_at_the_next_resync(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    # Resyncs ten minutes apart: only a pass woken at the boundary can suspend within the wait.
    operator.start(QA_OPERATOR_RESYNC_SECONDS="600")
    now = dt.datetime.now(dt.UTC)
    end = (now + dt.timedelta(minutes=2)).replace(second=0, microsecond=0)  # 60-120 s away
    start = end - dt.timedelta(hours=3)
    window = {"timezone": "UTC", "awake": [f"Mon-Sun {start:%H:%M}-{end:%H:%M}"]}
    apply(kube_cluster, namespace, deployment("closing", s3_model_uri, schedule=window))
    wait_ready(kube_cluster, namespace, "closing", operator)

    def suspended() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "closing")
        return obj if (obj or {}).get("status", {}).get("phase") == "Suspended" else None

    obj = wait_for("closing Suspended at its boundary", suspended, timeout=300, operator=operator)
    assert "spec.schedule" in condition(obj, "Ready")["message"]
    suspended_at = dt.datetime.fromisoformat(obj["status"]["suspension"]["suspendedAt"])
    assert suspended_at >= end, "suspended before the window closed"
    with pytest.raises(ClientError):
        aws.client("sagemaker").describe_endpoint(EndpointName=f"{namespace}-closing")
