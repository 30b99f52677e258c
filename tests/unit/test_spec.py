"""parse_spec: valid bodies become typed dataclasses; each invalid body names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qa_operator.model.config import InferenceConfig
from qa_operator.spec import (
    DeploymentSpec,
    EndpointSettings,
    HuggingFaceSource,
    ImageSettings,
    InstanceCompute,
    MlflowSource,
    S3Source,
    ServerlessCompute,
    SmokeTest,
    SpecError,
    parse_spec,
)

ROLE = "arn:aws:iam::123456789012:role/service-role/qa-sagemaker"


def body(**overrides: Any) -> dict[str, Any]:
    """A minimal valid spec; top-level keys in `overrides` replace the defaults."""
    raw: dict[str, Any] = {
        "model": {"huggingface": {"id": "distilbert/distilbert-base-cased-distilled-squad"}},
        "endpoint": {"instanceType": "ml.m5.xlarge"},
    }
    raw.update(overrides)
    return raw


def with_endpoint(**fields: Any) -> dict[str, Any]:
    """A valid body whose endpoint section is replaced by `fields` (None deletes a key)."""
    endpoint: dict[str, Any] = {"instanceType": "ml.m5.xlarge", **fields}
    return body(endpoint={k: v for k, v in endpoint.items() if v is not None})


def with_inference(**fields: Any) -> dict[str, Any]:
    raw = body()
    raw["model"]["inference"] = fields
    return raw


def test_inference_engine_parses_and_defaults_to_torch() -> None:
    onnx = parse_spec(with_inference(engine="onnxruntime", quantize="dynamic-int8"))
    assert onnx.inference.engine == "onnxruntime"
    assert onnx.inference.quantize == "dynamic-int8"
    assert parse_spec(with_inference()).inference.engine == "torch"


def test_full_body_parses_to_typed_spec() -> None:
    raw = {
        "model": {
            "huggingface": {"id": "deepset/roberta-base-squad2", "revision": "v1.2"},
            "inference": {
                "maxAnswerLength": 50,
                "maxSeqLength": 256,
                "docStride": 64,
                "batchSize": 8,
                "quantize": "dynamic-int8",
            },
        },
        "endpoint": {
            "name": "qa-prod",
            "region": "eu-west-1",
            "executionRoleArn": ROLE,
            "instanceType": "ml.c5.2xlarge",
            "instanceCount": 3,
            "environment": {"LOG_LEVEL": "debug", "_X1": ""},
            "tags": {"team": "search", "cost-center": "42"},
        },
        "image": {"repository": "team/qa-serving", "mode": "baked"},
        "deletionPolicy": "Retain",
    }
    original = copy.deepcopy(raw)

    spec = parse_spec(raw)

    assert spec == DeploymentSpec(
        source=HuggingFaceSource(model_id="deepset/roberta-base-squad2", revision="v1.2"),
        inference=InferenceConfig(
            max_answer_length=50,
            max_seq_length=256,
            doc_stride=64,
            batch_size=8,
            quantize="dynamic-int8",
        ),
        endpoint=EndpointSettings(
            compute=InstanceCompute(instance_type="ml.c5.2xlarge", instance_count=3),
            name="qa-prod",
            region="eu-west-1",
            execution_role_arn=ROLE,
            environment={"LOG_LEVEL": "debug", "_X1": ""},
            tags={"team": "search", "cost-center": "42"},
        ),
        image=ImageSettings(repository="team/qa-serving", mode="baked"),
        deletion_policy="Retain",
    )
    assert raw == original, "parsing must not mutate the resource body"


def test_minimal_body_takes_defaults() -> None:
    spec = parse_spec(body())

    assert spec.source == HuggingFaceSource(
        model_id="distilbert/distilbert-base-cased-distilled-squad", revision="main"
    )
    assert spec.inference == InferenceConfig()
    assert spec.endpoint == EndpointSettings(compute=InstanceCompute("ml.m5.xlarge", 1))
    assert spec.endpoint.name is None
    assert spec.endpoint.region is None
    assert spec.endpoint.execution_role_arn is None
    assert dict(spec.endpoint.environment) == {}
    assert dict(spec.endpoint.tags) == {}
    assert spec.image == ImageSettings(repository=None, mode="s3")
    assert spec.deletion_policy == "Delete"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"s3": {"uri": "s3://my-bucket/models/qa/"}}, S3Source(uri="s3://my-bucket/models/qa/")),
        ({"s3": {"uri": "s3://my.bucket-1"}}, S3Source(uri="s3://my.bucket-1")),
        (
            {"mlflow": {"modelUri": "models:/qa/3", "trackingUri": "http://mlflow:5000"}},
            MlflowSource(model_uri="models:/qa/3", tracking_uri="http://mlflow:5000"),
        ),
        ({"mlflow": {"modelUri": "runs:/abc/model"}}, MlflowSource(model_uri="runs:/abc/model")),
        (
            {"mlflow": {"modelUri": "runs:/abc/model", "trackingUri": ""}},
            MlflowSource(model_uri="runs:/abc/model", tracking_uri=None),
        ),
        (
            {"huggingface": {"id": "bert-base-uncased", "revision": ""}},
            HuggingFaceSource(model_id="bert-base-uncased", revision="main"),
        ),
        (
            # An explicit null for the other sources is "not set", as the API server sends it.
            {"huggingface": {"id": "x/y"}, "s3": None, "mlflow": None},
            HuggingFaceSource(model_id="x/y"),
        ),
    ],
    ids=[
        "s3-prefix",
        "s3-bucket-only",
        "mlflow-tracking",
        "mlflow-default",
        "mlflow-empty-uri",
        "hf-empty-revision",
        "hf-null-siblings",
    ],
)
def test_model_sources(model: dict[str, Any], expected: object) -> None:
    assert parse_spec(body(model=model)).source == expected


@pytest.mark.parametrize(
    ("serverless", "expected"),
    [
        ({"memorySizeInMB": 4096, "maxConcurrency": 20}, ServerlessCompute(4096, 20)),
        ({}, ServerlessCompute(memory_size_mb=2048, max_concurrency=5)),
        ({"memorySizeInMB": 1024, "maxConcurrency": 1}, ServerlessCompute(1024, 1)),
        ({"memorySizeInMB": 6144, "maxConcurrency": 200}, ServerlessCompute(6144, 200)),
    ],
)
def test_serverless_compute(serverless: dict[str, Any], expected: ServerlessCompute) -> None:
    spec = parse_spec(with_endpoint(instanceType=None, serverless=serverless))
    assert spec.endpoint.compute == expected


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        pytest.param({}, InstanceCompute("ml.m5.xlarge", 1), id="instances-default-to-one"),
        pytest.param({"instanceCount": 3}, InstanceCompute("ml.m5.xlarge", 3), id="instances"),
        pytest.param(
            {"instanceType": None, "serverless": {"memorySizeInMB": 1024, "maxConcurrency": 2}},
            ServerlessCompute(1024, 2),
            id="serverless-without-count",
        ),
    ],
)
def test_instance_count_defaults_to_one_for_instance_endpoints_only(
    endpoint: dict[str, Any], expected: InstanceCompute | ServerlessCompute
) -> None:
    # The CRD has no default for instanceCount (it would reject every serverless resource);
    # the default lives here.
    assert parse_spec(with_endpoint(**endpoint)).endpoint.compute == expected


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "us-gov-west-1", "us-isob-east-1"])
def test_valid_regions(region: str) -> None:
    assert parse_spec(with_endpoint(region=region)).endpoint.region == region


@pytest.mark.parametrize("name", ["a", "A1", "qa-endpoint-7", "a--b", "x" * 63])
def test_valid_endpoint_names(name: str) -> None:
    assert parse_spec(with_endpoint(name=name)).endpoint.name == name


def test_forty_user_tags_are_allowed() -> None:
    tags = {f"k{i}": "v" * 256 for i in range(40)}
    assert dict(parse_spec(with_endpoint(tags=tags)).endpoint.tags) == tags


def _inference_body_with_doc_stride_eq_seq() -> dict[str, Any]:
    return with_inference(maxSeqLength=128, docStride=128)


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, body, field_path, fragment of the message)
    ("no-model", {"endpoint": {"instanceType": "ml.m5.xlarge"}}, "model", "is required"),
    ("model-not-object", body(model="bert"), "model", "must be an object"),
    ("no-endpoint", {"model": body()["model"]}, "endpoint", "is required"),
    ("no-source", body(model={}), "model", "found none"),
    (
        "two-sources",
        body(model={"huggingface": {"id": "a/b"}, "s3": {"uri": "s3://bkt/x"}}),
        "model",
        "found huggingface, s3",
    ),
    (
        "three-sources",
        body(
            model={
                "huggingface": {"id": "a/b"},
                "s3": {"uri": "s3://bkt/x"},
                "mlflow": {"modelUri": "models:/m/1"},
            }
        ),
        "model",
        "exactly one of huggingface, s3, mlflow",
    ),
    ("hf-no-id", body(model={"huggingface": {}}), "model.huggingface.id", "is required"),
    (
        "hf-empty-id",
        body(model={"huggingface": {"id": ""}}),
        "model.huggingface.id",
        "is required",
    ),
    (
        "hf-id-not-string",
        body(model={"huggingface": {"id": 7}}),
        "model.huggingface.id",
        "must be a string",
    ),
    ("s3-no-uri", body(model={"s3": {"bucket": "x"}}), "model.s3.uri", "is required"),
    ("s3-http-uri", body(model={"s3": {"uri": "https://bkt/x"}}), "model.s3.uri", "s3://"),
    ("s3-upper-bucket", body(model={"s3": {"uri": "s3://MyBucket/x"}}), "model.s3.uri", "s3://"),
    ("s3-short-bucket", body(model={"s3": {"uri": "s3://ab/x"}}), "model.s3.uri", "'s3://ab/x'"),
    (
        "mlflow-no-uri",
        body(model={"mlflow": {"trackingUri": "http://m"}}),
        "model.mlflow.modelUri",
        "is required",
    ),
    (
        "bad-endpoint-name-underscore",
        with_endpoint(name="qa_endpoint"),
        "endpoint.name",
        "'qa_endpoint' is not a valid SageMaker name",
    ),
    (
        "bad-endpoint-name-leading-hyphen",
        with_endpoint(name="-qa"),
        "endpoint.name",
        "not a valid SageMaker name",
    ),
    (
        "bad-endpoint-name-trailing-hyphen",
        with_endpoint(name="qa-"),
        "endpoint.name",
        "not a valid SageMaker name",
    ),
    (
        "endpoint-name-64-chars",
        with_endpoint(name="x" * 64),
        "endpoint.name",
        "not a valid SageMaker name",
    ),
    ("bad-region-upper", with_endpoint(region="US-EAST-1"), "endpoint.region", "AWS region"),
    ("bad-region-no-number", with_endpoint(region="us-east"), "endpoint.region", "'us-east'"),
    (
        "bad-role-user-arn",
        with_endpoint(executionRoleArn="arn:aws:iam::123456789012:user/bob"),
        "endpoint.executionRoleArn",
        "is not an IAM role ARN",
    ),
    (
        "bad-role-short-account",
        with_endpoint(executionRoleArn="arn:aws:iam::1234:role/qa"),
        "endpoint.executionRoleArn",
        "IAM role ARN",
    ),
    (
        "bad-role-name-only",
        with_endpoint(executionRoleArn="qa-role"),
        "endpoint.executionRoleArn",
        "IAM role ARN",
    ),
    (
        "no-compute",
        with_endpoint(instanceType=None),
        "endpoint.instanceType",
        "such as ml.m5.xlarge, not None",
    ),
    (
        "bad-instance-type",
        with_endpoint(instanceType="m5.xlarge"),
        "endpoint.instanceType",
        "'m5.xlarge'",
    ),
    (
        "instance-type-not-string",
        with_endpoint(instanceType=5),
        "endpoint.instanceType",
        "SageMaker instance type",
    ),
    (
        "serverless-and-instance-type",
        with_endpoint(serverless={"memorySizeInMB": 2048}),
        "endpoint",
        "not both",
    ),
    (
        "serverless-and-instance-count",
        with_endpoint(instanceType=None, instanceCount=2, serverless={}),
        "endpoint",
        "not both",
    ),
    (
        "serverless-not-object",
        with_endpoint(instanceType=None, serverless=True),
        "endpoint.serverless",
        "must be an object",
    ),
    (
        "serverless-memory-not-a-size",
        with_endpoint(instanceType=None, serverless={"memorySizeInMB": 1500}),
        "endpoint.serverless.memorySizeInMB",
        "1024, 2048",
    ),
    (
        "serverless-memory-too-big",
        with_endpoint(instanceType=None, serverless={"memorySizeInMB": 10240}),
        "endpoint.serverless.memorySizeInMB",
        "between 1024 and 6144, not 10240",
    ),
    (
        "serverless-memory-string",
        with_endpoint(instanceType=None, serverless={"memorySizeInMB": "2048"}),
        "endpoint.serverless.memorySizeInMB",
        "must be an integer",
    ),
    (
        "serverless-concurrency-zero",
        with_endpoint(instanceType=None, serverless={"maxConcurrency": 0}),
        "endpoint.serverless.maxConcurrency",
        "between 1 and 200, not 0",
    ),
    (
        "instance-count-zero",
        with_endpoint(instanceCount=0),
        "endpoint.instanceCount",
        "between 1 and 100, not 0",
    ),
    (
        "instance-count-too-many",
        with_endpoint(instanceCount=101),
        "endpoint.instanceCount",
        "not 101",
    ),
    (
        "instance-count-bool",
        with_endpoint(instanceCount=True),
        "endpoint.instanceCount",
        "must be an integer",
    ),
    (
        "instance-count-float",
        with_endpoint(instanceCount=2.0),
        "endpoint.instanceCount",
        "must be an integer",
    ),
    (
        "doc-stride-equals-seq-length",
        _inference_body_with_doc_stride_eq_seq(),
        "model.inference.docStride",
        "smaller than maxSeqLength",
    ),
    (
        "doc-stride-above-default-seq-length",
        with_inference(docStride=400),
        "model.inference.docStride",
        "smaller than maxSeqLength",
    ),
    (
        "seq-length-too-long",
        with_inference(maxSeqLength=1024),
        "model.inference.maxSeqLength",
        "between 32 and 512, not 1024",
    ),
    (
        "answer-length-zero",
        with_inference(maxAnswerLength=0),
        "model.inference.maxAnswerLength",
        "between 1 and 512",
    ),
    (
        "batch-size-string",
        with_inference(batchSize="8"),
        "model.inference.batchSize",
        "must be an integer",
    ),
    (
        "bad-quantize",
        with_inference(quantize="int4"),
        "model.inference.quantize",
        "'int4'",
    ),
    (
        "bad-engine",
        with_inference(engine="tensorrt"),
        "model.inference.engine",
        "'tensorrt'",
    ),
    (
        "inference-not-object",
        body(model={"huggingface": {"id": "a/b"}, "inference": []}),
        "model.inference",
        "must be an object",
    ),
    (
        "reserved-tag-aws",
        with_endpoint(tags={"aws:cloudformation:stack": "x"}),
        "endpoint.tags",
        "'aws:cloudformation:stack' uses a reserved prefix",
    ),
    (
        "reserved-tag-operator",
        with_endpoint(tags={"team": "a", "qaoperator.io/uid": "spoof"}),
        "endpoint.tags",
        "'qaoperator.io/uid' uses a reserved prefix",
    ),
    ("empty-tag-key", with_endpoint(tags={"": "x"}), "endpoint.tags", "keys 1-128"),
    ("long-tag-key", with_endpoint(tags={"k" * 129: "x"}), "endpoint.tags", "keys 1-128"),
    ("long-tag-value", with_endpoint(tags={"k": "v" * 257}), "endpoint.tags", "values 0-256"),
    (
        "too-many-tags",
        with_endpoint(tags={f"k{i}": "v" for i in range(41)}),
        "endpoint.tags",
        "at most 40 tags",
    ),
    ("tags-not-map", with_endpoint(tags=["a"]), "endpoint.tags", "must be a map of strings"),
    (
        "tag-value-int",
        with_endpoint(tags={"cost": 42}),
        "endpoint.tags",
        "'cost': keys and values must be strings",
    ),
    (
        "env-key-with-hyphen",
        with_endpoint(environment={"LOG-LEVEL": "x"}),
        "endpoint.environment",
        "'LOG-LEVEL' is not a valid environment variable name",
    ),
    (
        "env-key-leading-digit",
        with_endpoint(environment={"1ABC": "x"}),
        "endpoint.environment",
        "environment variable name",
    ),
    (
        "env-value-int",
        with_endpoint(environment={"WORKERS": 4}),
        "endpoint.environment",
        "'WORKERS': keys and values must be strings",
    ),
    (
        "env-value-bool",
        with_endpoint(environment={"DEBUG": True}),
        "endpoint.environment",
        "must be strings",
    ),
    (
        "env-value-null",
        with_endpoint(environment={"DEBUG": None}),
        "endpoint.environment",
        "must be strings",
    ),
    (
        "env-not-map",
        with_endpoint(environment="A=1"),
        "endpoint.environment",
        "must be a map of strings",
    ),
    (
        "bad-deletion-policy",
        body(deletionPolicy="Orphan"),
        "deletionPolicy",
        "must be Delete or Retain, not 'Orphan'",
    ),
    (
        "lowercase-deletion-policy",
        body(deletionPolicy="delete"),
        "deletionPolicy",
        "Delete or Retain",
    ),
    ("bad-image-mode", body(image={"mode": "docker"}), "image.mode", "must be s3 or baked"),
    ("image-not-object", body(image="repo/x"), "image", "must be an object"),
    ("smoke-not-object", body(smokeTest=True), "smokeTest", "must be an object"),
    (
        "smoke-enabled-string",
        body(smokeTest={"enabled": "no"}),
        "smokeTest.enabled",
        "true or false",
    ),
    ("smoke-question-alone", body(smokeTest={"question": "Who?"}), "smokeTest", "together"),
    ("smoke-text-alone", body(smokeTest={"text": "Alex."}), "smokeTest", "together"),
    (
        "smoke-timeout-over-sagemakers-limit",
        body(smokeTest={"timeoutSeconds": 61}),
        "smokeTest.timeoutSeconds",
        "between 1 and 60",
    ),
    (
        "smoke-text-too-long",
        body(smokeTest={"question": "q", "text": "x" * 10_001}),
        "smokeTest",
        "at most 10000",
    ),
    (
        "image-repository-not-string",
        body(image={"repository": ["a"]}),
        "image.repository",
        "must be a string",
    ),
]


@pytest.mark.parametrize(
    ("raw", "field_path", "fragment"),
    [pytest.param(raw, path, fragment, id=case) for case, raw, path, fragment in INVALID],
)
def test_invalid_bodies_name_their_field(
    raw: dict[str, Any], field_path: str, fragment: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    error = caught.value
    assert error.field_path == field_path
    assert fragment in error.detail
    assert str(error) == f"spec.{field_path}: {error.detail}"
    assert isinstance(error, ValueError), "callers catch SpecError as a ValueError"


def test_endpoint_name_longer_than_63_with_many_hyphens_is_rejected() -> None:
    name = "a" + "-" * 70 + "b"
    with pytest.raises(SpecError) as caught:
        parse_spec(with_endpoint(name=name))
    assert caught.value.field_path == "endpoint.name"


def test_smoke_test_defaults_to_the_built_in_sample_and_the_operators_switch() -> None:
    assert parse_spec(body()).smoke_test == SmokeTest()
    assert SmokeTest().enabled is None
    assert SmokeTest().question and SmokeTest().text


def test_smoke_test_is_read() -> None:
    spec = parse_spec(
        body(
            smokeTest={
                "enabled": True,
                "question": "Who am I?",
                "text": "I am Alex.",
                "expectAnswer": "Alex",
                "timeoutSeconds": 5,
            }
        )
    )
    assert spec.smoke_test == SmokeTest(True, "Who am I?", "I am Alex.", "Alex", 5)
    assert parse_spec(body(smokeTest={"enabled": False})).smoke_test.enabled is False
