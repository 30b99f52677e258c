"""Status tells the truth with the operator running: SageMaker's own work on a serving endpoint,
statuses SageMaker does not leave by itself, and each step of a deletion."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.moto_ext import set_endpoint_status
from support.e2e import apply, condition, deployment, get, wait_for, wait_ready

pytestmark = pytest.mark.e2e


def _conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    return {
        kind: (condition(obj, kind).get("status", ""), condition(obj, kind).get("reason", ""))
        for kind in ("Ready", "Progressing", "Degraded")
    }


def test_system_updating_keeps_ready_and_out_of_service_is_degraded(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("truth", s3_model_uri))
    ready = wait_ready(kube_cluster, namespace, "truth", operator)
    ready_since = condition(ready, "Ready")["lastTransitionTime"]
    endpoint = f"{namespace}-truth"

    set_endpoint_status(endpoint, "SystemUpdating")
    patched = wait_for(
        "SystemUpdating reported",
        lambda: (
            (obj := get(kube_cluster, namespace, "truth"))
            and obj["status"].get("endpointStatus") == "SystemUpdating"
            and obj
        ),
        operator=operator,
    )
    assert _conditions(patched) == {
        "Ready": ("True", "EndpointSystemUpdating"),
        "Progressing": ("True", "EndpointSystemUpdating"),
        "Degraded": ("False", "AsExpected"),
    }
    assert condition(patched, "Ready")["lastTransitionTime"] == ready_since
    assert patched["status"]["phase"] == "Ready"

    set_endpoint_status(endpoint, "InService")
    wait_for(
        "Progressing settles",
        lambda: _conditions(get(kube_cluster, namespace, "truth"))["Progressing"][0] == "False",
        operator=operator,
    )

    set_endpoint_status(endpoint, "OutOfService", "Instance capacity unavailable")
    degraded = wait_for(
        "OutOfService reported",
        lambda: (
            (obj := get(kube_cluster, namespace, "truth"))
            and _conditions(obj)["Degraded"] == ("True", "EndpointOutOfService")
            and obj
        ),
        operator=operator,
    )
    assert "Instance capacity unavailable" in condition(degraded, "Degraded")["message"]
    assert _conditions(degraded)["Ready"][0] == "False"
    assert degraded["status"]["phase"] == "Failed"


def test_deletion_reports_progress_until_the_finalizer_lets_go(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("bye", s3_model_uri))
    wait_ready(kube_cluster, namespace, "bye", operator)
    aws.set_endpoint_lifecycle(deleting_seconds=6)

    kube_cluster.kubectl("delete", "qamd", "bye", "-n", namespace, "--wait=false")
    deleting = wait_for(
        "phase Deleting",
        lambda: (
            (obj := get(kube_cluster, namespace, "bye"))
            and obj["status"].get("phase") == "Deleting"
            and obj
        ),
        operator=operator,
    )
    progressing = condition(deleting, "Progressing")
    assert progressing["status"] == "True"
    assert progressing["reason"] in ("DeletingEndpoint", "EndpointDeleting")
    assert f"{namespace}-bye" in progressing["message"]
    assert condition(deleting, "Ready")["status"] == "False"
    wait_for(
        "resource released", lambda: get(kube_cluster, namespace, "bye") is None, operator=operator
    )
