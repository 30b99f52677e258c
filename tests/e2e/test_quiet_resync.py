"""A Ready resource whose endpoint does not change costs its resyncs no Kubernetes write: no
status PATCH, no Event, no INFO line in the operator's log."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import (
    apply,
    deployment,
    endpoint_observations,
    events,
    get,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e

RESYNCS = 4


def status_patches(cluster: Any) -> int:
    """PATCH requests the API server has received for qamodeldeployments (any subresource),
    as its own request counter says: a no-op PATCH counts, though it changes no resourceVersion."""
    metrics = cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("apiserver_request_total{")
        and 'resource="qamodeldeployments"' in line
        and 'verb="PATCH"' in line
    )


def test_resyncs_that_find_nothing_new_write_nothing(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    process = operator.start()
    apply(kube_cluster, namespace, deployment("quiet", s3_model_uri))
    wait_ready(kube_cluster, namespace, "quiet", operator)
    # The pass that reported Ready may still be finishing its writes: one resync first.
    settled = endpoint_observations(aws) + 1
    wait_for(
        "a resync after Ready", lambda: endpoint_observations(aws) >= settled, operator=operator
    )

    before = get(kube_cluster, namespace, "quiet")
    assert before is not None
    patches, posted = status_patches(kube_cluster), events(kube_cluster, namespace, "quiet")
    log_lines = len(process.log(lines=100_000).splitlines())
    seen = endpoint_observations(aws)

    wait_for(
        f"{RESYNCS} more resyncs",
        lambda: endpoint_observations(aws) >= seen + RESYNCS,
        timeout=60,
        operator=operator,
    )

    after = get(kube_cluster, namespace, "quiet")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"] == before["status"]
    assert status_patches(kube_cluster) == patches, "a resync sent a status PATCH for nothing"
    assert events(kube_cluster, namespace, "quiet") == posted, "a resync posted an Event"
    new_lines = process.log(lines=100_000).splitlines()[log_lines:]
    assert not [line for line in new_lines if "[INFO" in line], new_lines


def test_resyncs_list_endpoints_and_notice_a_deletion_behind_the_operators_back(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    operator.start()
    apply(kube_cluster, namespace, deployment("watched", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "watched", operator)
    lists = aws.calls("sagemaker", "ListEndpoints") + 1
    wait_for("a resync after Ready", lambda: aws.calls("sagemaker", "ListEndpoints") >= lists)

    describes, tags = aws.calls("sagemaker", "DescribeEndpoint"), aws.calls("sagemaker", "ListTags")
    lists = aws.calls("sagemaker", "ListEndpoints")
    wait_for(
        f"{RESYNCS} more resyncs",
        lambda: aws.calls("sagemaker", "ListEndpoints") >= lists + RESYNCS,
        timeout=60,
        operator=operator,
    )
    assert aws.calls("sagemaker", "DescribeEndpoint") == describes, "resyncs read the listing"
    assert aws.calls("sagemaker", "ListTags") == tags

    creates = aws.calls("sagemaker", "CreateEndpoint")
    aws.client("sagemaker").delete_endpoint(EndpointName=f"{namespace}-watched")
    wait_for(
        "the deleted endpoint created again",
        lambda: aws.calls("sagemaker", "CreateEndpoint") > creates,
        timeout=60,
        operator=operator,
    )
    again = wait_for(
        "Ready on the new endpoint",
        lambda: (
            (obj := get(kube_cluster, namespace, "watched"))
            and obj["status"].get("endpointStatus") == "InService"
            and obj
        ),
        operator=operator,
    )
    assert again["status"]["endpointConfigName"] == first["status"]["endpointConfigName"]
    sm = aws.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=f"{namespace}-watched")["EndpointStatus"] in (
        "Creating",
        "InService",
    )
