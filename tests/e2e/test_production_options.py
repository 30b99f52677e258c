"""spec.endpoint's production options end to end: what the API server refuses at apply, and what
reaches SageMaker (moto, extended) in the CreateModel / CreateEndpointConfig requests."""

from __future__ import annotations

from typing import Any

import pytest

from support.e2e import apply, assert_rejected_at_apply, deployment, wait_ready

pytestmark = pytest.mark.e2e

SERVERLESS = {"memorySizeInMB": 2048, "maxConcurrency": 4}
TOPIC = "arn:aws:sns:us-east-1:123456789012:qa-answers"


def _endpoint(body: dict[str, Any], **endpoint: Any) -> dict[str, Any]:
    """The body with its endpoint section replaced."""
    body["spec"]["endpoint"] = {"tags": {"team": "qa"}, **endpoint}
    return body


def test_data_capture_network_and_encryption_reach_the_model_and_config(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = _endpoint(
        deployment("audited", s3_model_uri),
        instanceType="ml.m5.large",
        dataCapture={"destinationS3Uri": "s3://qa-audit/capture/", "samplingPercent": 20},
        vpc={"subnets": ["subnet-0a1b2c"], "securityGroups": ["sg-0d4e"]},
        kmsKeyId="alias/qa-volumes",
        enableNetworkIsolation=True,
    )
    operator.start()
    apply(kube_cluster, namespace, body)
    status = wait_ready(kube_cluster, namespace, "audited", operator)["status"]

    sm = aws.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=status["endpointConfigName"])
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 20,
        "DestinationS3Uri": "s3://qa-audit/capture/",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    }
    assert config["KmsKeyId"] == "alias/qa-volumes"
    model = sm.describe_model(ModelName=status["modelName"])
    assert model["VpcConfig"] == {"Subnets": ["subnet-0a1b2c"], "SecurityGroupIds": ["sg-0d4e"]}
    assert model["EnableNetworkIsolation"] is True
    # The s3 package mode under isolation: SageMaker, not the container, reads ModelDataUrl.
    assert model["PrimaryContainer"]["ModelDataUrl"] == status["modelPackage"]["uri"]


def test_an_async_endpoint_is_ready_and_its_status_says_where_answers_land(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = _endpoint(
        deployment("queued", s3_model_uri, smokeTest={"enabled": False}),
        instanceType="ml.m5.large",
        **{
            "async": {
                "outputS3Uri": "s3://qa-answers/out/",
                "failureS3Uri": "s3://qa-answers/failed/",
                "maxConcurrentInvocationsPerInstance": 2,
                "snsSuccessTopic": TOPIC,
            }
        },
    )
    operator.start()
    apply(kube_cluster, namespace, body)
    status = wait_ready(kube_cluster, namespace, "queued", operator)["status"]
    assert status["asyncInference"] == {
        "outputS3Uri": "s3://qa-answers/out/",
        "failureS3Uri": "s3://qa-answers/failed/",
    }
    config = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=status["endpointConfigName"]
    )
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": "s3://qa-answers/out/",
            "S3FailurePath": "s3://qa-answers/failed/",
            "NotificationConfig": {"SuccessTopic": TOPIC},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }

    # Back to real time: a new config without it, and the status forgets where answers landed.
    del body["spec"]["endpoint"]["async"]
    apply(kube_cluster, namespace, body)
    status = wait_ready(kube_cluster, namespace, "queued", operator, generation=2)["status"]
    assert "asyncInference" not in status
    config = aws.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=status["endpointConfigName"]
    )
    assert "AsyncInferenceConfig" not in config


