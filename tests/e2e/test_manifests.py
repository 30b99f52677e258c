"""What users apply: the install manifests and the example are accepted by a real API server, and
`kubectl explain` tells the story of every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
