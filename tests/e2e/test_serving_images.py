"""Serving images published by the operator through the registry API: `s3` and `baked` modes."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient
from support.e2e import apply, deployment, get, wait_for, wait_ready
from support.images import Images

pytestmark = pytest.mark.e2e


def test_baked_and_s3_modes_reach_ready_with_image_digests(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    s3_model_uri: str,
    oci_registry: Any,
) -> None:
    client = RegistryClient(oci_registry.url)
    images = Images()
    base = images.push_base(client, "serving-base", "1.0", media_type=DOCKER_MANIFEST)
    operator.start(
        QA_OPERATOR_SERVING_IMAGE=f"{oci_registry.host}/serving-base:1.0",
        QA_OPERATOR_IMAGE_REPOSITORY="qa-serving",
        QA_OPERATOR_REGISTRY_ENDPOINT=oci_registry.url,
    )
    apply(kube_cluster, namespace, deployment("shared", s3_model_uri))
    apply(kube_cluster, namespace, deployment("baked", s3_model_uri, image={"mode": "baked"}))
    shared = wait_ready(kube_cluster, namespace, "shared", operator)
    baked = wait_ready(kube_cluster, namespace, "baked", operator)

    sm = aws.client("sagemaker")
    shared_status, baked_status = shared["status"], baked["status"]
    assert shared_status["image"]["digest"] == base.image_digest
    assert shared_status["image"]["uri"] == f"{oci_registry.host}/qa-serving@{base.image_digest}"
    shared_model = sm.describe_model(ModelName=shared_status["modelName"])["PrimaryContainer"]
    assert shared_model["Image"] == shared_status["image"]["uri"]
    assert shared_model["ModelDataUrl"] == shared_status["modelPackage"]["uri"]

    digest = baked_status["image"]["digest"]
    assert digest.startswith("sha256:") and digest != base.image_digest
    baked_model = sm.describe_model(ModelName=baked_status["modelName"])["PrimaryContainer"]
    assert baked_model["Image"] == f"{oci_registry.host}/qa-serving@{digest}"
    assert "ModelDataUrl" not in baked_model
    assert "uri" not in baked_status["modelPackage"]

    pulled = images.pull(client, "qa-serving", digest)
    model_files = {p for p in pulled.files if p.startswith("opt/ml/model/")}
    assert "opt/ml/model/MLmodel" in model_files
    assert "opt/ml/model/artifacts/model/config.json" in model_files
    assert pulled.config["config"]["Entrypoint"] == base.config["config"]["Entrypoint"]
    assert pulled.config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    repositories = aws.client("ecr").describe_repositories()["repositories"]
    assert [r["repositoryName"] for r in repositories] == ["qa-serving"]

    # The baked image goes with its resource (status.image survives the API server's schema);
    # the shared image stays.
    assert baked_status["image"]["pushed"] is True
    for name in ("baked", "shared"):
        kube_cluster.kubectl("delete", "qamd", name, "-n", namespace, "--wait=false")
    wait_for(
        "both released",
        lambda: all(get(kube_cluster, namespace, name) is None for name in ("baked", "shared")),
        operator=operator,
    )
    assert client.manifest_digest("qa-serving", digest) is None
    assert client.manifest_digest("qa-serving", base.image_digest) == base.image_digest
