"""The CRD file itself: parseable, every schema field described, printer columns as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CRD = Path(__file__).resolve().parents[2] / "crds/qamodeldeployments.serving.qaoperator.io.yaml"


def _version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return dict(version)


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    missing = [] if "description" in node or path.endswith((".metadata", ".items")) else [path]
    for name, child in node.get("properties", {}).items():
        if name in ("config", "generation") and path.endswith(("lastAttempt", "lastFailure")):
            continue
        missing += _undescribed(child, f"{path}.{name}")
    if "items" in node:
        missing += _undescribed(node["items"], f"{path}.items")
    return missing


def test_every_spec_field_has_a_description_for_kubectl_explain() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    assert _undescribed(schema["properties"]["spec"], "spec") == []


def test_printer_columns_tell_endpoint_status_ready_instance_and_age() -> None:
    names = [
        column["name"]
        for column in _version()["additionalPrinterColumns"]
        if column.get("priority", 0) == 0
    ]
    assert names == ["Endpoint", "Status", "Ready", "Instance", "Age"]


def test_status_is_a_subresource() -> None:
    assert _version()["subresources"] == {"status": {}}
