"""An async endpoint answers through the same /invocations contract as a real-time one: the
operator deploys `endpoint.async`, the real serving image runs in SageMaker's runtime
(devstack/moto_ext/runtime.py), and InvokeEndpointAsync reads the request from S3 and writes the
container's answer under `outputS3Uri`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from qa_operator.imagebuild.results import BuildResult
from support.e2e import SOURCE_BUCKET, apply, deployment, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The first test on a machine pulls and unpacks the serving image (3.5 GB) in the runtime.
FIRST_READY_TIMEOUT_S = 600
ANSWER_TIMEOUT_S = 120
ANSWERS = "qa-async-answers"
REQUEST = [
    {"question": "Where do I live?", "text": "My name is Alex, I am 32 and live in Copenhagen."}
]


def _wait_object(s3: Any, url: str) -> bytes:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"nothing at {url}"
            time.sleep(0.5)


def test_an_async_endpoint_answers_a_request_from_s3_into_its_output_path(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator: Any,
    serving_image: BuildResult,
    sagemaker_runtime: Any,
    trained_qa_model_dir: Path,
) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    s3.create_bucket(Bucket=ANSWERS)
    for path in sorted(trained_qa_model_dir.rglob("*")):
        if path.is_file():
            key = f"trained/{path.relative_to(trained_qa_model_dir).as_posix()}"
            s3.upload_file(str(path), SOURCE_BUCKET, key)
    operator.start(QA_OPERATOR_SERVING_IMAGE=serving_image.uri)
    body = deployment(
        "queued",
        f"s3://{SOURCE_BUCKET}/trained/",
        smokeTest={"enabled": False},
        endpoint={
            "async": {
                "outputS3Uri": f"s3://{ANSWERS}/out/",
                "failureS3Uri": f"s3://{ANSWERS}/failed/",
            }
        },
    )
    apply(kube_cluster, namespace, body)
    obj = wait_ready(kube_cluster, namespace, "queued", operator, timeout=FIRST_READY_TIMEOUT_S)
    endpoint = obj["status"]["endpointName"]

    s3.put_object(Bucket=ANSWERS, Key="in/request.json", Body=json.dumps(REQUEST).encode())
    accepted = aws.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint,
        InputLocation=f"s3://{ANSWERS}/in/request.json",
        ContentType="application/json",
        Accept="application/json",
    )
    assert accepted["ResponseMetadata"]["HTTPStatusCode"] == 202
    inference_id = accepted["InferenceId"]
    assert accepted["OutputLocation"] == f"s3://{ANSWERS}/out/{inference_id}.out"
    assert accepted["FailureLocation"] == f"s3://{ANSWERS}/failed/{inference_id}-error.out"

    answer = json.loads(_wait_object(s3, accepted["OutputLocation"]))
    assert answer["predictions"][0]["answer"].lower() == "copenhagen"
    assert "Contents" not in s3.list_objects_v2(Bucket=ANSWERS, Prefix="failed/")
