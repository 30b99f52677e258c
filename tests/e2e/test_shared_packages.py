"""Packages at scale: one upload per distinct package, shared until its last user goes, and
packaging that runs beside the reconciles, not in them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.e2e import (
    PACKAGE_BUCKET,
    apply,
    condition,
    deployment,
    events,
    get,
    package_objects,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def test_two_resources_with_one_source_upload_one_package_kept_until_both_are_gone(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("first", s3_model_uri))
    apply(kube_cluster, namespace, deployment("second", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "first", operator)
    second = wait_ready(kube_cluster, namespace, "second", operator)

    uri = first["status"]["modelPackage"]["uri"]
    assert second["status"]["modelPackage"]["uri"] == uri
    key = uri.removeprefix(f"s3://{PACKAGE_BUCKET}/")
    refs = key.removesuffix("model.tar.gz") + "refs/"
    marker = {
        name: f"{refs}{namespace}.{name}.{obj['metadata']['uid']}"
        for name, obj in (("first", first), ("second", second))
    }
    assert sorted(package_objects(aws)) == sorted([key, *marker.values()])
    uploads = [
        message
        for name in ("first", "second")
        for reason, message in events(kube_cluster, namespace, name)
        if reason == "UploadedPackage"
    ]
    assert uploads == [f"uploaded {uri}"]

    kube_cluster.kubectl("delete", "qamd", "first", "-n", namespace, "--wait=false")
    wait_for(
        "first released", lambda: get(kube_cluster, namespace, "first") is None, operator=operator
    )
    assert sorted(package_objects(aws)) == sorted([key, marker["second"]])
    served = aws.client("sagemaker").describe_model(ModelName=second["status"]["modelName"])
    assert served["PrimaryContainer"]["ModelDataUrl"] == uri

    kube_cluster.kubectl("delete", "qamd", "second", "-n", namespace, "--wait=false")
    wait_for(
        "second released", lambda: get(kube_cluster, namespace, "second") is None, operator=operator
    )
    assert package_objects(aws) == []


def test_a_resource_whose_model_is_being_packaged_says_so_then_becomes_ready(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    s3_model_uri: str,
    tmp_path: Path,
) -> None:
    # The source's files come slowly: packaging takes seconds, in the packaging pool. Its own
    # work dir: the session's package cache may hold this source's package already.
    aws.inject_fault("s3", "GetObject", "latency", latency_s=2.0, count=3)
    operator.start(QA_OPERATOR_WORK_DIR=str(tmp_path / "work"))
    apply(kube_cluster, namespace, deployment("slow", s3_model_uri))

    packaging = wait_for(
        "the Packaging condition",
        lambda: (
            (obj := get(kube_cluster, namespace, "slow")) is not None
            and condition(obj, "Progressing").get("reason") == "Packaging"
            and obj
        ),
        operator=operator,
    )
    progressing = condition(packaging, "Progressing")
    assert progressing["status"] == "True"
    assert progressing["message"] == f"packaging s3 {s3_model_uri}"
    assert packaging["status"]["phase"] == "Packaging"
    assert condition(packaging, "Ready")["status"] == "False"
    assert aws.client("sagemaker").list_models()["Models"] == [], "nothing created before it"

    ready = wait_ready(kube_cluster, namespace, "slow", operator)
    assert condition(ready, "Progressing")["reason"] != "Packaging"
    assert ready["status"]["modelPackage"]["uri"].endswith("/model.tar.gz")
