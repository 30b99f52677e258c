"""spec.endpoint's production options (serverless provisioned concurrency, async inference, data
capture, VPC, KMS, network isolation): parsed from the body, refused where SageMaker refuses them,
and turned into the CreateModel / CreateEndpointConfig parameters of the API reference."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.desired import (
    Artifacts,
    Owner,
    compute_payload,
    content_name,
    desired_state,
    endpoint_name,
    production_variant,
)
from qa_operator.endpoint_options import async_status, endpoint_config_options, model_options
from qa_operator.spec import (
    AsyncInference,
    DataCapture,
    ServerlessCompute,
    SpecError,
    Vpc,
    parse_spec,
)

ROLE = "arn:aws:iam::123456789012:role/qa-sagemaker"
OWNER = Owner(namespace="team-a", name="squad-qa", uid="0b6f5a36-1c1e-4d5e-9c0a-3f1f3a0c8d11")
ARTIFACTS = Artifacts("sha256:" + "ab" * 32, "123.dkr.ecr/qa:1", "s3://b/k/model.tar.gz")
TOPIC = "arn:aws:sns:us-east-1:123456789012:qa-answers"
SERVERLESS = {"memorySizeInMB": 2048, "maxConcurrency": 5}


def raw(endpoint: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "model": {"huggingface": {"id": "deepset/roberta-base-squad2"}},
        "endpoint": endpoint,
        **top,
    }


def instances(**fields: Any) -> dict[str, Any]:
    return raw({"instanceType": "ml.m5.xlarge", **fields})


SMOKE_OFF = {"smokeTest": {"enabled": False}}


def test_every_option_parses_to_its_typed_field() -> None:
    spec = parse_spec(
        raw(
            {
                "instanceType": "ml.m5.xlarge",
                "async": {
                    "outputS3Uri": "s3://answers/qa/",
                    "failureS3Uri": "s3://answers/failed/",
                    "maxConcurrentInvocationsPerInstance": 4,
                    "snsSuccessTopic": TOPIC,
                    "snsErrorTopic": TOPIC + "-errors",
                },
                "dataCapture": {
                    "destinationS3Uri": "s3://audit/qa/",
                    "samplingPercent": 25,
                    "captureResponse": False,
                    "kmsKeyId": "alias/audit",
                },
                "vpc": {"subnets": ["subnet-0a1b", "subnet-0c2d"], "securityGroups": ["sg-0f"]},
                "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab",
                "enableNetworkIsolation": True,
            },
            **SMOKE_OFF,
        )
    )
    endpoint = spec.endpoint
    assert endpoint.async_inference == AsyncInference(
        "s3://answers/qa/", "s3://answers/failed/", 4, TOPIC, TOPIC + "-errors"
    )
    assert endpoint.data_capture == DataCapture("s3://audit/qa/", 25, True, False, "alias/audit")
    assert endpoint.vpc == Vpc(("subnet-0a1b", "subnet-0c2d"), ("sg-0f",))
    assert endpoint.kms_key_id == "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab"
    assert endpoint.enable_network_isolation is True


def test_options_default_to_off_and_data_capture_to_everything() -> None:
    endpoint = parse_spec(instances()).endpoint
    assert (endpoint.async_inference, endpoint.data_capture, endpoint.vpc) == (None, None, None)
    assert (endpoint.kms_key_id, endpoint.enable_network_isolation) == (None, False)
    capture = parse_spec(instances(dataCapture={"destinationS3Uri": "s3://audit/x"}))
    assert capture.endpoint.data_capture == DataCapture("s3://audit/x", 100, True, True, None)


@pytest.mark.parametrize(
    ("serverless", "expected"),
    [
        (SERVERLESS, ServerlessCompute(2048, 5, None)),
        ({**SERVERLESS, "provisionedConcurrency": 5}, ServerlessCompute(2048, 5, 5)),
        ({**SERVERLESS, "provisionedConcurrency": 1}, ServerlessCompute(2048, 5, 1)),
    ],
)
def test_serverless_provisioned_concurrency(
    serverless: dict[str, Any], expected: ServerlessCompute
) -> None:
    assert parse_spec(raw({"serverless": serverless})).endpoint.compute == expected


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "provisioned above max",
        raw({"serverless": {**SERVERLESS, "provisionedConcurrency": 6}}),
        "endpoint.serverless.provisionedConcurrency",
        "must not exceed maxConcurrency",
    ),
    (
        "provisioned zero",
        raw({"serverless": {**SERVERLESS, "provisionedConcurrency": 0}}),
        "endpoint.serverless.provisionedConcurrency",
        "between 1 and 200",
    ),
    (
        "serverless with data capture",
        raw({"serverless": SERVERLESS, "dataCapture": {"destinationS3Uri": "s3://bkt/b"}}),
        "endpoint.serverless",
        "do not support dataCapture",
    ),
    (
        "serverless with async",
        raw({"serverless": SERVERLESS, "async": {"outputS3Uri": "s3://bkt/b"}}, **SMOKE_OFF),
        "endpoint.serverless",
        "do not support async",
    ),
    (
        "serverless with vpc and isolation",
        raw(
            {
                "serverless": SERVERLESS,
                "vpc": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]},
                "enableNetworkIsolation": True,
            }
        ),
        "endpoint.serverless",
        "do not support vpc, enableNetworkIsolation",
    ),
    (
        "async with the smoke test on",
        instances(**{"async": {"outputS3Uri": "s3://bkt/b"}}),
        "smokeTest.enabled",
        "must be false with endpoint.async",
    ),
    (
        "async output not s3",
        raw({"instanceType": "ml.m5.xlarge", "async": {"outputS3Uri": "https://a/b"}}, **SMOKE_OFF),
        "endpoint.async.outputS3Uri",
        "s3://bucket/prefix",
    ),
    (
        "async without output",
        raw({"instanceType": "ml.m5.xlarge", "async": {}}, **SMOKE_OFF),
        "endpoint.async.outputS3Uri",
        "is required",
    ),
    (
        "async concurrency too high",
        raw(
            {
                "instanceType": "ml.m5.xlarge",
                "async": {"outputS3Uri": "s3://bkt/b", "maxConcurrentInvocationsPerInstance": 1001},
            },
            **SMOKE_OFF,
        ),
        "endpoint.async.maxConcurrentInvocationsPerInstance",
        "between 1 and 1000",
    ),
    (
        "async topic not an sns arn",
        raw(
            {
                "instanceType": "ml.m5.xlarge",
                "async": {"outputS3Uri": "s3://bkt/b", "snsErrorTopic": "arn:aws:sqs:x"},
            },
            **SMOKE_OFF,
        ),
        "endpoint.async.snsErrorTopic",
        "not an SNS topic ARN",
    ),
    (
        "capture nothing",
        instances(
            dataCapture={
                "destinationS3Uri": "s3://bkt/b",
                "captureRequest": False,
                "captureResponse": False,
            }
        ),
        "endpoint.dataCapture",
        "the request, the response or both",
    ),
    (
        "sampling above 100",
        instances(dataCapture={"destinationS3Uri": "s3://bkt/b", "samplingPercent": 101}),
        "endpoint.dataCapture.samplingPercent",
        "between 0 and 100",
    ),
    (
        "no subnets",
        instances(vpc={"subnets": [], "securityGroups": ["sg-1"]}),
        "endpoint.vpc.subnets",
        "1 to 16",
    ),
    (
        "six security groups",
        instances(vpc={"subnets": ["subnet-1"], "securityGroups": [f"sg-{i}" for i in range(6)]}),
        "endpoint.vpc.securityGroups",
        "1 to 5",
    ),
    (
        "not a subnet id",
        instances(vpc={"subnets": ["vpc-1"], "securityGroups": ["sg-1"]}),
        "endpoint.vpc.subnets",
        "does not look like",
    ),
    (
        "kms key with spaces",
        instances(kmsKeyId="my key"),
        "endpoint.kmsKeyId",
        "not a KMS key",
    ),
    (
        "isolation not a boolean",
        instances(enableNetworkIsolation="yes"),
        "endpoint.enableNetworkIsolation",
        "true or false",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [pytest.param(b, f, m, id=case) for case, b, f, m in INVALID],
)
def test_invalid_options_name_their_field(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(body)
    assert raised.value.field_path == field
    assert message in raised.value.detail


def test_options_become_the_api_reference_parameters() -> None:
    endpoint = parse_spec(
        raw(
            {
                "instanceType": "ml.m5.xlarge",
                "async": {
                    "outputS3Uri": "s3://answers/qa/",
                    "maxConcurrentInvocationsPerInstance": 4,
                    "snsSuccessTopic": TOPIC,
                },
                "dataCapture": {"destinationS3Uri": "s3://audit/qa/", "captureRequest": False},
                "vpc": {"subnets": ["subnet-0a"], "securityGroups": ["sg-0b", "sg-0c"]},
                "kmsKeyId": "alias/volumes",
                "enableNetworkIsolation": True,
            },
            **SMOKE_OFF,
        )
    ).endpoint
    assert model_options(endpoint) == {
        "VpcConfig": {"Subnets": ["subnet-0a"], "SecurityGroupIds": ["sg-0b", "sg-0c"]},
        "EnableNetworkIsolation": True,
    }
    assert endpoint_config_options(endpoint) == {
        "AsyncInferenceConfig": {
            "OutputConfig": {
                "S3OutputPath": "s3://answers/qa/",
                "NotificationConfig": {"SuccessTopic": TOPIC},
            },
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
        },
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://audit/qa/",
            "CaptureOptions": [{"CaptureMode": "Output"}],
        },
        "KmsKeyId": "alias/volumes",
    }


def test_provisioned_concurrency_goes_into_the_serverless_config() -> None:
    spec = parse_spec(raw({"serverless": {**SERVERLESS, "provisionedConcurrency": 2}}))
    state = desired_state(spec, OWNER, ARTIFACTS, execution_role_arn=ROLE)
    assert production_variant(state.config)["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
        "ProvisionedConcurrency": 2,
    }


def test_without_options_names_stay_what_they_were() -> None:
    # The names before these options existed: an operator upgrade must not roll anything out.
    spec = parse_spec(instances())
    state = desired_state(spec, OWNER, ARTIFACTS, execution_role_arn=ROLE)
    name = endpoint_name(OWNER, spec)
    old_model: dict[str, Any] = {
        "image": ARTIFACTS.image_uri,
        "modelDataUrl": ARTIFACTS.model_data_url,
        "package": ARTIFACTS.package_digest,
        "environment": {},
        "role": ROLE,
    }
    assert state.model.name == content_name(name, OWNER, old_model)
    old_config = {"model": state.model.name, "compute": compute_payload(spec.endpoint.compute)}
    assert state.config.name == content_name(name, OWNER, old_config)
    assert (state.model.options, state.config.options) == ({}, {})


@pytest.mark.parametrize(
    ("option", "model_changes"),
    [
        ({"kmsKeyId": "alias/x"}, False),
        ({"dataCapture": {"destinationS3Uri": "s3://bkt/b"}}, False),
        ({"vpc": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"]}}, True),
        ({"enableNetworkIsolation": True}, True),
    ],
)
def test_each_option_makes_a_new_config_and_only_model_options_a_new_model(
    option: dict[str, Any], model_changes: bool
) -> None:
    before = desired_state(parse_spec(instances()), OWNER, ARTIFACTS, execution_role_arn=ROLE)
    after = desired_state(
        parse_spec(instances(**option)), OWNER, ARTIFACTS, execution_role_arn=ROLE
    )
    assert after.config.name != before.config.name
    assert (after.model.name != before.model.name) is model_changes


def test_switching_serverless_and_instances_is_a_new_config() -> None:
    served = desired_state(parse_spec(instances()), OWNER, ARTIFACTS, execution_role_arn=ROLE)
    serverless = desired_state(
        parse_spec(raw({"serverless": SERVERLESS})), OWNER, ARTIFACTS, execution_role_arn=ROLE
    )
    assert serverless.model.name == served.model.name
    assert serverless.config.name != served.config.name


def test_status_says_where_async_answers_land_and_forgets_it_when_removed() -> None:
    async_spec = parse_spec(
        raw(
            {"instanceType": "ml.m5.xlarge", "async": {"outputS3Uri": "s3://answers/qa/"}},
            **SMOKE_OFF,
        )
    )
    assert async_status(async_spec.endpoint, {}) == {
        "asyncInference": {"outputS3Uri": "s3://answers/qa/", "failureS3Uri": None}
    }
    real_time = parse_spec(instances()).endpoint
    assert async_status(real_time, {"asyncInference": {"outputS3Uri": "s3://x/"}}) == {
        "asyncInference": None
    }
    assert async_status(real_time, {}) == {}
