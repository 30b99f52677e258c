"""Hardening end to end: a source that is not an extractive-QA model is refused once and not
fetched again; what the operator made outside Kubernetes (baked images, multipart uploads) goes
when it is superseded or its resource is deleted, and nothing that is not its own goes with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient
from support.e2e import (
    PACKAGE_BUCKET,
    SOURCE_BUCKET,
    apply,
    condition,
    deployment,
    endpoint_observations,
    events,
    get,
    owned,
    package_objects,
    wait_degraded,
    wait_for,
    wait_ready,
)
from support.images import Images

pytestmark = pytest.mark.e2e

MANIFEST_TYPES = ", ".join(
    [
        DOCKER_MANIFEST,
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def _source_fetches(aws: Any) -> tuple[int, int]:
    return aws.calls("s3", "ListObjectsV2"), aws.calls("s3", "GetObject")


def test_a_source_that_is_not_a_qa_model_is_refused_once_and_not_fetched_again(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    s3_model_uri: str,
    tiny_qa_model_dir: Path,
) -> None:
    # A complete HuggingFace model directory (weights, fast tokenizer) with a masked-LM head.
    s3 = aws.client("s3")
    for path in sorted(tiny_qa_model_dir.iterdir()):
        body = path.read_bytes()
        if path.name == "config.json":
            config = json.loads(body)
            config["architectures"] = ["BertForMaskedLM"]
            body = json.dumps(config).encode()
        s3.put_object(Bucket=SOURCE_BUCKET, Key=f"masked/{path.name}", Body=body)
    masked_uri = f"s3://{SOURCE_BUCKET}/masked/"

    operator.start()
    apply(kube_cluster, namespace, deployment("masked", masked_uri))
    obj = wait_degraded(kube_cluster, namespace, "masked", operator)
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "InvalidModel", degraded
    assert f"s3 {masked_uri}" in degraded["message"], degraded["message"]
    assert "BertForMaskedLM" in degraded["message"], degraded["message"]
    assert "ForQuestionAnswering" in degraded["message"], degraded["message"]
    assert obj["status"]["phase"] == "Failed"
    first_fetch = _source_fetches(aws)
    assert first_fetch[0] >= 1 and first_fetch[1] >= 1, "the source was never read"

    # Resyncs of the refused resource leave no trace of their own: a resource that is served,
    # passing on the same timer, shows they happen (its source is fetched before the count).
    apply(kube_cluster, namespace, deployment("served", s3_model_uri))
    wait_ready(kube_cluster, namespace, "served", operator)
    fetched = _source_fetches(aws)
    describes = endpoint_observations(aws)
    wait_for(
        "several more reconcile passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert _source_fetches(aws) == fetched, "a source was fetched again on a resync"
    posted = events(kube_cluster, namespace, "masked")
    invalid = [message for reason, message in posted if reason == "InvalidModel"]
    assert len(invalid) == 1, posted
    assert "BertForMaskedLM" in invalid[0]
    assert condition(get(kube_cluster, namespace, "masked"), "Degraded")["reason"] == "InvalidModel"
    nothing: dict[str, list[str]] = {"endpoints": [], "configs": [], "models": []}
    assert owned(aws, obj["metadata"]["uid"]) == nothing
    for operation in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        assert aws.calls("sagemaker", operation) == 1, f"{operation}: only the served one's"
    uid = obj["metadata"]["uid"]
    assert all(f".masked.{uid}" not in key for key in package_objects(aws)), "no reference"

    # Another source is a new spec, not the remembered failure: and this one is a QA model.
    apply(kube_cluster, namespace, deployment("masked", s3_model_uri))
    fixed = wait_ready(kube_cluster, namespace, "masked", operator, generation=2)
    assert condition(fixed, "Degraded")["status"] == "False"


def _manifest_status(registry: Any, repository: str, reference: str) -> int:
    """HEAD of a manifest, by digest or tag, as a client pulling it would ask."""
    url = f"{registry.url}/v2/{repository}/manifests/{reference}"
    return requests.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=10).status_code


def test_a_superseded_baked_image_is_deleted_and_the_last_one_goes_with_its_resource(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    s3_model_uri: str,
    oci_registry: Any,
) -> None:
    client = RegistryClient(oci_registry.url)
    base = Images().push_base(client, "serving-base", "1.0", media_type=DOCKER_MANIFEST)
    repository = "qa-hardening"
    operator.start(
        QA_OPERATOR_SERVING_IMAGE=f"{oci_registry.host}/serving-base:1.0",
        QA_OPERATOR_IMAGE_REPOSITORY=repository,
        QA_OPERATOR_REGISTRY_ENDPOINT=oci_registry.url,
    )
    apply(kube_cluster, namespace, deployment("baked", s3_model_uri, image={"mode": "baked"}))
    first = wait_ready(kube_cluster, namespace, "baked", operator)["status"]["image"]
    assert (first["repository"], first["pushed"]) == (repository, True)
    assert _manifest_status(oci_registry, repository, first["digest"]) == 200

    changed = deployment("baked", s3_model_uri, image={"mode": "baked"})
    changed["spec"]["model"]["inference"]["maxSeqLength"] = 96
    apply(kube_cluster, namespace, changed)
    second = wait_ready(kube_cluster, namespace, "baked", operator, generation=2)["status"]["image"]
    assert second["digest"] != first["digest"]
    wait_for(
        "the superseded image deleted",
        lambda: _manifest_status(oci_registry, repository, first["digest"]) == 404,
        operator=operator,
    )
    assert _manifest_status(oci_registry, repository, first["tag"]) == 404
    assert _manifest_status(oci_registry, repository, second["digest"]) == 200
    current = get(kube_cluster, namespace, "baked")
    assert current is not None
    served = aws.client("sagemaker").describe_model(ModelName=current["status"]["modelName"])
    assert (
        served["PrimaryContainer"]["Image"]
        == f"{oci_registry.host}/{repository}@{second['digest']}"
    )

    kube_cluster.kubectl("delete", "qamd", "baked", "-n", namespace, "--wait=false")
    wait_for("released", lambda: get(kube_cluster, namespace, "baked") is None, operator=operator)
    assert _manifest_status(oci_registry, repository, second["digest"]) == 404
    assert _manifest_status(oci_registry, "serving-base", base.image_digest) == 200, "not ours"


def test_delete_aborts_unfinished_uploads_under_its_own_package_prefix_only(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("uploads", s3_model_uri))
    obj = wait_ready(kube_cluster, namespace, "uploads", operator)
    key = obj["status"]["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    # "<prefix>/_packages/<digest>/model.tar.gz", shared; before: "<prefix>/<ns>/<name>-<uid>/..."
    prefix, shared_dir, digest_dir = key.rsplit("/", 3)[:3]
    assert shared_dir == "_packages", key
    package_dir = f"{prefix}/_packages/{digest_dir}"
    owner_dir = f"{prefix}/{namespace}/uploads-{obj['metadata']['uid']}"
    s3 = aws.client("s3")
    # Its last reference goes: the package's own prefix; and the per-owner prefix of before.
    ours = [f"{package_dir}/next.tar.gz", f"{owner_dir}/sha256-{'0' * 64}/model.tar.gz"]
    namespace_dir = owner_dir.rsplit("/", 1)[0]
    others = [
        f"{namespace_dir}/someone-else-{'1' * 8}/sha256-{'0' * 64}/model.tar.gz",
        f"{owner_dir}x/sha256-{'0' * 64}/model.tar.gz",  # a longer name, not a sub-path
        f"{prefix}/_packages/sha256-{'0' * 64}/model.tar.gz",  # another package
        f"elsewhere/{digest_dir}/model.tar.gz",
    ]
    for upload_key in ours + others:
        s3.create_multipart_upload(Bucket=PACKAGE_BUCKET, Key=upload_key)

    kube_cluster.kubectl("delete", "qamd", "uploads", "-n", namespace, "--wait=false")
    wait_for("released", lambda: get(kube_cluster, namespace, "uploads") is None, operator=operator)
    uploads = s3.list_multipart_uploads(Bucket=PACKAGE_BUCKET).get("Uploads", [])
    assert sorted(u["Key"] for u in uploads) == sorted(others)
    assert package_objects(aws) == []
    assert owned(aws, obj["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
