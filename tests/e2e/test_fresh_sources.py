"""spec.model.refresh OnResync end to end: new weights under the same S3 prefix, or a HuggingFace
branch moved to a new commit, roll out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from model.fake_hub import fake_hub
from support.e2e import SOURCE_BUCKET, apply, deployment, get, wait_for, wait_ready

pytestmark = pytest.mark.e2e


def test_new_weights_under_the_same_s3_prefix_are_packaged_and_rolled_out_after_a_resync(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    model = {"s3": {"uri": s3_model_uri}, "refresh": "OnResync"}
    apply(kube_cluster, namespace, deployment("fresh", s3_model_uri, model=model))
    first = wait_ready(kube_cluster, namespace, "fresh", operator)["status"]
    updates = aws.calls("sagemaker", "UpdateEndpoint")

    # New files under the same prefix, as a training job would leave them (same spec).
    s3 = aws.client("s3")
    key = "tiny/config.json"
    config = json.loads(s3.get_object(Bucket=SOURCE_BUCKET, Key=key)["Body"].read())
    config["retrained"] = "2026-11-27"
    s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=json.dumps(config).encode())

    def rolled_out() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "fresh") or {}
        status = obj.get("status", {})
        moved = status.get("endpointConfigName") != first["endpointConfigName"]
        return obj if moved and status.get("endpointStatus") == "InService" else None

    wait_for("the new weights rolled out", rolled_out, operator=operator)
    now = wait_ready(kube_cluster, namespace, "fresh", operator)["status"]
    assert now["modelPackage"]["sourceKey"] != first["modelPackage"]["sourceKey"]
    assert now["modelPackage"]["digest"] != first["modelPackage"]["digest"]
    assert now["modelName"] != first["modelName"]
    assert aws.calls("sagemaker", "UpdateEndpoint") == updates + 1
    endpoint = aws.client("sagemaker").describe_endpoint(EndpointName=f"{namespace}-fresh")
    assert endpoint["EndpointConfigName"] == now["endpointConfigName"]


def test_a_moved_huggingface_branch_is_packaged_and_rolled_out_after_a_resync(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    tiny_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    model_dir = tmp_path / "hub-model"
    shutil.copytree(tiny_qa_model_dir, model_dir)
    with fake_hub("acme/tiny-qa", model_dir) as hub:
        operator.start(HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"))
        body = deployment("hub-fresh", "s3://unused/")
        body["spec"]["model"] = {
            "huggingface": {"id": "acme/tiny-qa", "revision": "main"},
            "inference": {"maxSeqLength": 128, "docStride": 32},
            "refresh": "OnResync",
        }
        apply(kube_cluster, namespace, body)
        first = wait_ready(kube_cluster, namespace, "hub-fresh", operator)["status"]
        assert first["modelPackage"]["sourceVersion"] == f"hf-{hub.commit}"
        updates = aws.calls("sagemaker", "UpdateEndpoint")

        # A push to the branch: new files, a new commit (same spec).
        config = json.loads((model_dir / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps({**config, "retrained": "2026-11-27"}))
        hub.commit = "fedcba9876543210fedcba9876543210fedcba98"

        def rolled_out() -> dict[str, Any] | None:
            obj = get(kube_cluster, namespace, "hub-fresh") or {}
            status = obj.get("status", {})
            moved = status.get("endpointConfigName") != first["endpointConfigName"]
            return obj if moved and status.get("endpointStatus") == "InService" else None

        wait_for("the moved branch rolled out", rolled_out, operator=operator)
        now = wait_ready(kube_cluster, namespace, "hub-fresh", operator)["status"]
        assert now["modelPackage"]["sourceVersion"] == f"hf-{hub.commit}"
        assert now["modelPackage"]["sourceKey"] != first["modelPackage"]["sourceKey"]
        assert now["modelPackage"]["digest"] != first["modelPackage"]["digest"]
        assert now["modelName"] != first["modelName"]
        assert aws.calls("sagemaker", "UpdateEndpoint") == updates + 1
        # Resolving is one revision-info request; files are fetched at the commit, never the branch.
        assert set(hub.revision_requests()) == {"main"}
        resolved = [path for _, path, _ in hub.requests if "/resolve/" in path]
        assert resolved and not any("/resolve/main/" in path for path in resolved)