def test_serverless_with_provisioned_concurrency_then_switched_to_instances(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    body = _endpoint(
        deployment("warm", s3_model_uri),
        serverless={**SERVERLESS, "provisionedConcurrency": 2},
    )
    operator.start()
    apply(kube_cluster, namespace, body)
    first = wait_ready(kube_cluster, namespace, "warm", operator)["status"]
    sm = aws.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=first["endpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 4,
        "ProvisionedConcurrency": 2,
    }

    # Serverless -> instances is a new EndpointConfig on the same Model, and one UpdateEndpoint.
    _endpoint(body, instanceType="ml.m5.large", instanceCount=1)
    apply(kube_cluster, namespace, body)
    second = wait_ready(kube_cluster, namespace, "warm", operator, generation=2)["status"]
    assert second["endpointConfigName"] != first["endpointConfigName"]
    assert second["modelName"] == first["modelName"]
    assert aws.calls("sagemaker", "UpdateEndpoint") == 1
    endpoint = sm.describe_endpoint(EndpointName=second["endpointName"])
    assert endpoint["EndpointConfigName"] == second["endpointConfigName"]
    (variant,) = sm.describe_endpoint_config(EndpointConfigName=second["endpointConfigName"])[
        "ProductionVariants"
    ]
    assert (variant["InstanceType"], variant.get("ServerlessConfig")) == ("ml.m5.large", None)


def _invalid(**endpoint: Any) -> dict[str, Any]:
    return _endpoint(deployment("bad", "s3://qa-sources/tiny/"), **endpoint)


ON_INSTANCES = {"instanceType": "ml.m5.large"}
REJECTED = [
    (
        "provisioned above max",
        _invalid(serverless={**SERVERLESS, "provisionedConcurrency": 5}),
        "provisionedConcurrency must not exceed maxConcurrency",
    ),
    (
        "serverless with data capture",
        _invalid(serverless=SERVERLESS, dataCapture={"destinationS3Uri": "s3://qa-audit/x/"}),
        "endpoint.serverless cannot be combined with async, dataCapture, vpc",
    ),
    (
        "serverless with network isolation",
        _invalid(serverless=SERVERLESS, enableNetworkIsolation=True),
        "endpoint.serverless cannot be combined with async, dataCapture, vpc",
    ),
    (
        "async with the smoke test on",
        _invalid(**ON_INSTANCES, **{"async": {"outputS3Uri": "s3://qa-answers/out/"}}),
        "endpoint.async needs smokeTest.enabled: false",
    ),
    (
        "capture nothing",
        _invalid(
            **ON_INSTANCES,
            dataCapture={
                "destinationS3Uri": "s3://qa-audit/x/",
                "captureRequest": False,
                "captureResponse": False,
            },
        ),
        "must capture the request, the response or both",
    ),
    (
        "sampling above 100",
        _invalid(
            **ON_INSTANCES,
            dataCapture={"destinationS3Uri": "s3://qa-audit/x/", "samplingPercent": 101},
        ),
        "spec.endpoint.dataCapture.samplingPercent",
    ),
    (
        "six security groups",
        _invalid(
            **ON_INSTANCES,
            vpc={"subnets": ["subnet-1"], "securityGroups": [f"sg-{i}" for i in range(6)]},
        ),
        "spec.endpoint.vpc.securityGroups",
    ),
    (
        "not a subnet",
        _invalid(**ON_INSTANCES, vpc={"subnets": ["vpc-1"], "securityGroups": ["sg-1"]}),
        "spec.endpoint.vpc.subnets[0]",
    ),
    (
        "autoscaling min above max",
        _invalid(
            **ON_INSTANCES,
            autoscaling={"minInstances": 3, "maxInstances": 2, "targetInvocationsPerInstance": 9},
        ),
        "maxInstances must not be below minInstances",
    ),
    (
        "initial count outside the autoscaling range",
        _invalid(
            **ON_INSTANCES,
            instanceCount=5,
            autoscaling={"minInstances": 1, "maxInstances": 4, "targetInvocationsPerInstance": 9},
        ),
        "instanceCount (the initial count, default 1) within minInstances..maxInstances",
    ),
    (
        "autoscaling serverless",
        _invalid(
            serverless=SERVERLESS,
            autoscaling={"minInstances": 1, "maxInstances": 4, "targetInvocationsPerInstance": 9},
        ),
        "endpoint.autoscaling needs instanceType",
    ),
    (
        "topic not sns",
        _invalid(
            **ON_INSTANCES,
            **{"async": {"outputS3Uri": "s3://qa-answers/out/", "snsErrorTopic": "arn:aws:sqs:x"}},
        ),
        "spec.endpoint.async.snsErrorTopic",
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [pytest.param(b, e, id=case) for case, b, e in REJECTED]
)
def test_combinations_sagemaker_refuses_are_rejected_at_apply(
    kube_cluster: Any, namespace: str, body: dict[str, Any], expected: str
) -> None:
    assert_rejected_at_apply(kube_cluster, namespace, body, expected)


def test_moto_refuses_what_sagemaker_refuses_for_serverless(aws: Any) -> None:
    """The extended moto's checks, so that a spec slipping past admission would fail as in AWS."""
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "i"}, EnableNetworkIsolation=True,
    )  # fmt: skip
    assert sm.describe_model(ModelName="m")["EnableNetworkIsolation"] is True
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
    variant = {"VariantName": "v", "ModelName": "m", "ServerlessConfig": serverless}
    too_warm = {**variant, "ServerlessConfig": {**serverless, "ProvisionedConcurrency": 5}}
    for config in (
        {"ProductionVariants": [too_warm]},
        {"ProductionVariants": [variant], "DataCaptureConfig": _capture()},
    ):
        with pytest.raises(sm.exceptions.ClientError) as refused:
            sm.create_endpoint_config(EndpointConfigName="c", **config)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


def _capture() -> dict[str, Any]:
    return {
        "EnableCapture": True, "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://qa-audit/x/", "CaptureOptions": [{"CaptureMode": "Input"}],
    }  # fmt: skip
