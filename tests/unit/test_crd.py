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


def _endpoint_schema() -> dict[str, Any]:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(spec["properties"]["endpoint"])


def test_instance_count_has_no_schema_default_so_serverless_is_admitted() -> None:
    # A default of 1 would be filled in next to `serverless`, and the rule below rejects that.
    endpoint = _endpoint_schema()
    assert "default" not in endpoint["properties"]["instanceCount"]
    rules = [v["rule"] for v in endpoint["x-kubernetes-validations"]]
    assert "!(has(self.serverless) && has(self.instanceCount))" in rules


def test_name_and_region_rules_cover_setting_and_removing_not_only_changing() -> None:
    # A transition rule on the field itself is skipped when the old or new value is absent;
    # on the (required) parent object it runs on every update.
    endpoint = _endpoint_schema()
    by_path = {v.get("fieldPath"): v for v in endpoint["x-kubernetes-validations"]}
    for field in ("name", "region"):
        rule = by_path[f".{field}"]
        assert f"has(self.{field}) == has(oldSelf.{field})" in rule["rule"]
        assert f"self.{field} == oldSelf.{field}" in rule["rule"]
        assert rule["message"].startswith(f"endpoint.{field} is immutable")
        assert "x-kubernetes-validations" not in endpoint["properties"][field]
    assert "endpoint" in _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["required"]


def test_serverless_exclusions_and_async_smoke_rule_are_admission_rules() -> None:
    # What SageMaker refuses for serverless and what the synchronous smoke test cannot ask
    # are rejected at apply, not found later as a failed CreateEndpointConfig.
    endpoint = _endpoint_schema()
    messages = [v["message"] for v in endpoint["x-kubernetes-validations"]]
    assert any(m.startswith("endpoint.serverless cannot be combined with async") for m in messages)
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (async_rule,) = spec["x-kubernetes-validations"]
    assert "has(self.endpoint.async)" in async_rule["rule"]
    serverless = endpoint["properties"]["serverless"]
    (provisioned,) = serverless["x-kubernetes-validations"]
    assert "self.provisionedConcurrency <= self.maxConcurrency" in provisioned["rule"]


def test_autoscaling_range_and_initial_count_are_admission_rules() -> None:
    endpoint = _endpoint_schema()
    rules = " ".join(v["rule"] for v in endpoint["x-kubernetes-validations"])
    assert "self.autoscaling.minInstances" in rules and "self.autoscaling.maxInstances" in rules
    scaling = endpoint["properties"]["autoscaling"]
    assert scaling["required"] == ["minInstances", "maxInstances", "targetInvocationsPerInstance"]
    (range_rule,) = scaling["x-kubernetes-validations"]
    assert range_rule["rule"] == "self.minInstances <= self.maxInstances"


def test_deployment_strategies_and_their_blocks_are_admission_rules() -> None:
    endpoint = _endpoint_schema()
    deployment = endpoint["properties"]["deployment"]
    strategies = ["AllAtOnce", "Canary", "Linear", "Rolling"]
    assert deployment["properties"]["strategy"]["enum"] == strategies
    messages = [v["message"] for v in deployment["x-kubernetes-validations"]]
    for block in ("canary", "linear", "rolling"):
        strategy = block.capitalize()
        assert f"endpoint.deployment.{block} is required with strategy {strategy}" in messages
    rules = [v["rule"] for v in endpoint["x-kubernetes-validations"]]
    assert any("self.deployment.strategy != 'Rolling' || !has(self.serverless)" in r for r in rules)
