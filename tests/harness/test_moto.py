"""moto's server as the operator sees it, and the extensions in devstack/moto_ext/."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.moto_ext.controls import Fault
from devstack.moto_ext.faults import operation_of
from support.aws import MotoServer

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
TAGS = [{"Key": "app.kubernetes.io/managed-by", "Value": "qa-operator"}]


def error_of(call: Callable[[], Any]) -> tuple[str, int, str]:
    """(code, HTTP status, message) of the ClientError the call raises."""
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        error["Error"].get("Message", ""),
    )


def make_model_and_configs(sm: Any, *configs: str, model: str = "qa-model") -> None:
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/qa:1"},
        Tags=TAGS,
    )
    for count, name in enumerate(configs, start=1):
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": count,
                }
            ],
            Tags=TAGS,
        )


def statuses(sm: Any, name: str, times: int) -> list[str]:
    return [sm.describe_endpoint(EndpointName=name)["EndpointStatus"] for _ in range(times)]


# --- pure parts of the extension ---------------------------------------------------------------


def test_fault_rate_is_deterministic_and_count_caps_hits() -> None:
    fault = Fault("sagemaker", "DescribeEndpoint", "throttle", rate=0.25)
    assert [fault.take() for _ in range(8)] == [False, False, False, True] * 2
    capped = Fault("sagemaker", "*", "5xx", count=2)
    assert [capped.take() for _ in range(4)] == [True, True, False, False]
    assert capped.spent
    assert capped.matches("sagemaker", "CreateEndpoint")
    assert not capped.matches("s3", "CreateEndpoint")


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("PUT", "/bucket-a", "", {}, "CreateBucket"),
        ("GET", "/bucket-a", "list-type=2&prefix=x", {}, "ListObjectsV2"),
        ("POST", "/bucket-a", "delete", {}, "DeleteObjects"),
        ("PUT", "/bucket-a/models/a/b.bin", "", {}, "PutObject"),
        ("PUT", "/bucket-a/k", "", {"HTTP_X_AMZ_COPY_SOURCE": "/b/k"}, "CopyObject"),
        ("PUT", "/bucket-a/k", "partNumber=1&uploadId=u", {}, "UploadPart"),
        ("HEAD", "/bucket-a/k", "", {}, "HeadObject"),
        ("DELETE", "/bucket-a/k", "", {}, "DeleteObject"),
        ("GET", "/", "", {}, "ListBuckets"),
    ],
)
def test_s3_operation_names_follow_the_rest_api(
    method: str, path: str, query: str, headers: dict[str, str], expected: str
) -> None:
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, **headers}
    assert operation_of(environ, "s3") == (expected, "rest-xml")


def test_json_and_query_operation_names() -> None:
    target = {"HTTP_X_AMZ_TARGET": "SageMaker.UpdateEndpoint"}
    assert operation_of(target, "sagemaker") == ("UpdateEndpoint", "json")
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    assert operation_of(environ, "sts") == ("GetCallerIdentity", "query")
    assert environ["wsgi.input"].read() == body  # still there for moto


# --- the server --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_another_process_reaches_the_server_through_the_standard_environment(
    aws: MotoServer,
) -> None:
    aws.set_endpoint_lifecycle(creating_describes=5)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    script = (
        "import boto3, json\n"
        "identity = boto3.client('sts').get_caller_identity()\n"
        "endpoint = boto3.client('sagemaker').describe_endpoint(EndpointName='qa-endpoint')\n"
        "print(json.dumps([identity['Account'], endpoint['EndpointStatus']]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | aws.env()
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [aws.account_id, "Creating"]


@pytest.mark.e2e
def test_sagemaker_resources_round_trip_with_tags(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    arn = sm.create_endpoint(
        EndpointName="qa-endpoint", EndpointConfigName="qa-config-1", Tags=TAGS
    )["EndpointArn"]
    assert arn == f"arn:aws:sagemaker:{aws.region}:{aws.account_id}:endpoint/qa-endpoint"

    model = sm.describe_model(ModelName="qa-model")
    assert model["ExecutionRoleArn"] == ROLE
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["qa-model"]
    config = sm.describe_endpoint_config(EndpointConfigName="qa-config-1")
    assert config["ProductionVariants"][0]["ModelName"] == "qa-model"
    configs = sm.list_endpoint_configs()["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in configs] == ["qa-config-1"]
    endpoint = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == (
        "InService",
        "qa-config-1",
    )
    listed = sm.list_endpoints(NameContains="qa-")["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in listed] == [
        ("qa-endpoint", "InService")
    ]

    for resource_arn in (model["ModelArn"], config["EndpointConfigArn"], arn):
        assert sm.list_tags(ResourceArn=resource_arn)["Tags"] == TAGS
    # AddTags adds or overwrites by key.
    sm.add_tags(
        ResourceArn=arn,
        Tags=[
            {"Key": "app.kubernetes.io/managed-by", "Value": "someone-else"},
            {"Key": "qa/spec-hash", "Value": "abc"},
        ],
    )
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags == {"app.kubernetes.io/managed-by": "someone-else", "qa/spec-hash": "abc"}
    sm.delete_tags(ResourceArn=arn, TagKeys=["qa/spec-hash"])
    assert [t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]] == [
        "app.kubernetes.io/managed-by"
    ]
    missing = arn.replace("qa-endpoint", "nobody")
    assert error_of(lambda: sm.list_tags(ResourceArn=missing))[:2] == ("ValidationException", 400)

    sm.delete_endpoint(EndpointName="qa-endpoint")
    sm.delete_endpoint_config(EndpointConfigName="qa-config-1")
    sm.delete_model(ModelName="qa-model")
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    code, status, message = error_of(lambda: sm.describe_model(ModelName="qa-model"))
    assert (code, status) == ("ValidationException", 400)
    assert "Could not find model" in message


@pytest.mark.e2e
def test_creating_a_name_in_use_fails_like_aws(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    prefix = f"arn:aws:sagemaker:{aws.region}:{aws.account_id}"
    attempts = {
        f'Cannot create already existing model "{prefix}:model/qa-model".': lambda: (
            make_model_and_configs(sm, model="qa-model")
        ),
        "Cannot create already existing endpoint configuration "
        f'"{prefix}:endpoint-config/qa-config-1".': lambda: make_model_and_configs(
            sm, "qa-config-1", model="qa-model-2"
        ),
        f'Cannot create already existing endpoint "{prefix}:endpoint/qa-endpoint".': lambda: (
            sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
        ),
    }
    for message, attempt in attempts.items():
        assert error_of(attempt) == ("ValidationException", 400, message)


@pytest.mark.e2e
def test_endpoint_creation_takes_the_configured_number_of_describes(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(creating_describes=3)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    first = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert first["PendingDeploymentSummary"]["EndpointConfigName"] == "qa-config-1"
    assert sm.list_endpoints(StatusEquals="Creating")["Endpoints"][0]["EndpointName"] == (
        "qa-endpoint"
    )
    assert statuses(sm, "qa-endpoint", 3) == ["Creating", "Creating", "InService"]
    assert "PendingDeploymentSummary" not in sm.describe_endpoint(EndpointName="qa-endpoint")


@pytest.mark.e2e
def test_endpoint_creation_can_take_wall_clock_time(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(creating_seconds=0.5)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    seen = statuses(sm, "qa-endpoint", 1)
    for _ in range(600):  # a bound so a broken clock fails the test instead of hanging it
        seen.append(sm.describe_endpoint(EndpointName="qa-endpoint")["EndpointStatus"])
        if seen[-1] != "Creating":
            break
        time.sleep(0.05)
    assert seen[0] == "Creating"
    assert seen[-1] == "InService"


@pytest.mark.e2e
def test_requested_creation_failure_leaves_a_failed_endpoint(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(creating_describes=1)
    aws.fail_next_endpoint_creation("qa-endpoint", "ResourceLimitExceeded: ml.m5.large")
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1", "qa-config-2")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    assert statuses(sm, "qa-endpoint", 2) == ["Creating", "Failed"]
    failed = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert failed["FailureReason"] == "ResourceLimitExceeded: ml.m5.large"
    code, _, message = error_of(
        lambda: sm.update_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-2")
    )
    assert code == "ValidationException"
    assert "failed endpoint" in message

    # Only the next creation fails: delete and create again succeeds.
    sm.delete_endpoint(EndpointName="qa-endpoint")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    assert statuses(sm, "qa-endpoint", 2) == ["Creating", "InService"]
    assert "FailureReason" not in sm.describe_endpoint(EndpointName="qa-endpoint")


@pytest.mark.e2e
def test_update_endpoint_moves_to_the_new_config(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(updating_describes=2)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1", "qa-config-2")
    arn = sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")[
        "EndpointArn"
    ]
    answer = sm.update_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-2")
    assert answer["EndpointArn"] == arn
    during = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert during["EndpointStatus"] == "Updating"
    assert during["EndpointConfigName"] == "qa-config-1"
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] == "qa-config-2"
    assert statuses(sm, "qa-endpoint", 2) == ["Updating", "InService"]
    after = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert after["EndpointConfigName"] == "qa-config-2"
    assert after["ProductionVariants"][0]["DesiredInstanceCount"] == 2  # qa-config-2's
    assert "FailureReason" not in after


@pytest.mark.e2e
def test_failed_update_rolls_back_to_the_old_config(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(updating_describes=1)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1", "qa-config-2")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    aws.fail_next_endpoint_update("qa-endpoint", "Health check failed for variant AllTraffic")
    sm.update_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-2")
    assert statuses(sm, "qa-endpoint", 3) == ["Updating", "RollingBack", "InService"]
    after = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert after["EndpointConfigName"] == "qa-config-1"
    assert after["FailureReason"] == "Health check failed for variant AllTraffic"
    assert after["ProductionVariants"][0]["DesiredInstanceCount"] == 1

    # The failure was for one update only; the next one goes through and clears the reason.
    sm.update_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-2")
    assert statuses(sm, "qa-endpoint", 2) == ["Updating", "InService"]
    after = sm.describe_endpoint(EndpointName="qa-endpoint")
    assert after["EndpointConfigName"] == "qa-config-2"
    assert "FailureReason" not in after


@pytest.mark.e2e
def test_update_endpoint_is_validated_like_aws(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(creating_describes=1)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1", "qa-config-2")

    def update(endpoint: str, config: str) -> tuple[str, int, str]:
        return error_of(
            lambda: sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        )

    code, _, message = update("nobody", "qa-config-2")
    assert code == "ValidationException"
    assert "Could not find endpoint" in message
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    code, _, message = update("qa-endpoint", "qa-config-2")  # still Creating
    assert (code, message.split(' "')[0]) == (
        "ValidationException",
        "Cannot update in-progress endpoint",
    )
    assert statuses(sm, "qa-endpoint", 2) == ["Creating", "InService"]
    code, _, message = update("qa-endpoint", "no-such-config")
    assert code == "ValidationException"
    assert "Could not find endpoint configuration" in message
    # The reference does not forbid redeploying the config in use.
    sm.update_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    assert statuses(sm, "qa-endpoint", 1) == ["InService"]


@pytest.mark.e2e
def test_deleted_endpoint_is_deleting_then_gone(aws: MotoServer) -> None:
    aws.set_endpoint_lifecycle(deleting_describes=2)
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    sm.delete_endpoint(EndpointName="qa-endpoint")
    assert statuses(sm, "qa-endpoint", 1) == ["Deleting"]
    code, _, message = error_of(
        lambda: sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    )
    assert (code, message.split(' "')[0]) == (
        "ValidationException",
        "Cannot create already existing endpoint",
    )
    assert statuses(sm, "qa-endpoint", 1) == ["Deleting"]
    code, _, message = error_of(lambda: sm.describe_endpoint(EndpointName="qa-endpoint"))
    assert code == "ValidationException"
    assert message.startswith("Could not find endpoint")
    assert sm.list_endpoints()["Endpoints"] == []


@pytest.mark.e2e
def test_faults_throttle_and_fail_the_chosen_operation_only(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")

    def describe() -> Any:
        return sm.describe_endpoint(EndpointName="qa-endpoint")

    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle", count=2)
    assert error_of(describe)[:2] == ("ThrottlingException", 400)
    sm.list_endpoints()  # another operation is untouched
    assert error_of(describe)[:2] == ("ThrottlingException", 400)
    assert describe()["EndpointStatus"] == "InService"  # count spent

    aws.inject_fault("sagemaker", "DescribeEndpoint", "5xx", rate=0.5)
    outcomes = []
    for _ in range(4):
        try:
            describe()
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    assert outcomes == ["ok", "InternalFailure", "ok", "InternalFailure"]
    aws.clear_faults()
    describe()

    aws.inject_fault("sagemaker", "*", "5xx", http_status=503, count=1)
    assert error_of(sm.list_models)[:2] == ("ServiceUnavailable", 503)

    # botocore sees these as the retryable errors they are in AWS.
    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle", count=2)
    assert aws.client("sagemaker", max_attempts=3).describe_endpoint(EndpointName="qa-endpoint")


@pytest.mark.e2e
def test_faults_for_s3_sts_and_ecr_look_like_those_services(aws: MotoServer) -> None:
    s3, sts, ecr = aws.client("s3"), aws.client("sts"), aws.client("ecr")
    s3.create_bucket(Bucket="qa-models")
    s3.put_object(Bucket="qa-models", Key="m/model.tar.gz", Body=b"weights")
    aws.inject_fault("s3", "HeadObject", "throttle", count=1)
    aws.inject_fault("s3", "PutObject", "5xx", count=1)
    aws.inject_fault("sts", "GetCallerIdentity", "throttle", count=1)
    aws.inject_fault("ecr", "GetAuthorizationToken", "5xx", count=1)
    assert error_of(lambda: s3.head_object(Bucket="qa-models", Key="m/model.tar.gz"))[1] == 503
    put = error_of(lambda: s3.put_object(Bucket="qa-models", Key="x", Body=b""))
    assert put[:2] == ("InternalError", 500)
    assert error_of(sts.get_caller_identity)[:2] == ("Throttling", 400)
    assert error_of(ecr.get_authorization_token)[:2] == ("InternalFailure", 500)
    assert s3.head_object(Bucket="qa-models", Key="m/model.tar.gz")["ContentLength"] == 7


@pytest.mark.e2e
def test_latency_fault_delays_then_serves(aws: MotoServer) -> None:
    sts = aws.client("sts")
    aws.inject_fault("sts", "GetCallerIdentity", "latency", latency_s=0.3, count=1)
    started = time.monotonic()
    assert sts.get_caller_identity()["Account"] == aws.account_id
    # Only a lower bound: the server slept at least this long, however loaded the machine is.
    assert time.monotonic() - started >= 0.3


@pytest.mark.e2e
def test_s3_ecr_sts_iam_operations_the_operator_uses(aws: MotoServer) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="qa-models")
    for key in ("models/a/MLmodel", "models/a/model.tar.gz", "other/x"):
        s3.put_object(Bucket="qa-models", Key=key, Body=key.encode())
    head = s3.head_object(Bucket="qa-models", Key="models/a/MLmodel")
    assert head["ContentLength"] == len(b"models/a/MLmodel")
    listed = s3.list_objects_v2(Bucket="qa-models", Prefix="models/")
    assert [o["Key"] for o in listed["Contents"]] == ["models/a/MLmodel", "models/a/model.tar.gz"]
    s3.delete_object(Bucket="qa-models", Key="other/x")
    s3.delete_objects(
        Bucket="qa-models",
        Delete={"Objects": [{"Key": "models/a/MLmodel"}, {"Key": "models/a/model.tar.gz"}]},
    )
    assert s3.list_objects_v2(Bucket="qa-models")["KeyCount"] == 0
    assert error_of(lambda: s3.head_object(Bucket="qa-models", Key="other/x"))[1] == 404

    ecr = aws.client("ecr")
    created = ecr.create_repository(repositoryName="qa-operator/qa-model")["repository"]
    repos = ecr.describe_repositories(repositoryNames=["qa-operator/qa-model"])["repositories"]
    assert repos[0]["repositoryUri"] == created["repositoryUri"]
    assert created["repositoryUri"].startswith(f"{aws.account_id}.dkr.ecr.{aws.region}.")
    token = ecr.get_authorization_token()["authorizationData"][0]
    assert token["authorizationToken"]
    code, _, _ = error_of(lambda: ecr.describe_repositories(repositoryNames=["nope"]))
    assert code == "RepositoryNotFoundException"

    assert aws.client("sts").get_caller_identity()["Account"] == aws.account_id
    # MOTO_IAM_LOAD_MANAGED_POLICIES: AWS managed policies exist, as in a real account.
    policy = aws.client("iam").get_policy(
        PolicyArn="arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"
    )
    assert policy["Policy"]["PolicyName"] == "AmazonSageMakerFullAccess"


@pytest.mark.e2e
def test_reset_forgets_state_lifecycle_and_faults(aws: MotoServer) -> None:
    sm = aws.client("sagemaker")
    make_model_and_configs(sm, "qa-config-1")
    aws.set_endpoint_lifecycle(creating_describes=10)
    aws.fail_next_endpoint_creation("qa-endpoint", "never")
    aws.inject_fault("s3", "*", "5xx")
    aws.reset()
    assert sm.list_models()["Models"] == []
    assert aws.client("s3").list_buckets()["Buckets"] == []
    make_model_and_configs(sm, "qa-config-1")
    sm.create_endpoint(EndpointName="qa-endpoint", EndpointConfigName="qa-config-1")
    assert statuses(sm, "qa-endpoint", 1) == ["InService"]


def test_calls_are_counted_per_operation_and_reset(aws: Any) -> None:
    sm = aws.client("sagemaker")
    for _ in range(3):
        sm.list_endpoints()
    aws.inject_fault("sagemaker", "ListModels", "throttle", count=1)
    with pytest.raises(ClientError):
        sm.list_models()
    assert aws.calls("sagemaker", "ListEndpoints") == 3
    assert aws.calls("sagemaker", "ListModels") == 1
    aws.reset()
    assert aws.calls("sagemaker", "ListEndpoints") == 0
