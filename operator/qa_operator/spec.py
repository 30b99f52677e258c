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
from qa_operator.schedule import Schedule, parse_schedule
from qa_operator.timeouts import Timeouts, parse_timeouts

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,1023}$")
RESERVED_TAG_PREFIXES = ("aws:", "qaoperator.io/")
SERVERLESS_MEMORY_SIZES = (1024, 2048, 3072, 4096, 5120, 6144)
SNS_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$")
KMS_KEY = re.compile(r"^[\w:/=+.@-]{1,2048}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{1,24}$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{1,24}$")


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
    provisioned_concurrency: int | None = None  # warm capacity, at most max_concurrency


Compute = InstanceCompute | ServerlessCompute


@dataclass(frozen=True)
class AsyncInference:
    """Asynchronous inference: requests are queued, answers written to S3."""

    output_s3_uri: str
    failure_s3_uri: str | None = None
    max_concurrent_invocations_per_instance: int | None = None
    sns_success_topic: str | None = None
    sns_error_topic: str | None = None


@dataclass(frozen=True)
class DataCapture:
    """Requests and/or answers written to S3 for audits."""

    destination_s3_uri: str
    sampling_percent: int = 100
    capture_request: bool = True
    capture_response: bool = True
    kms_key_id: str | None = None


@dataclass(frozen=True)
class Vpc:
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]


@dataclass(frozen=True)
class Autoscaling:
    """Application Auto Scaling of the variant's instance count, target tracking on
    SageMakerVariantInvocationsPerInstance; `instanceCount` is then only the initial count."""

    min_instances: int
    max_instances: int
    target_invocations_per_instance: int
    scale_in_cooldown_seconds: int = 300
    scale_out_cooldown_seconds: int = 60


DeploymentStrategy = Literal["AllAtOnce", "Canary", "Linear", "Rolling"]
ALARM_NAME = re.compile(r"^[^\x00-\x1f]{1,255}$")


@dataclass(frozen=True)
class Deployment:
    """How UpdateEndpoint shifts traffic to a new config (its DeploymentConfig). `step_percent` is
    the canary's size, the linear step or the rolling batch, as a percentage of capacity."""

    strategy: DeploymentStrategy
    step_percent: int | None = None
    wait_seconds: int = 0
    rollback_batch_percent: int | None = None  # Rolling only
    termination_wait_seconds: int | None = None
    rollback_alarms: tuple[str, ...] = ()


# Percent ranges of the DeploymentConfig's CAPACITY_PERCENT sizes, per strategy's block.
STEP_PERCENT = {"canary": ("percent", 1, 50), "linear": ("stepPercent", 10, 50),
                "rolling": ("batchPercent", 5, 50)}  # fmt: skip


@dataclass(frozen=True)
class EndpointSettings:
    compute: Compute
    name: str | None = None
    region: str | None = None
    execution_role_arn: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    async_inference: AsyncInference | None = None
    data_capture: DataCapture | None = None
    vpc: Vpc | None = None
    kms_key_id: str | None = None
    enable_network_isolation: bool = False
    autoscaling: Autoscaling | None = None
    deployment: Deployment | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)


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
    suspend: bool = False  # hibernate: no endpoint, its config and model kept (suspend.py)
    adoption: Literal["Never", "Adopt", "AdoptOrCreate"] = "Never"  # adoption.py
    schedule: Schedule | None = None  # suspended outside its awake windows (schedule.py)
    refresh: Literal["Never", "OnResync"] = "Never"  # spec.model.refresh (freshness.py)
    # What the source holds now (freshness.py), set by the reconciler; part of the source key.
    source_version: str | None = None
    # The IAM role an S3 source is read as (aws_identity.py), set by the reconciler; part of the
    # source key, so a package read with one role is never handed to a resource of another.
    source_reader: str | None = None


