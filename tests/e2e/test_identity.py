"""What a resource is: serverless endpoints are admitted and served, an endpoint's name and region
never change under a resource, and two resources never share a Model or EndpointConfig."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qa_operator.registry.client import RegistryClient
from support.e2e import apply, deployment, get, owned, wait_for, wait_ready
from support.images import Images

pytestmark = pytest.mark.e2e

SERVERLESS = {"memorySizeInMB": 2048, "maxConcurrency": 3}


def _endpoint_only(body: dict[str, Any], **endpoint: Any) -> dict[str, Any]:
    """The body with its endpoint section replaced (no instanceType/instanceCount unless given)."""
    body["spec"]["endpoint"] = {"tags": {"team": "qa"}, **endpoint}
    return body


def _dry_run(cluster: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the API server would store: admission and defaulting, nothing persisted."""
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
        input=json.dumps(body),
    )  # fmt: skip
    stored: dict[str, Any] = json.loads(result.stdout)
    return stored


def test_serverless_is_admitted_and_served_and_instances_default_to_one(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    serverless = _endpoint_only(deployment("lambda", s3_model_uri), serverless=SERVERLESS)
    single = _endpoint_only(deployment("single", s3_model_uri), instanceType="ml.m5.large")
    assert "instanceCount" not in _dry_run(kube_cluster, namespace, serverless)["spec"]["endpoint"]
    assert "instanceCount" not in _dry_run(kube_cluster, namespace, single)["spec"]["endpoint"]
    # The rule against a real combination stays.
    both = _endpoint_only(deployment("both", s3_model_uri), serverless=SERVERLESS, instanceCount=1)
    rejected = apply(kube_cluster, namespace, both, check=False)
    assert rejected.returncode != 0
    assert "instanceCount cannot be combined with endpoint.serverless" in rejected.stderr

    operator.start()
    apply(kube_cluster, namespace, serverless)
    apply(kube_cluster, namespace, single)
    sm = aws.client("sagemaker")

    ready = wait_ready(kube_cluster, namespace, "lambda", operator)
    config = sm.describe_endpoint_config(EndpointConfigName=ready["status"]["endpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    endpoint = sm.describe_endpoint(EndpointName=ready["status"]["endpointName"])
    assert endpoint["EndpointStatus"] == "InService"
    assert ready["status"]["phase"] == "Ready"

    ready = wait_ready(kube_cluster, namespace, "single", operator)
    config = sm.describe_endpoint_config(EndpointConfigName=ready["status"]["endpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)


IDENTITY_CHANGES = [
    ("set-name", {}, {"name": "chosen-name"}, "endpoint.name is immutable"),
    ("change-name", {"name": "chosen-name"}, {"name": "other-name"}, "endpoint.name is immutable"),
    ("remove-name", {"name": "chosen-name"}, {}, "endpoint.name is immutable"),
    ("set-region", {}, {"region": "eu-west-1"}, "endpoint.region is immutable"),
    (
        "change-region",
        {"region": "eu-west-1"},
        {"region": "us-west-2"},
        "endpoint.region is immutable",
    ),
    ("remove-region", {"region": "eu-west-1"}, {}, "endpoint.region is immutable"),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [pytest.param(b, a, e, id=case) for case, b, a, e in IDENTITY_CHANGES],
)
def test_setting_changing_or_removing_name_or_region_is_rejected_at_apply(
    kube_cluster: Any, namespace: str, before: dict[str, str], after: dict[str, str], expected: str
) -> None:
    def body(identity: dict[str, str], instance_type: str) -> dict[str, Any]:
        return _endpoint_only(
            deployment("fixed", "s3://qa-sources/tiny/"), instanceType=instance_type, **identity
        )

    apply(kube_cluster, namespace, body(before, "ml.m5.large"))
    # Other changes are still admitted with the identity as it was.
    apply(kube_cluster, namespace, body(before, "ml.m5.xlarge"))
    result = apply(kube_cluster, namespace, body(after, "ml.m5.xlarge"), check=False)
    assert result.returncode != 0, f"admitted: {before} -> {after}"
    assert expected in result.stderr, result.stderr
    stored = get(kube_cluster, namespace, "fixed")
    assert stored is not None
    endpoint = stored["spec"]["endpoint"]
    assert {k: endpoint[k] for k in ("name", "region") if k in endpoint} == before


# Long enough that the namespace fixture gives the longest namespace it makes (49 characters), so
# that both endpoint names are shortened and share the stem their Model/Config names start with.
def test_two_long_named_resources_in_a_long_namespace_keep_their_own_model_and_config(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    s3_model_uri: str,
    oci_registry: Any,
) -> None:
    assert len(namespace) >= 45, namespace
    # Baked mode: same model, no per-owner package URL, so only the owner in the names keeps the
    # two resources' Models and EndpointConfigs apart, and in the baked image's tag and config.
    # Repositories of their own in the session's registry, apart from other tests' images.
    Images().push_base(RegistryClient(oci_registry.url), "identity-base", "1.0")
    operator.start(
        QA_OPERATOR_SERVING_IMAGE=f"{oci_registry.host}/identity-base:1.0",
        QA_OPERATOR_IMAGE_REPOSITORY="qa-serving-identity",
        QA_OPERATOR_REGISTRY_ENDPOINT=oci_registry.url,
    )
    names = ("question-answering-for-support-a", "question-answering-for-support-b")
    for name in names:
        apply(kube_cluster, namespace, deployment(name, s3_model_uri, image={"mode": "baked"}))
    first, second = (wait_ready(kube_cluster, namespace, n, operator) for n in names)
    kept = second["status"]
    assert first["status"]["endpointName"] != kept["endpointName"]
    assert first["status"]["endpointName"][:52] == kept["endpointName"][:52], "a shared stem"
    assert first["status"]["image"]["uri"] != kept["image"]["uri"], "each owner's own image"
    assert first["status"]["image"]["tag"] != kept["image"]["tag"]
    assert first["status"]["modelName"] != kept["modelName"]
    assert first["status"]["endpointConfigName"] != kept["endpointConfigName"]
    second_owned = owned(aws, second["metadata"]["uid"])
    assert second_owned == {
        "endpoints": [kept["endpointName"]],
        "configs": [kept["endpointConfigName"]],
        "models": [kept["modelName"]],
    }

    kube_cluster.kubectl("delete", "qamd", names[0], "-n", namespace, "--wait=false")
    wait_for(
        "first resource released",
        lambda: get(kube_cluster, namespace, names[0]) is None,
        operator=operator,
    )
    assert owned(aws, first["metadata"]["uid"]) == {"endpoints": [], "configs": [], "models": []}
    assert owned(aws, second["metadata"]["uid"]) == second_owned
    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=kept["endpointName"])
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
        "InService",
        kept["endpointConfigName"],
    )
    config = sm.describe_endpoint_config(EndpointConfigName=kept["endpointConfigName"])
    assert config["ProductionVariants"][0]["ModelName"] == kept["modelName"]
    assert (
        sm.describe_model(ModelName=kept["modelName"])["PrimaryContainer"]["Image"]
        == (kept["image"]["uri"])
    )
    still = get(kube_cluster, namespace, names[1])
    assert still is not None and still["status"]["phase"] == "Ready"
    registry = RegistryClient(oci_registry.url)
    images = (first["status"]["image"], kept["image"])
    gone, serving = (registry.manifest_digest(i["repository"], i["digest"]) for i in images)
    assert (gone, serving) == (None, kept["image"]["digest"]), "the deleted one took only its own"
