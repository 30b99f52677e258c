"""What users apply: the install manifests and the example are accepted by a real API server,
`kubectl explain` tells the story of every field, and the Argo CD health check merges in."""

from __future__ import annotations

import json
import os
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


def _objects(rendered: str) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(rendered) if doc}


def test_the_kustomize_base_renders_what_apply_f_installs_and_an_overlay_pins_the_image(
    kube_cluster: Any, operator_kubeconfig: Path, tmp_path: Path
) -> None:
    # kubectl's own kustomize (sigs.k8s.io/kustomize, built into the kubectl we test with).
    rendered = kube_cluster.kubectl("kustomize", str(REPO / "manifests")).stdout
    plain = "---\n".join(
        path.read_text() for path in [*sorted((REPO / "crds").glob("*.yaml")),
                                      *sorted((REPO / "manifests").glob("*.yaml"))]
    )  # fmt: skip
    assert _objects(rendered) == _objects(plain)

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    pinned = "registry.example/qa/operator@sha256:" + "c" * 64
    name, _, digest = pinned.partition("@")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(REPO / "manifests", overlay)],
                "images": [
                    {"name": "ghcr.io/qa-operator/qa-operator", "newName": name, "digest": digest}
                ],
            }
        )
    )
    kube_cluster.kubectl("apply", "-k", str(overlay))
    image = kube_cluster.kubectl(
        "get", "deployment", "qa-operator", "-n", "qa-operator",
        "-o", "jsonpath={.spec.template.spec.containers[0].image}",
    ).stdout  # fmt: skip
    assert image == pinned
    services = kube_cluster.kubectl("get", "service", "-n", "qa-operator", "-o", "name").stdout
    assert "service/qa-operator-metrics" in services.split()
