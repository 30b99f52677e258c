"""spec.model.refresh OnResync end to end: new weights under the same S3 prefix roll out."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
