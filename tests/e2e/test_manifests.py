"""What users apply: the install manifests and the example are accepted by a real API server,
`kubectl explain` tells the story of every field, and the Argo CD health check merges in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_install_manifests_and_example_are_accepted(
    kube_cluster: Any, operator_kubeconfig: Path
) -> None:
    result = kube_cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        str(REPO / "manifests"),
        "-f",
        str(REPO / "manifests/examples/bert-squad.yaml"),
    )
    created = result.stdout
    for kind in (
        "deployment.apps/qa-operator",
        "configmap/qa-operator",
        "clusterrole.rbac.authorization.k8s.io/qa-operator",
        "qamodeldeployment.serving.qaoperator.io/bert-squad",
    ):
        assert kind in created, created


def test_kubectl_explain_describes_the_fields(kube_cluster: Any) -> None:
    explained = kube_cluster.kubectl("explain", "qamodeldeployment.spec.endpoint").stdout
    assert "SageMaker endpoint name" in explained
    assert "instanceCount" in explained and "Number of instances" in explained
    status = kube_cluster.kubectl("explain", "qamd.status.conditions").stdout
    assert "Ready, Progressing and Degraded" in status


def test_the_argocd_health_check_merges_into_argocd_cm_as_the_readme_says(
    kube_cluster: Any,
) -> None:
    patch_file = REPO / "manifests/argocd/argocd-cm-health.yaml"
    ((key, script),) = yaml.safe_load(patch_file.read_text())["data"].items()
    kube_cluster.kubectl("create", "namespace", "argocd")
    try:
        # Argo CD's own settings are already there; the merge must keep them.
        kube_cluster.kubectl(
            "-n", "argocd", "create", "configmap", "argocd-cm", "--from-literal=url=https://cd"
        )
        kube_cluster.kubectl(
            "-n", "argocd", "patch", "configmap", "argocd-cm", "--type", "merge",
            "--patch-file", str(patch_file),
        )  # fmt: skip
        data = kube_cluster.kubectl(
            "-n", "argocd", "get", "configmap", "argocd-cm", "-o", "json"
        ).stdout
    finally:
        kube_cluster.kubectl("delete", "namespace", "argocd", "--wait=false", check=False)
    merged = json.loads(data)["data"]
    assert merged == {"url": "https://cd", key: script}
    assert key == "resource.customizations.health.serving.qaoperator.io_QAModelDeployment"
