"""Model sources end to end: an MLflow model registry, and the HuggingFace hub's request path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest

from support.e2e import apply, deployment, get, wait_for, wait_ready

pytestmark = pytest.mark.e2e


def test_a_registered_mlflow_model_is_deployed_as_packaged(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    mlflow_server: str,
    tiny_qa_package: Any,
) -> None:
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment(f"qa-{namespace}")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(tiny_qa_package.path), artifact_path="model")
    client.set_terminated(run.info.run_id)
    name = f"qa-{namespace}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
    )

    operator.start()
    body = deployment("registry", "s3://unused/")
    body["spec"]["model"] = {
        "mlflow": {"modelUri": f"models:/{name}/{version.version}", "trackingUri": mlflow_server}
    }
    apply(kube_cluster, namespace, body)
    obj = wait_ready(kube_cluster, namespace, "registry", operator, timeout=180)
    assert obj["status"]["modelPackage"]["digest"] == tiny_qa_package.digest


def test_an_unreachable_hub_is_retried_with_the_reason_in_progressing(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, tmp_path: Path
) -> None:
    operator.start(HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path))
    body = deployment("hub", "s3://unused/")
    body["spec"]["model"] = {"huggingface": {"id": "deepset/tinyroberta-squad2"}}
    apply(kube_cluster, namespace, body)

    def progressing() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "hub") or {}
        for item in obj.get("status", {}).get("conditions", []):
            if item["type"] == "Progressing" and item["reason"] == "ModelDownloadFailed":
                return item
        return None

    found = wait_for("ModelDownloadFailed", progressing, operator=operator)
    assert "huggingface deepset/tinyroberta-squad2@main" in found["message"]
    assert "Connection refused" in found["message"]