def parse_spec(raw: Mapping[str, Any]) -> DeploymentSpec:
    model = _mapping(raw.get("model"), "model", required=True)
    endpoint = _mapping(raw.get("endpoint"), "endpoint", required=True)
    image = _mapping(raw.get("image"), "image")
    policy = raw.get("deletionPolicy", "Delete")
    if policy not in ("Delete", "Retain"):
        raise SpecError("deletionPolicy", f"must be Delete or Retain, not {policy!r}")
    parsed = DeploymentSpec(
        source=_parse_source(model),
        inference=_parse_inference(_mapping(model.get("inference"), "model.inference")),
        endpoint=_parse_endpoint(endpoint),
        image=_parse_image(image),
        deletion_policy=policy,
        smoke_test=_parse_smoke_test(_mapping(raw.get("smokeTest"), "smokeTest")),
        suspend=_parse_suspend(raw.get("suspend", False)),
        adoption=_parse_adoption(_mapping(raw.get("adoption"), "adoption")),
        schedule=_parse_schedule(raw.get("schedule")),
        refresh=_parse_refresh(model.get("refresh", "Never")),
    )
    if parsed.endpoint.async_inference is not None and parsed.smoke_test.enabled is not False:
        raise SpecError(
            "smokeTest.enabled",
            "must be false with endpoint.async: the smoke test asks synchronously "
            "(InvokeEndpoint), an asynchronous endpoint answers through S3",
        )
    return parsed


def _parse_refresh(raw: Any) -> Literal["Never", "OnResync"]:
    if raw not in ("Never", "OnResync"):
        raise SpecError("model.refresh", f"must be Never or OnResync, not {raw!r}")
    return raw


def _parse_schedule(raw: Any) -> Schedule | None:
    body = _mapping(raw, "schedule")
    try:
        return parse_schedule(body)
    except ValueError as exc:
        field_path, message = exc.args
        raise SpecError(field_path, message) from exc


def _parse_adoption(raw: Mapping[str, Any]) -> Literal["Never", "Adopt", "AdoptOrCreate"]:
    policy = raw.get("policy", "Never")
    if policy not in ("Never", "Adopt", "AdoptOrCreate"):
        raise SpecError("adoption.policy", f"must be Never, Adopt or AdoptOrCreate, not {policy!r}")
    return policy


