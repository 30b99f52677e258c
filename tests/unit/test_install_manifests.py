"""The install manifests as `kubectl apply -f manifests/` reads them: files in name order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_the_namespace_is_created_before_anything_that_lives_in_it() -> None:
    docs = _documents()
    assert docs[0]["kind"] == "Namespace"
    namespace = docs[0]["metadata"]["name"]
    for doc in docs[1:]:
        meta = doc["metadata"]
        assert isinstance(meta, dict)
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta.get("namespace") == namespace, doc["kind"]


def test_the_deployment_runs_as_the_service_account_that_rbac_binds() -> None:
    docs = {str(doc["kind"]): doc for doc in _documents()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    subjects = docs["ClusterRoleBinding"]["subjects"]
    assert {
        "kind": "ServiceAccount",
        "name": pod["serviceAccountName"],
        "namespace": "qa-operator",
    } in subjects
