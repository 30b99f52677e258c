"""SageMaker's runtime in the local stack's moto (devstack/moto_ext/runtime.py): endpoints run their
Model's container, and sagemaker-runtime InvokeEndpoint reaches it.

Real peers: moto's server, the session registry with the serving image (and the plain Debian
base, which has no `serve`: a container that exits at once, never passing /ping), the container
runtime (bubblewrap) and the tiny QA model trained on this machine. Each serving container start
costs seconds (torch import), so tests share a running endpoint across their assertions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.containers import Container
from devstack.debian_base import DebianBase
from devstack.moto_ext.runtime import EndpointRuntime
from qa_operator.imagebuild.results import BuildResult
from qa_operator.model.packaging import ModelPackage, write_archive
from qa_operator.model.trained import HELD_OUT, POST_TEXT
from qa_operator.registry.images import parse_reference
from support.aws import MotoServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
BUCKET = "qa-runtime-models"
MODEL_KEY = "models/trained/model.tar.gz"
ENDPOINT = "qa-runtime"
DEADLINE_S = 300.0
# The Debian base has no Entrypoint: `serve` replaces its Cmd and there is no such program.
NO_SERVE = "execvp serve: No such file or directory"
PING_FAILURE = (
    "The primary container for production variant {variant} did not pass the ping health "
    "check. Please check CloudWatch logs for this endpoint."
)


@pytest.fixture(scope="module")
def model_archive(
    trained_qa_package: ModelPackage, tmp_path_factory: pytest.TempPathFactory
) -> bytes:
    path = tmp_path_factory.mktemp("runtime-model") / "model.tar.gz"
    write_archive(trained_qa_package, path)
    return path.read_bytes()


@pytest.fixture
def model_url(aws: MotoServer, model_archive: bytes) -> str:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=MODEL_KEY, Body=model_archive)
    return f"s3://{BUCKET}/{MODEL_KEY}"


@pytest.fixture
def sm(aws: MotoServer) -> Any:
    return aws.client("sagemaker")


@pytest.fixture
def smr(aws: MotoServer) -> Any:
    return aws.client("sagemaker-runtime")


def deploy_config(
    sm: Any, name: str, image: str, model_url: str | None, *, variant: str = "AllTraffic"
) -> str:
    """A Model named `name` and an EndpointConfig of the same name with one variant."""
    container = {"Image": image, "Environment": {"QA_RUNTIME_TEST": name}}
    if model_url is not None:
        container["ModelDataUrl"] = model_url
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": name,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    return name


def wait_until(sm: Any, name: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """DescribeEndpoint until `done(description)`; every status seen is in `seen` of the result."""
    deadline = time.monotonic() + DEADLINE_S
    seen: list[str] = []
    while True:
        description: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
        status = description["EndpointStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if done(description):
            description["seen"] = seen
            return description
        assert time.monotonic() < deadline, f"{name} still {status} (seen {seen})"
        time.sleep(0.25)


def in_status(*statuses: str) -> Callable[[dict[str, Any]], bool]:
    return lambda description: description["EndpointStatus"] in statuses


def ask(smr: Any, name: str, questions: list[str] | None = None) -> dict[str, Any]:
    rows = [{"question": q, "text": POST_TEXT} for q in questions or [q for q, _ in HELD_OUT]]
    response = smr.invoke_endpoint(
        EndpointName=name,
        Body=json.dumps(rows).encode(),
        ContentType="application/json",
        Accept="application/json",
    )
    return {
        "variant": response["InvokedProductionVariant"],
        "content_type": response["ContentType"],
        "answers": [p["answer"] for p in json.loads(response["Body"].read())["predictions"]],
    }


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return dict(caught.value.response)


def wait_stopped(containers: list[Container]) -> None:
    deadline = time.monotonic() + 60
    while any(c.running() for c in containers):
        assert time.monotonic() < deadline, f"still running: {containers}"
        time.sleep(0.1)


def tagged(image: BuildResult) -> str:
    """The serving image by its tag (host/repository:test), as a Model may name it."""
    ref = parse_reference(image.uri)
    assert image.tag is not None
    return f"{ref.host}/{ref.repository}:{image.tag}"


EXPECTED = [answer for _, answer in HELD_OUT]


# -- with the runtime ---------------------------------------------------------------------------


def test_an_endpoint_serves_its_model_and_the_containers_errors_come_back_as_model_errors(
    aws: MotoServer,
    sagemaker_runtime: EndpointRuntime,
    serving_image: BuildResult,
    model_url: str,
    sm: Any,
    smr: Any,
) -> None:
    # By tag: the runtime resolves it to the digest it pulls, as SageMaker does.
    deploy_config(sm, "qa-config-1", tagged(serving_image), model_url)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    # The container imports torch before /ping answers: the first look always sees Creating.
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Creating"
    refused = error_of(lambda: ask(smr, ENDPOINT))  # not serving yet
    assert refused["Error"]["Code"] == "ValidationError"

    described = wait_until(sm, ENDPOINT, in_status("InService", "Failed"))
    assert described["EndpointStatus"] == "InService", sagemaker_runtime.log_tail(ENDPOINT)
    assert described["seen"] == ["Creating", "InService"]
    [container] = sagemaker_runtime.containers(ENDPOINT)
    assert container.running()
    assert ask(smr, ENDPOINT) == {
        "variant": "AllTraffic",
        "content_type": "application/json",
        "answers": EXPECTED,
    }
    assert "/ping" in sagemaker_runtime.log_tail(ENDPOINT)  # the container's own log

    aws.inject_fault("sagemaker", "InvokeEndpoint", "throttle", count=1)  # faults come first
    throttled = error_of(lambda: ask(smr, ENDPOINT))
    assert (throttled["Error"]["Code"], throttled["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ThrottlingException",
        400,
    )
    assert ask(smr, ENDPOINT)["answers"] == EXPECTED

    # Over max_rows=256: the serving container answers 413, SageMaker wraps it.
    too_many = error_of(lambda: ask(smr, ENDPOINT, ["How old am I?"] * 257))
    assert too_many["Error"]["Code"] == "ModelError"
    assert too_many["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert too_many["OriginalStatusCode"] == 413
    assert "max_rows=256" in too_many["OriginalMessage"]
    assert too_many["Error"]["Message"].startswith(
        f'Received client error (413) from primary with message "{too_many["OriginalMessage"]}".'
    )
    assert too_many["Error"]["Message"].endswith(
        f"#logEventViewer:group=/aws/sagemaker/Endpoints/{ENDPOINT} in account "
        f"{aws.account_id} for more information."
    )
    assert too_many["LogStreamArn"] == (
        f"arn:aws:logs:{aws.region}:{aws.account_id}:log-group:/aws/sagemaker/Endpoints/{ENDPOINT}"
    )
    malformed = error_of(
        lambda: smr.invoke_endpoint(
            EndpointName=ENDPOINT, Body=b'[{"question": ', ContentType="application/json"
        )
    )
    assert (malformed["Error"]["Code"], malformed["OriginalStatusCode"]) == ("ModelError", 400)
    assert "Received client error (400) from primary" in malformed["Error"]["Message"]

    # A container that does not answer in time: SageMaker's timeout wording, no status.
    sagemaker_runtime.invoke_timeout_s = 0.001
    slow = error_of(lambda: ask(smr, ENDPOINT, ["Where do I live?"] * 256))
    sagemaker_runtime.invoke_timeout_s = 60.0
    assert slow["Error"]["Code"] == "ModelError"
    assert "OriginalStatusCode" not in slow
    assert slow["Error"]["Message"].startswith(
        'Received server error (0) from primary with message "Your invocation timed out while '
        "waiting for a response from container primary."
    )

    unknown = error_of(lambda: ask(smr, "qa-nothing-here"))
    assert unknown["Error"]["Code"] == "ValidationError"
    assert unknown["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert unknown["Error"]["Message"] == (
        f"Endpoint qa-nothing-here of account {aws.account_id} not found."
    )
    assert aws.calls("sagemaker", "InvokeEndpoint") == 8  # the fault injector names them
    # InvokeEndpointAsync wants an endpoint whose config has AsyncInferenceConfig.
    not_async = error_of(
        lambda: smr.invoke_endpoint_async(
            EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/requests/1.json"
        )
    )
    assert not_async["Error"]["Code"] == "ValidationError"
    assert not_async["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert not_async["Error"]["Message"] == (
        f"Endpoint {ENDPOINT} of account {aws.account_id} is not an asynchronous inference "
        "endpoint: its endpoint configuration has no AsyncInferenceConfig."
    )

    sm.delete_endpoint(EndpointName=ENDPOINT)
    wait_stopped([container])
    assert sagemaker_runtime.containers(ENDPOINT) == []
    gone = error_of(lambda: ask(smr, ENDPOINT))
    assert gone["Error"]["Code"] == "ValidationError"


def wait_object(s3: Any, url: str) -> bytes:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    deadline = time.monotonic() + 60
    while True:
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            assert time.monotonic() < deadline, f"nothing at {url}"
            time.sleep(0.2)


def test_an_async_endpoint_reads_requests_from_s3_and_writes_answers_and_failures_there(
    aws: MotoServer,
    sagemaker_runtime: EndpointRuntime,
    serving_image: BuildResult,
    model_url: str,
    sm: Any,
    smr: Any,
) -> None:
    s3 = aws.client("s3")
    container = {"Image": serving_image.uri, "ModelDataUrl": model_url}
    sm.create_model(ModelName="qa-async", ExecutionRoleArn=ROLE, PrimaryContainer=container)
    sm.create_endpoint_config(
        EndpointConfigName="qa-async",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "qa-async",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig={
            "OutputConfig": {
                "S3OutputPath": f"s3://{BUCKET}/answers/",
                "S3FailurePath": f"s3://{BUCKET}/failed",
            }
        },
    )
    sm.create_endpoint(EndpointName="qa-async", EndpointConfigName="qa-async")
    described = wait_until(sm, "qa-async", in_status("InService", "Failed"))
    assert described["EndpointStatus"] == "InService", sagemaker_runtime.log_tail("qa-async")

    rows = [{"question": q, "text": POST_TEXT} for q, _ in HELD_OUT]
    s3.put_object(Bucket=BUCKET, Key="requests/good.json", Body=json.dumps(rows).encode())
    accepted = smr.invoke_endpoint_async(
        EndpointName="qa-async",
        InputLocation=f"s3://{BUCKET}/requests/good.json",
        ContentType="application/json",
        Accept="application/json",
        InferenceId="first",
    )
    assert accepted["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert accepted["InferenceId"] == "first"
    assert accepted["OutputLocation"] == f"s3://{BUCKET}/answers/first.out"
    assert accepted["FailureLocation"] == f"s3://{BUCKET}/failed/first-error.out"
    answer = json.loads(wait_object(s3, accepted["OutputLocation"]))
    assert [p["answer"] for p in answer["predictions"]] == EXPECTED

    # Without an InferenceId the runtime makes one; the container's 400 lands in the failures.
    s3.put_object(Bucket=BUCKET, Key="requests/bad.json", Body=b'[{"question": ')
    refused = smr.invoke_endpoint_async(
        EndpointName="qa-async",
        InputLocation=f"s3://{BUCKET}/requests/bad.json",
        ContentType="application/json",
    )
    made = refused["InferenceId"]
    assert refused["FailureLocation"] == f"s3://{BUCKET}/failed/{made}-error.out"
    failure = wait_object(s3, refused["FailureLocation"]).decode()
    assert failure.startswith("Received client error (400) from primary")

    # An input that is not there fails asynchronously too; no answer is written.
    missing = smr.invoke_endpoint_async(
        EndpointName="qa-async", InputLocation=f"s3://{BUCKET}/requests/none.json"
    )
    assert b"Could not read the input" in wait_object(s3, missing["FailureLocation"])
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="answers/")["Contents"]
    assert [o["Key"] for o in listed] == ["answers/first.out"]

    not_s3 = error_of(
        lambda: smr.invoke_endpoint_async(EndpointName="qa-async", InputLocation="/tmp/x.json")
    )
    assert not_s3["Error"]["Code"] == "ValidationError"
    unknown = error_of(
        lambda: smr.invoke_endpoint_async(
            EndpointName="qa-nothing-here", InputLocation=f"s3://{BUCKET}/requests/good.json"
        )
    )
    assert unknown["Error"]["Message"] == (
        f"Endpoint qa-nothing-here of account {aws.account_id} not found."
    )
    assert aws.calls("sagemaker", "InvokeEndpointAsync") == 5
    sm.delete_endpoint(EndpointName="qa-async")


def test_updates_roll_back_from_a_failing_container_and_move_to_a_good_one(
    aws: MotoServer,
    sagemaker_runtime: EndpointRuntime,
    serving_image: BuildResult,
    debian_python_base: DebianBase,
    model_url: str,
    sm: Any,
    smr: Any,
) -> None:
    deploy_config(sm, "qa-config-1", serving_image.uri, model_url)
    deploy_config(sm, "qa-config-broken", debian_python_base.reference, None, variant="Blue")
    deploy_config(sm, "qa-config-2", serving_image.uri, model_url)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    assert wait_until(sm, ENDPOINT, in_status("InService", "Failed"))["seen"][-1] == "InService"
    [first] = sagemaker_runtime.containers(ENDPOINT)

    aws.set_endpoint_lifecycle(updating_describes=1)  # RollingBack is seen, not skipped
    sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-broken")
    updating = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert updating["EndpointStatus"] == "Updating"
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == "qa-config-broken"
    assert ask(smr, ENDPOINT)["answers"] == EXPECTED  # the old config serves meanwhile

    rolled_back = wait_until(
        sm, ENDPOINT, lambda d: d["EndpointStatus"] == "InService" and "FailureReason" in d
    )
    assert rolled_back["seen"][-2:] == ["RollingBack", "InService"]
    assert rolled_back["EndpointConfigName"] == "qa-config-1"
    assert rolled_back["FailureReason"] == PING_FAILURE.format(variant="Blue")
    assert sagemaker_runtime.containers(ENDPOINT) == [first]
    assert first.running()
    assert ask(smr, ENDPOINT)["answers"] == EXPECTED
    assert NO_SERVE in sagemaker_runtime.log_tail(ENDPOINT)

    sm.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-2")
    updated = wait_until(
        sm, ENDPOINT, lambda d: d["EndpointStatus"] == "InService" and "FailureReason" not in d
    )
    assert updated["EndpointConfigName"] == "qa-config-2"
    [second] = sagemaker_runtime.containers(ENDPOINT)
    assert second is not first
    assert ask(smr, ENDPOINT)["answers"] == EXPECTED
    wait_stopped([first])
    assert not Path(f"/proc/{first.pid}").exists()
    assert second.running()


def test_a_container_that_never_passes_ping_fails_the_endpoint(
    sagemaker_runtime: EndpointRuntime, debian_python_base: DebianBase, sm: Any
) -> None:
    deploy_config(sm, "qa-config-1", debian_python_base.reference, None, variant="Green")
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    failed = wait_until(sm, ENDPOINT, in_status("InService", "Failed"))
    assert failed["seen"] == ["Creating", "Failed"]
    assert failed["FailureReason"] == PING_FAILURE.format(variant="Green")
    assert NO_SERVE in sagemaker_runtime.log_tail(ENDPOINT)
    assert sagemaker_runtime.containers(ENDPOINT) == []


def test_model_data_that_is_not_there_fails_the_endpoint(
    sagemaker_runtime: EndpointRuntime, serving_image: BuildResult, model_url: str, sm: Any
) -> None:
    missing = model_url.replace("/trained/", "/missing/")
    deploy_config(sm, "qa-config-1", serving_image.uri, missing)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    failed = wait_until(sm, ENDPOINT, in_status("InService", "Failed"))
    assert failed["FailureReason"] == (
        f'Failed to download model data for container "container_1" from URL: "{missing}". '
        "Please ensure that there is an object located at the URL and that the role passed to "
        "CreateModel has permissions to download the object."
    )
    assert sagemaker_runtime.containers(ENDPOINT) == []


def test_an_image_that_does_not_exist_fails_the_endpoint(
    sagemaker_runtime: EndpointRuntime, serving_image: BuildResult, sm: Any
) -> None:
    image = tagged(serving_image).rsplit(":", 1)[0] + ":no-such-tag"
    deploy_config(sm, "qa-config-1", image, None)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    failed = wait_until(sm, ENDPOINT, in_status("InService", "Failed"))
    assert failed["FailureReason"] == f"The image '{image}' does not exist."


def test_requested_failures_still_apply_with_the_runtime_on(
    aws: MotoServer, sagemaker_runtime: EndpointRuntime, sm: Any
) -> None:
    deploy_config(sm, "qa-config-1", "127.0.0.1:1/never/pulled@sha256:" + "0" * 64, None)
    aws.fail_next_endpoint_creation(ENDPOINT, "Requested by the test.")
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    failed = sm.describe_endpoint(EndpointName=ENDPOINT)
    assert (failed["EndpointStatus"], failed["FailureReason"]) == (
        "Failed",
        "Requested by the test.",
    )
    assert sagemaker_runtime.log_tail(ENDPOINT) == ""  # nothing was started


# -- without it ---------------------------------------------------------------------------------


def test_without_the_runtime_endpoints_are_motos(aws: MotoServer, sm: Any, smr: Any) -> None:
    assert aws.runtime is None
    deploy_config(sm, "qa-config-1", "123456789012.dkr.ecr.us-east-1.amazonaws.com/qa:1", None)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="qa-config-1")
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    response = smr.invoke_endpoint(EndpointName=ENDPOINT, Body=b"{}")
    assert response["Body"].read() == b"body"  # moto's canned answer
    assert aws.calls("sagemaker", "InvokeEndpoint") == 1