def _parse_suspend(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise SpecError("suspend", "must be true or false")
    return raw


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
    compute = _parse_compute(raw)
    isolation = raw.get("enableNetworkIsolation", False)
    if not isinstance(isolation, bool):
        raise SpecError("endpoint.enableNetworkIsolation", "must be true or false")
    kms_key_id = _string(raw, "kmsKeyId", "endpoint.kmsKeyId") or None
    if kms_key_id is not None and not KMS_KEY.match(kms_key_id):
        raise SpecError("endpoint.kmsKeyId", f"{kms_key_id!r} is not a KMS key id, ARN or alias")
    settings = EndpointSettings(
        compute=compute,
        name=name,
        region=region,
        execution_role_arn=role,
        environment=_string_map(raw.get("environment"), "endpoint.environment", ENV_KEY),
        tags=_parse_tags(raw.get("tags")),
        async_inference=_parse_async(raw.get("async")),
        data_capture=_parse_data_capture(raw.get("dataCapture")),
        vpc=_parse_vpc(raw.get("vpc")),
        kms_key_id=kms_key_id,
        enable_network_isolation=isolation,
        autoscaling=_parse_autoscaling(raw.get("autoscaling"), compute),
        deployment=_parse_deployment(raw.get("deployment"), compute),
        timeouts=_parse_timeouts(raw.get("timeouts")),
    )
    if isinstance(compute, ServerlessCompute):
        refused = [
            key
            for key, value in (
                ("async", settings.async_inference),
                ("dataCapture", settings.data_capture),
                ("vpc", settings.vpc),
                ("enableNetworkIsolation", isolation or None),
            )
            if value is not None
        ]
        if refused:
            raise SpecError(
                "endpoint.serverless",
                f"SageMaker's serverless endpoints do not support {', '.join(refused)}",
            )
    return settings


def _parse_autoscaling(raw: Any, compute: Compute) -> Autoscaling | None:
    if raw is None:
        return None
    path = "endpoint.autoscaling"
    if isinstance(compute, ServerlessCompute):
        raise SpecError(path, "needs instances: serverless endpoints scale by themselves")
    body = _mapping(raw, path, required=True)
    for key in ("minInstances", "maxInstances", "targetInvocationsPerInstance"):
        if key not in body:
            raise SpecError(f"{path}.{key}", "is required")
    low = _int(body, "minInstances", 1, 1, 100, path)
    high = _int(body, "maxInstances", 1, 1, 100, path)
    if low > high:
        raise SpecError(f"{path}.maxInstances", "must not be below minInstances")
    if not low <= compute.instance_count <= high:
        raise SpecError(
            "endpoint.instanceCount", "the initial count must lie within the autoscaling range"
        )
    return Autoscaling(
        min_instances=low,
        max_instances=high,
        target_invocations_per_instance=_int(
            body, "targetInvocationsPerInstance", 1, 1, 1_000_000, path
        ),
        scale_in_cooldown_seconds=_int(body, "scaleInCooldownSeconds", 300, 0, 86_400, path),
        scale_out_cooldown_seconds=_int(body, "scaleOutCooldownSeconds", 60, 0, 86_400, path),
    )


def _parse_deployment(raw: Any, compute: Compute) -> Deployment | None:
    if raw is None:
        return None
    path = "endpoint.deployment"
    body = _mapping(raw, path, required=True)
    strategy = body.get("strategy")
    if strategy not in ("AllAtOnce", "Canary", "Linear", "Rolling"):
        raise SpecError(f"{path}.strategy", "must be AllAtOnce, Canary, Linear or Rolling")
    block = strategy.lower()
    for other in STEP_PERCENT:
        if other != block and body.get(other) is not None:
            raise SpecError(f"{path}.{other}", f"applies only to strategy {other.capitalize()}")
    if strategy == "Rolling" and isinstance(compute, ServerlessCompute):
        raise SpecError(
            f"{path}.strategy", "Rolling needs instances (SageMaker refuses it for serverless)"
        )
    step = rollback = None
    wait = 0
    if block in STEP_PERCENT:
        settings = _mapping(body.get(block), f"{path}.{block}", required=True)
        key, low, high = STEP_PERCENT[block]
        if key not in settings:
            raise SpecError(f"{path}.{block}.{key}", "is required")
        step = _int(settings, key, low, low, high, f"{path}.{block}")
        wait = _int(settings, "waitSeconds", 0, 0, 3600, f"{path}.{block}")
        if block == "rolling" and settings.get("rollbackBatchPercent") is not None:
            rollback = _int(settings, "rollbackBatchPercent", 100, 1, 100, f"{path}.rolling")
    termination = body.get("terminationWaitSeconds")
    if termination is not None:
        if strategy == "Rolling":
            raise SpecError(f"{path}.terminationWaitSeconds", "applies to blue/green strategies")
        termination = _int(body, "terminationWaitSeconds", 0, 0, 3600, path)
    alarms = body.get("rollbackAlarms") or []
    if not isinstance(alarms, list) or len(alarms) > 10:
        raise SpecError(f"{path}.rollbackAlarms", "must list at most 10 CloudWatch alarm names")
    for alarm in alarms:
        if not isinstance(alarm, str) or not ALARM_NAME.match(alarm):
            raise SpecError(f"{path}.rollbackAlarms", f"{alarm!r} is not a CloudWatch alarm name")
    return Deployment(
        strategy=strategy,
        step_percent=step,
        wait_seconds=wait,
        rollback_batch_percent=rollback,
        termination_wait_seconds=termination,
        rollback_alarms=tuple(alarms),
    )


def _parse_async(raw: Any) -> AsyncInference | None:
    if raw is None:
        return None
    body = _mapping(raw, "endpoint.async", required=True)
    output = _s3_uri(body, "outputS3Uri", "endpoint.async.outputS3Uri", required=True)
    failure = _s3_uri(body, "failureS3Uri", "endpoint.async.failureS3Uri") or None
    concurrency = body.get("maxConcurrentInvocationsPerInstance")
    if concurrency is not None:
        concurrency = _int(
            body, "maxConcurrentInvocationsPerInstance", 1, 1, 1000, "endpoint.async"
        )
    topics = {}
    for key in ("snsSuccessTopic", "snsErrorTopic"):
        topic = _string(body, key, f"endpoint.async.{key}") or None
        if topic is not None and not SNS_TOPIC_ARN.match(topic):
            raise SpecError(f"endpoint.async.{key}", f"{topic!r} is not an SNS topic ARN")
        topics[key] = topic
    return AsyncInference(
        output_s3_uri=output,
        failure_s3_uri=failure,
        max_concurrent_invocations_per_instance=concurrency,
        sns_success_topic=topics["snsSuccessTopic"],
        sns_error_topic=topics["snsErrorTopic"],
    )


def _parse_data_capture(raw: Any) -> DataCapture | None:
    if raw is None:
        return None
    body = _mapping(raw, "endpoint.dataCapture", required=True)
    path = "endpoint.dataCapture"
    destination = _s3_uri(body, "destinationS3Uri", f"{path}.destinationS3Uri", required=True)
    flags = {}
    for key in ("captureRequest", "captureResponse"):
        value = body.get(key, True)
        if not isinstance(value, bool):
            raise SpecError(f"{path}.{key}", "must be true or false")
        flags[key] = value
    if not any(flags.values()):
        raise SpecError(path, "capture the request, the response or both")
    kms_key_id = _string(body, "kmsKeyId", f"{path}.kmsKeyId") or None
    if kms_key_id is not None and not KMS_KEY.match(kms_key_id):
        raise SpecError(f"{path}.kmsKeyId", f"{kms_key_id!r} is not a KMS key id, ARN or alias")
    return DataCapture(
        destination_s3_uri=destination,
        sampling_percent=_int(body, "samplingPercent", 100, 0, 100, path),
        capture_request=flags["captureRequest"],
        capture_response=flags["captureResponse"],
        kms_key_id=kms_key_id,
    )


def _parse_vpc(raw: Any) -> Vpc | None:
    if raw is None:
        return None
    body = _mapping(raw, "endpoint.vpc", required=True)
    subnets = _string_list(body, "subnets", "endpoint.vpc.subnets", SUBNET_ID, 16)
    groups = _string_list(
        body, "securityGroups", "endpoint.vpc.securityGroups", SECURITY_GROUP_ID, 5
    )
    return Vpc(subnets=subnets, security_groups=groups)


def _string_list(
    raw: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str], most: int
) -> tuple[str, ...]:
    values = raw.get(key)
    if not isinstance(values, list) or not 1 <= len(values) <= most:
        raise SpecError(path, f"must list 1 to {most} ids")
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise SpecError(path, f"{value!r} does not look like {pattern.pattern}")
    if len(set(values)) != len(values):
        raise SpecError(path, "lists an id twice")
    return tuple(values)


def _s3_uri(raw: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str:
    uri = _string(raw, key, path, required=required)
    if uri and not S3_URI.match(uri):
        raise SpecError(path, f"must look like s3://bucket/prefix, not {uri!r}")
    return uri


def _parse_timeouts(raw: Any) -> Timeouts:
    body = _mapping(raw, "endpoint.timeouts")
    try:
        return parse_timeouts(body)
    except ValueError as exc:
        field_path, message = exc.args
        raise SpecError(field_path, message) from exc


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
        provisioned = body.get("provisionedConcurrency")
        if provisioned is not None:
            provisioned = _int(body, "provisionedConcurrency", 1, 1, 200, "endpoint.serverless")
            if provisioned > concurrency:
                raise SpecError(
                    "endpoint.serverless.provisionedConcurrency", "must not exceed maxConcurrency"
                )
        return ServerlessCompute(
            memory_size_mb=memory, max_concurrency=concurrency, provisioned_concurrency=provisioned
        )
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
