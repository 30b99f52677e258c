"""The QAModelDeployment spec, parsed and validated once from the raw resource body.

The CRD schema and its CEL rules reject most bad input at admission; this parser repeats the checks
that matter so that a resource admitted under an older schema still fails with a clear message
instead of a crash deep inside a reconcile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from qa_operator.model.config import ENGINES, InferenceConfig

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")
RESERVED_TAG_PREFIXES = ("aws:", "qaoperator.io/")
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)


class SpecError(ValueError):
    """The spec cannot be reconciled as written; `field` is its JSON path."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"spec.{field_path}: {message}")
        self.field_path = field_path
        self.detail = message


@dataclass(frozen=True)
class HuggingFaceSource:
    model_id: str
    revision: str = "main"


@dataclass(frozen=True)
class S3Source:
    uri: str


@dataclass(frozen=True)
class MlflowSource:
    model_uri: str
    tracking_uri: str | None = None


ModelSource = HuggingFaceSource | S3Source | MlflowSource


@dataclass(frozen=True)
class InstanceCompute:
    instance_type: str
    instance_count: int = 1


@dataclass(frozen=True)
class ServerlessCompute:
    memory_size_mb: int
    max_concurrency: int


Compute = InstanceCompute | ServerlessCompute


@dataclass(frozen=True)
class EndpointSettings:
    compute: Compute
    name: str | None = None
    region: str | None = None
    execution_role_arn: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSettings:
    repository: str | None = None
    mode: Literal["s3", "baked"] = "s3"


# The built-in smoke test: the original post's example, which any extractive QA model can answer
# with a span of the text.
DEFAULT_SMOKE_QUESTION = "Where do I live?"
DEFAULT_SMOKE_TEXT = "My name is Alex, I am 32 and live in Copenhagen."
MAX_SMOKE_TEXT = 10_000
MAX_SMOKE_TIMEOUT_S = 60  # SageMaker's own limit for a real-time invocation


@dataclass(frozen=True)
class SmokeTest:
    """The question the operator asks the endpoint before calling it Ready. `enabled` None means
    the operator's default (QA_OPERATOR_SMOKE_TEST)."""

    enabled: bool | None = None
    question: str = DEFAULT_SMOKE_QUESTION
    text: str = DEFAULT_SMOKE_TEXT
    expect_answer: str | None = None
    timeout_seconds: int = 30


@dataclass(frozen=True)
class DeploymentSpec:
    source: ModelSource
    inference: InferenceConfig
    endpoint: EndpointSettings
    image: ImageSettings = ImageSettings()
    deletion_policy: Literal["Delete", "Retain"] = "Delete"
    smoke_test: SmokeTest = SmokeTest()


def parse_spec(raw: Mapping[str, Any]) -> DeploymentSpec:
    model = _mapping(raw.get("model"), "model", required=True)
    endpoint = _mapping(raw.get("endpoint"), "endpoint", required=True)
    image = _mapping(raw.get("image"), "image")
    policy = raw.get("deletionPolicy", "Delete")
    if policy not in ("Delete", "Retain"):
        raise SpecError("deletionPolicy", f"must be Delete or Retain, not {policy!r}")
    return DeploymentSpec(
        source=_parse_source(model),
        inference=_parse_inference(_mapping(model.get("inference"), "model.inference")),
        endpoint=_parse_endpoint(endpoint),
        image=_parse_image(image),
        deletion_policy=policy,
        smoke_test=_parse_smoke_test(_mapping(raw.get("smokeTest"), "smokeTest")),
    )


def _parse_source(model: Mapping[str, Any]) -> ModelSource:
    given = [key for key in ("huggingface", "s3", "mlflow") if model.get(key) is not None]
    if len(given) != 1:
        found = ", ".join(given) or "none"
        raise SpecError(
            "model", f"exactly one of huggingface, s3, mlflow must be set (found {found})"
        )
    kind = given[0]
    body = _mapping(model[kind], f"model.{kind}", required=True)
    if kind == "huggingface":
        model_id = _string(body, "id", "model.huggingface.id", required=True)
        revision = _string(body, "revision", "model.huggingface.revision") or "main"
        return HuggingFaceSource(model_id=model_id, revision=revision)
    if kind == "s3":
        uri = _string(body, "uri", "model.s3.uri", required=True)
        if not S3_URI.match(uri):
            raise SpecError("model.s3.uri", f"must look like s3://bucket/prefix/, not {uri!r}")
        return S3Source(uri=uri)
    model_uri = _string(body, "modelUri", "model.mlflow.modelUri", required=True)
    tracking_uri = _string(body, "trackingUri", "model.mlflow.trackingUri")
    return MlflowSource(model_uri=model_uri, tracking_uri=tracking_uri or None)


def _parse_inference(raw: Mapping[str, Any]) -> InferenceConfig:
    defaults = InferenceConfig()
    quantize = raw.get("quantize", defaults.quantize)
    if quantize not in ("none", "dynamic-int8"):
        raise SpecError(
            "model.inference.quantize", f"must be none or dynamic-int8, not {quantize!r}"
        )
    engine = raw.get("engine", defaults.engine)
    if engine not in ENGINES:
        raise SpecError("model.inference.engine", f"must be torch or onnxruntime, not {engine!r}")
    config = InferenceConfig(
        max_answer_length=_int(raw, "maxAnswerLength", defaults.max_answer_length, 1, 512),
        max_seq_length=_int(raw, "maxSeqLength", defaults.max_seq_length, 32, 512),
        doc_stride=_int(raw, "docStride", defaults.doc_stride, 0, 511),
        batch_size=_int(raw, "batchSize", defaults.batch_size, 1, 1024),
        quantize=quantize,
        engine=engine,
    )
    if config.doc_stride >= config.max_seq_length:
        raise SpecError("model.inference.docStride", "must be smaller than maxSeqLength")
    try:
        return config.validate()
    except ValueError as exc:
        raise SpecError("model.inference", str(exc)) from exc


