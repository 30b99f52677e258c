"""The Prometheus endpoint of a running operator (`qa-operator run`, QA_OPERATOR_METRICS_PORT)
counts what it did: passes by outcome, AWS calls by operation and outcome, resources by state."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import free_port
from support.e2e import apply, deployment, wait_for, wait_ready

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_scrape_shows_the_passes_the_aws_calls_and_the_ready_resource(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    port = free_port()
    # One throttle on the first DescribeEndpoint: the SDK retries it away, the attempts show it.
    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle", count=1)
    operator.start(QA_OPERATOR_METRICS_PORT=str(port))

    def served() -> Any:
        try:
            return scrape(port)
        except requests.ConnectionError:
            return None

    before = wait_for("the metrics endpoint", served, operator=operator)
    assert value(before, "qa_operator_aws_calls_total", service="sagemaker",
                 operation="CreateEndpoint", outcome="success") == 0  # fmt: skip

    apply(kube_cluster, namespace, deployment("squad", s3_model_uri))
    wait_ready(kube_cluster, namespace, "squad", operator)

    def counted_ready() -> Any:
        samples = scrape(port)
        return samples if value(samples, "qa_operator_resources_ready", status="True") else None

    after = wait_for("the resource counted Ready", counted_ready, operator=operator)
    sagemaker = {"service": "sagemaker", "outcome": "success"}
    assert value(after, "qa_operator_aws_calls_total", operation="CreateEndpoint", **sagemaker) == 1
    assert value(after, "qa_operator_aws_calls_total", operation="CreateModel", **sagemaker) == 1
    assert (
        value(after, "qa_operator_aws_calls_total", operation="DescribeEndpoint", **sagemaker) >= 1
    )
    assert value(after, "qa_operator_aws_attempts_total", service="sagemaker",
                 operation="DescribeEndpoint", outcome="throttled") == 1  # fmt: skip
    assert value(after, "qa_operator_reconcile_total", handler="change", outcome="done") >= 1
    assert value(after, "qa_operator_reconcile_duration_seconds_count", handler="change",
                 outcome="done") >= 1  # fmt: skip
    assert value(after, "qa_operator_resources_ready", status="True") == 1
    assert value(after, "qa_operator_resources", phase="Ready") == 1
    assert value(after, "qa_operator_package_upload_bytes_total") > 0
    assert value(after, "qa_operator_package_upload_duration_seconds_count") == 1
    # kopf runs the handlers on the operator's counting pool (max(4, 4 x 2 packagings) workers);
    # nothing is left waiting for a worker once the resource is Ready.
    assert value(after, "qa_operator_workers") == 8
    assert ("qa_operator_reconcile_queue_depth", frozenset()) in after
    assert ("qa_operator_workers_busy", frozenset()) in after
