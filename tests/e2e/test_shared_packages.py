"""One source deployed twice: one package upload, one object, kept until its last user goes."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import (
    PACKAGE_BUCKET,
    apply,
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
