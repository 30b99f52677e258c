"""Ready means the endpoint answered: the operator, the real serving image running as SageMaker's
runtime runs it (devstack/moto_ext/runtime.py), and the smoke-test gate.

Each endpoint here is a real container of the serving image this checkout builds, started when
SageMaker would start it; InvokeEndpoint reaches it through sagemaker-runtime. The models are the
tiny one trained on this machine (it answers the post's questions), and a tiny one that loads and
answers every request with a 500 (its position embeddings are shorter than any question).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qa_operator.imagebuild.results import BuildResult
from qa_operator.model.tiny import make_tiny_qa_model_dir
from qa_operator.model.trained import HELD_OUT, POST_TEXT
from support.e2e import (
    SOURCE_BUCKET,
    apply,
    condition,
    deployment,
    endpoint_observations,
    get,
    wait_degraded,
    wait_for,
    wait_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The first test on a machine pulls and unpacks the serving image (3.5 GB) in the runtime.
FIRST_READY_TIMEOUT_S = 600
TIMEOUT_S = 240


@pytest.fixture
def upload_model(aws: Any) -> Callable[[Path, str], str]:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=SOURCE_BUCKET)

    def upload(model_dir: Path, prefix: str) -> str:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(model_dir).as_posix()}"
                s3.upload_file(str(path), SOURCE_BUCKET, key)
        return f"s3://{SOURCE_BUCKET}/{prefix}/"

    return upload


@pytest.fixture
def start_gated(
    operator: Any, serving_image: BuildResult, sagemaker_runtime: Any
) -> Callable[..., Any]:
    """Starts the e2e operator serving the real image, with the smoke test on and two attempts;
    keyword arguments override its settings."""

    def start(**env: str) -> Any:
        settings = {
            "QA_OPERATOR_SERVING_IMAGE": serving_image.uri,
            "QA_OPERATOR_SMOKE_TEST": "on",
            "QA_OPERATOR_SMOKE_TEST_ATTEMPTS": "2",
            **env,
        }
        return operator.start(**settings)

    return start


def _ask(aws: Any, endpoint: str, question: str) -> str:
    response = aws.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps([{"question": question, "text": POST_TEXT}]),
        ContentType="application/json",
    )
    return str(json.loads(response["Body"].read())["predictions"][0]["answer"])


def test_an_endpoint_is_ready_once_its_container_answered_the_smoke_test(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    start_gated: Callable[..., Any],
    upload_model: Callable[[Path, str], str],
    trained_qa_model_dir: Path,
) -> None:
    uri = upload_model(trained_qa_model_dir, "trained")
    start_gated()
    smoke = {"question": "Where do I live?", "text": POST_TEXT, "expectAnswer": "Copenhagen"}
    apply(kube_cluster, namespace, deployment("answers", uri, smokeTest=smoke))

    obj = wait_ready(kube_cluster, namespace, "answers", operator, timeout=FIRST_READY_TIMEOUT_S)
    status = obj["status"]
    assert condition(obj, "Ready")["reason"] == "SmokeTestPassed"
    assert status["smokeTest"]["passed"] is True
    assert status["smokeTest"]["answer"].lower() == "copenhagen"
    assert status["smokeTest"]["config"] == status["endpointConfigName"]
    assert status["smokeTest"]["statusCode"] == 200
    assert status["lastKnownGood"]["config"] == status["endpointConfigName"]
    endpoint = status["endpointName"]
    answers = [_ask(aws, endpoint, question) for question, _ in HELD_OUT]
    assert [a.lower() for a in answers] == [expected.lower() for _, expected in HELD_OUT]


def test_a_container_that_fails_ping_leaves_the_endpoint_failed_with_the_reason(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    start_gated: Callable[..., Any],
    upload_model: Callable[[Path, str], str],
    trained_qa_model_dir: Path,
    debian_python_base: Any,
) -> None:
    """An image with no `serve` (plain Debian Python): the container exits, /ping never passes."""
    uri = upload_model(trained_qa_model_dir, "trained")
    start_gated(QA_OPERATOR_SERVING_IMAGE=debian_python_base.reference)
    apply(kube_cluster, namespace, deployment("no-ping", uri))

    obj = wait_degraded(kube_cluster, namespace, "no-ping", operator, timeout=TIMEOUT_S)
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "EndpointFailed"
    assert "did not pass the ping health check" in degraded["message"]
    assert obj["status"]["endpointStatus"] == "Failed"
    assert condition(obj, "Ready")["status"] == "False"
    assert "smokeTest" not in obj["status"]


def test_an_update_that_answers_500_is_rolled_back_to_the_last_config_that_passed(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    start_gated: Callable[..., Any],
    upload_model: Callable[[Path, str], str],
    trained_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    good = upload_model(trained_qa_model_dir, "trained")
    broken_dir = make_tiny_qa_model_dir(tmp_path / "broken", seed=5, max_position_embeddings=8)
    broken = upload_model(broken_dir, "broken")
    start_gated()
    apply(kube_cluster, namespace, deployment("rollback", good))
    first = wait_ready(kube_cluster, namespace, "rollback", operator, timeout=FIRST_READY_TIMEOUT_S)
    good_config = first["status"]["endpointConfigName"]

    apply(kube_cluster, namespace, deployment("rollback", broken))

    def rolled_back() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "rollback")
        degraded = condition(obj, "Degraded")
        settled = condition(obj, "Progressing").get("status") == "False"
        if degraded.get("reason") == "SmokeTestFailedRolledBack" and settled:
            return obj
        return None

    obj = wait_for("the roll back", rolled_back, timeout=TIMEOUT_S, operator=operator)
    status = obj["status"]
    sm = aws.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName=status["endpointName"])
    assert endpoint["EndpointConfigName"] == good_config
    assert status["endpointStatus"] == "InService"
    assert status["lastKnownGood"]["config"] == good_config
    assert status["smokeTest"]["passed"] is False
    assert status["smokeTest"]["statusCode"] == 500
    assert status["lastFailure"]["reason"] == status["smokeTest"]["message"]
    assert status["smokeTest"]["attempts"] == 2
    assert status["smokeTest"]["config"] != good_config
    assert condition(obj, "Ready")["status"] == "False"
    assert "ModelError 500" in condition(obj, "Degraded")["message"]
    # The endpoint serves the good model again.
    assert _ask(aws, status["endpointName"], "Where do I live?").lower() == "copenhagen"

    updates = aws.calls("sagemaker", "UpdateEndpoint")
    invokes = aws.calls("sagemaker", "InvokeEndpoint")
    describes = endpoint_observations(aws)
    wait_for(
        "several more reconcile passes",
        lambda: endpoint_observations(aws) >= describes + 4,
        operator=operator,
    )
    assert updates == 2, "one update to the broken config, one back"
    assert aws.calls("sagemaker", "UpdateEndpoint") == updates, "the failed config was retried"
    assert aws.calls("sagemaker", "InvokeEndpoint") == invokes, "the failed config was asked again"
    still = get(kube_cluster, namespace, "rollback")
    assert condition(still, "Degraded")["reason"] == "SmokeTestFailedRolledBack"


def test_a_wrong_answer_is_degraded_and_never_ready(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    start_gated: Callable[..., Any],
    upload_model: Callable[[Path, str], str],
    trained_qa_model_dir: Path,
) -> None:
    uri = upload_model(trained_qa_model_dir, "trained")
    start_gated()
    smoke = {"question": "Where do I live?", "text": POST_TEXT, "expectAnswer": "Paris"}
    apply(kube_cluster, namespace, deployment("wrong", uri, smokeTest=smoke))

    def given_up() -> dict[str, Any] | None:
        obj = get(kube_cluster, namespace, "wrong")
        if (obj or {}).get("status", {}).get("phase") == "Failed":
            return obj
        return None

    obj = wait_for("the smoke test to give up", given_up, timeout=FIRST_READY_TIMEOUT_S,
                   operator=operator)  # fmt: skip
    degraded = condition(obj, "Degraded")
    assert degraded["reason"] == "SmokeTestFailed"
    assert "expected 'Paris'" in degraded["message"]
    assert condition(obj, "Ready")["status"] == "False"
    smoke_status = obj["status"]["smokeTest"]
    assert (smoke_status["passed"], smoke_status["attempts"]) == (False, 2)
    assert smoke_status["answer"].lower() == "copenhagen"
    assert "lastKnownGood" not in obj["status"]
    # The endpoint is left as it is (it serves; the user decides), deleted with the resource.
    assert obj["status"]["endpointStatus"] == "InService"