def _parse_endpoint(raw: Mapping[str, Any]) -> EndpointSettings:
    name = _string(raw, "name", "endpoint.name") or None
    if name is not None and (len(name) > 63 or not SAGEMAKER_NAME.match(name)):
        raise SpecError(
            "endpoint.name",
            f"{name!r} is not a valid SageMaker name (letters, digits and single hyphens, 1-63)",
        )
    region = _string(raw, "region", "endpoint.region") or None
    if region is not None and not REGION.match(region):
        raise SpecError("endpoint.region", f"{region!r} is not an AWS region name")
    role = _string(raw, "executionRoleArn", "endpoint.executionRoleArn") or None
    if role is not None and not ROLE_ARN.match(role):
        raise SpecError("endpoint.executionRoleArn", f"{role!r} is not an IAM role ARN")
    return EndpointSettings(
        compute=_parse_compute(raw),
        name=name,
        region=region,
        execution_role_arn=role,
        environment=_string_map(raw.get("environment"), "endpoint.environment", ENV_KEY),
        tags=_parse_tags(raw.get("tags")),
    )


def _parse_compute(raw: Mapping[str, Any]) -> Compute:
    serverless = raw.get("serverless")
    instance_type = raw.get("instanceType")
    if serverless is not None and (instance_type is not None or "instanceCount" in raw):
        raise SpecError("endpoint", "set either serverless or instanceType/instanceCount, not both")
    if serverless is not None:
        body = _mapping(serverless, "endpoint.serverless", required=True)
        memory = _int(body, "memorySizeInMB", 2048, 1024, 6144, "endpoint.serverless")
        if memory not in SERVERLESS_MEMORY_SIZES:
            raise SpecError("endpoint.serverless.memorySizeInMB", "must be 1024, 2048, ... or 6144")
        concurrency = _int(body, "maxConcurrency", 5, 1, 200, "endpoint.serverless")
        return ServerlessCompute(memory_size_mb=memory, max_concurrency=concurrency)
    if not isinstance(instance_type, str) or not INSTANCE_TYPE.match(instance_type):
        raise SpecError(
            "endpoint.instanceType",
            f"must be a SageMaker instance type such as ml.m5.xlarge, not {instance_type!r}",
        )
    count = _int(raw, "instanceCount", 1, 1, 100, "endpoint")
    return InstanceCompute(instance_type=instance_type, instance_count=count)


def _parse_tags(raw: Any) -> dict[str, str]:
    tags = _string_map(raw, "endpoint.tags", None)
    for key in tags:
        if key.startswith(RESERVED_TAG_PREFIXES):
            raise SpecError("endpoint.tags", f"tag key {key!r} uses a reserved prefix")
        if not 1 <= len(key) <= 128 or len(tags[key]) > 256:
            raise SpecError("endpoint.tags", f"tag {key!r}: keys 1-128 and values 0-256 characters")
    if len(tags) > 40:
        raise SpecError("endpoint.tags", "at most 40 tags (the operator adds its own)")
    return tags


def _parse_smoke_test(raw: Mapping[str, Any]) -> SmokeTest:
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise SpecError("smokeTest.enabled", "must be true or false")
    question = _string(raw, "question", "smokeTest.question")
    text = _string(raw, "text", "smokeTest.text")
    if bool(question) != bool(text):
        raise SpecError(
            "smokeTest", "set question and text together (or neither: a built-in sample)"
        )
    if len(question) > 1000 or len(text) > MAX_SMOKE_TEXT:
        raise SpecError(
            "smokeTest", f"question at most 1000 and text at most {MAX_SMOKE_TEXT} characters"
        )
    expect = _string(raw, "expectAnswer", "smokeTest.expectAnswer") or None
    timeout = _int(raw, "timeoutSeconds", 30, 1, MAX_SMOKE_TIMEOUT_S, "smokeTest")
    defaults = SmokeTest()
    return SmokeTest(
        enabled=enabled,
        question=question or defaults.question,
        text=text or defaults.text,
        expect_answer=expect,
        timeout_seconds=timeout,
    )


def _parse_image(raw: Mapping[str, Any]) -> ImageSettings:
    mode = raw.get("mode", "s3")
    if mode not in ("s3", "baked"):
        raise SpecError("image.mode", f"must be s3 or baked, not {mode!r}")
    repository = _string(raw, "repository", "image.repository") or None
    return ImageSettings(repository=repository, mode=mode)


def _mapping(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            raise SpecError(path, "is required")
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, "must be an object")
    return value


def _string(raw: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise SpecError(path, "is required")
        return ""
    if not isinstance(value, str):
        raise SpecError(path, "must be a string")
    return value


def _int(
    raw: Mapping[str, Any],
    key: str,
    default: int,
    low: int,
    high: int,
    parent: str = "model.inference",
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{parent}.{key}", "must be an integer")
    if not low <= value <= high:
        raise SpecError(f"{parent}.{key}", f"must be between {low} and {high}, not {value}")
    return value


def _string_map(raw: Any, path: str, key_pattern: re.Pattern[str] | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(path, "must be a map of strings")
    result: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SpecError(path, f"{key!r}: keys and values must be strings")
        if key_pattern is not None and not key_pattern.match(key):
            raise SpecError(path, f"{key!r} is not a valid environment variable name")
        result[key] = value
    return result
