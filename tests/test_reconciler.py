"""The Reconciler against moto's server, without Kubernetes: status is carried between passes
the way kopf carries it (merge the returned patch into the resource's status)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.moto_ext import set_endpoint_status
from qa_operator.aws.clients import AwsClients
from qa_operator.desired import Owner
from qa_operator.images import ImageResolver
from qa_operator.reconciler import Outcome, Reconciler, Resource
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient
from qa_operator.settings import OperatorSettings
from support.e2e import PACKAGE_BUCKET, ROLE_ARN, SERVING_IMAGE
from support.images import Images
from support.reconciler_stack import reconciler_stack

pytestmark = pytest.mark.e2e

# Long enough that Model and EndpointConfig names must shorten the endpoint name they start with.
OWNER = Owner(
    namespace="team-a-question-answering",
    name="squad-deployment-for-support",
    uid="0c4e5a2e-5d6c-4a57-9a0e-1f2f3a4b5c6d",
)
ENDPOINT = "team-a-question-answering-squad-deployment-for-support"


class Harness:
    def __init__(self, reconciler: Reconciler, spec: dict[str, Any]) -> None:
        self.reconciler = reconciler
        self.spec = spec
        self.generation = 1
        self.status: dict[str, Any] = {}
        self.events: list[str] = []
        self.owner = OWNER

    def resource(self) -> Resource:
        return Resource(self.owner, self.generation, self.spec, dict(self.status))

    def apply(self, outcome: Outcome) -> Outcome:
        self.events += [event.reason for event in outcome.events]
        for key, value in outcome.status.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
        return outcome

    def reconcile(self, attempt: int = 0) -> Outcome:
        """One pass past packaging: the passes that find the package still being built (in the
        packaging pool) are waited out, not counted."""
        deadline = time.monotonic() + 120
        while True:
            outcome = self.apply(self.reconciler.reconcile(self.resource(), attempt))
            packaging = any(
                (c["type"], c["status"], c["reason"]) == ("Progressing", "True", "Packaging")
                for c in outcome.status.get("conditions", ())
            )
            if not packaging or time.monotonic() > deadline:
                return outcome
            time.sleep(0.05)

    def converge(self, passes: int = 20) -> Outcome:
        for _ in range(passes):
            outcome = self.reconcile()
            if outcome.requeue_after is None:
                return outcome
        raise AssertionError(f"no convergence: {self.status}")

    def change(self, **spec: Any) -> None:
        self.spec = {**self.spec, **spec}
        self.generation += 1

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)


@pytest.fixture
def harness(
    aws: Any, tiny_qa_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    settings, spec = reconciler_stack(aws, tiny_qa_model_dir, tmp_path, monkeypatch)
    yield Harness(Reconciler(settings, AwsClients(max_attempts=1).client), spec)


def test_first_pass_creates_everything_and_reports_ready(harness: Harness, aws: Any) -> None:
    harness.converge()
    assert harness.status["phase"] == "Ready", harness.status
    assert harness.condition("Ready")["status"] == "True"
    assert harness.events == [
        "UploadedPackage",
        "CreatedModel",
        "CreatedEndpointConfig",
        "CreatingEndpoint",
    ]
    sm = aws.client("sagemaker")
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"


def test_the_first_pass_starts_packaging_and_returns_at_once(harness: Harness, aws: Any) -> None:
    """Packaging runs in its own pool, not in the pass (kopf's worker): the pass says so and
    comes back soon; a later pass takes the package and goes on."""
    outcome = harness.apply(harness.reconciler.reconcile(harness.resource()))
    assert outcome.requeue_after == 0.5
    assert not outcome.transient_error and outcome.events == []
    progressing = harness.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Packaging")
    assert progressing["message"] == "packaging s3 s3://sources/tiny/"
    assert harness.status["phase"] == "Packaging"
    assert (harness.condition("Ready")["status"], harness.condition("Degraded")["status"]) == (
        "False",
        "False",
    )
    assert aws.client("sagemaker").list_models()["Models"] == []

    assert harness.reconciler.packaging_look(10) == 0.5, "never under 0.5 s (poll_min 0.01)"
    settings = dataclasses.replace(harness.reconciler.settings, poll_min_seconds=5)
    looks = Reconciler(settings, AwsClients(max_attempts=1).client).packaging_look
    assert [looks(attempt) for attempt in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]

    harness.converge()
    assert harness.condition("Ready")["status"] == "True"


def test_a_repeated_pass_changes_nothing(harness: Harness, aws: Any) -> None:
    harness.converge()
    before = dict(harness.status)
    outcome = harness.reconcile()
    assert outcome.events == []
    assert {k: v for k, v in harness.status.items() if k != "conditions"} == {
        k: v for k, v in before.items() if k != "conditions"
    }
    assert harness.status["conditions"] == before["conditions"]


def test_lost_status_write_reuses_the_same_names(harness: Harness, aws: Any) -> None:
    harness.reconcile()
    harness.status.clear()  # as if the patch never reached the API server
    harness.converge()
    sm = aws.client("sagemaker")
    assert len(sm.list_models()["Models"]) == 1
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1
    assert len(sm.list_endpoints()["Endpoints"]) == 1


def test_invalid_spec_is_reported_without_touching_aws(harness: Harness, aws: Any) -> None:
    harness.spec = {"model": {}, "endpoint": {"instanceType": "ml.m5.large"}}
    outcome = harness.reconcile()
    assert outcome.requeue_after is None
    assert harness.condition("Ready")["reason"] == "InvalidSpec"
    assert "exactly one of huggingface, s3, mlflow" in harness.condition("Degraded")["message"]
    assert aws.client("sagemaker").list_endpoints()["Endpoints"] == []


def test_endpoint_name_taken_by_someone_else_is_a_conflict(harness: Harness, aws: Any) -> None:
    sm = aws.client("sagemaker")
    sm.create_model(ModelName="other", ExecutionRoleArn=ROLE_ARN, PrimaryContainer={"Image": "x"})
    sm.create_endpoint_config(
        EndpointConfigName="other",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "other",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="other")
    harness.converge()
    assert harness.condition("Degraded")["reason"] == "EndpointNameConflict"
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == "other"


def test_finalize_deletes_owned_resources_only(harness: Harness, aws: Any) -> None:
    harness.converge()
    sm = aws.client("sagemaker")
    sm.create_model(
        ModelName=f"{ENDPOINT[:40]}-not-ours",
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": "x"},
    )
    for _ in range(10):
        outcome = harness.reconciler.finalize(harness.resource())
        if outcome.done:
            break
    assert outcome.done
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == [f"{ENDPOINT[:40]}-not-ours"]
    assert aws.client("s3").list_objects_v2(Bucket=PACKAGE_BUCKET).get("Contents", []) == []


def test_unreachable_registry_is_retried_with_a_clear_condition(harness: Harness) -> None:
    harness.reconciler = _with_registry(harness, "http://127.0.0.1:9", "127.0.0.1:9/base:1")
    outcome = harness.reconcile()
    assert outcome.requeue_after is not None
    progressing = harness.condition("Progressing")
    assert progressing["reason"] == "RegistryUnreachable"
    assert "127.0.0.1:9" in progressing["message"]


def test_bad_registry_credentials_are_reported_without_a_hot_loop(
    harness: Harness, oci_registry_with_auth: Any
) -> None:
    registry = oci_registry_with_auth
    harness.reconciler = _with_registry(harness, registry.url, f"{registry.host}/base:1")
    outcome = harness.reconcile()
    assert outcome.requeue_after is None
    degraded = harness.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "RegistryUnauthorized")
    assert harness.status["phase"] == "Failed"


def _with_registry(harness: Harness, endpoint: str, base: str) -> Reconciler:
    settings = dataclasses.replace(
        harness.reconciler.settings,
        serving_image=base,
        image_repository="qa-serving",
        registry_endpoint=endpoint,
    )
    return Reconciler(settings, AwsClients(max_attempts=1).client)


def test_a_new_config_deletes_the_superseded_one_once_in_service(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    old_config = harness.status["endpointConfigName"]
    harness.change(endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    harness.converge()
    sm = aws.client("sagemaker")
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [harness.status["endpointConfigName"]]
    assert old_config not in configs
    assert "DeletedSuperseded" in harness.events


def test_a_streak_of_transient_errors_posts_one_warning(harness: Harness, aws: Any) -> None:
    harness.converge()
    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle")
    try:
        outcomes = [harness.reconcile() for _ in range(3)]
    finally:
        aws.clear_faults()
    outcomes.append(harness.reconcile())

    assert [o.transient_error for o in outcomes] == [True, True, True, False]
    throttled = [r for r in harness.events if r.startswith("AwsThrottl")]
    assert len(throttled) == 1, harness.events
    assert harness.condition("Progressing")["status"] == "False"

    # Trouble that starts again after a clean pass is a new streak.
    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle")
    try:
        harness.reconcile()
    finally:
        aws.clear_faults()
    assert len([r for r in harness.events if r.startswith("AwsThrottl")]) == 2


def _cleanup_lookups(aws: Any) -> tuple[int, int, int]:
    return (
        aws.calls("sagemaker", "ListModels"),
        aws.calls("sagemaker", "ListEndpointConfigs"),
        aws.calls("s3", "ListObjectsV2"),
    )


def test_superseded_resources_are_looked_for_once_per_change_not_on_every_resync(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    first_config = harness.status["endpointConfigName"]
    assert harness.status["supersededDeletedFor"] == first_config
    before = _cleanup_lookups(aws)

    harness.reconcile()
    harness.reconcile()

    assert _cleanup_lookups(aws) == before
    assert harness.status["phase"] == "Ready"

    harness.change(endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    harness.converge()

    new_config = harness.status["endpointConfigName"]
    assert harness.status["supersededDeletedFor"] == new_config != first_config
    assert all(after > was for after, was in zip(_cleanup_lookups(aws), before, strict=True))
    sm = aws.client("sagemaker")
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [new_config]


def test_reverting_after_a_rolled_back_update_deletes_the_failed_config(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    working = harness.status["endpointConfigName"]
    aws.fail_next_endpoint_update(ENDPOINT, "The primary container failed ping health checks")
    harness.change(endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    harness.converge()
    assert harness.status["phase"] == "Degraded", harness.status
    assert harness.condition("Degraded")["reason"] == "UpdateRolledBack"
    failed = harness.status["endpointConfigName"]
    assert "supersededDeletedFor" not in harness.status

    harness.change(endpoint={"instanceType": "ml.m5.large"})
    harness.converge()

    assert harness.status["phase"] == "Ready", harness.status
    assert harness.status["endpointConfigName"] == working
    sm = aws.client("sagemaker")
    configs = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert configs == [working]
    assert failed not in configs


def test_a_serving_image_given_by_ecr_tag_is_pinned_by_digest(harness: Harness, aws: Any) -> None:
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="qa-serving")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 2,
                "digest": "sha256:" + "1" * 64,
            },
            "layers": [],
        }
    )
    pushed = ecr.put_image(repositoryName="qa-serving", imageManifest=manifest, imageTag="1.0")
    digest = pushed["image"]["imageId"]["imageDigest"]
    tagged = "123456789012.dkr.ecr.us-east-1.amazonaws.com/qa-serving:1.0"
    harness.reconciler = Reconciler(
        dataclasses.replace(harness.reconciler.settings, serving_image=tagged),
        AwsClients(max_attempts=1).client,
    )
    harness.converge()
    expected = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/qa-serving@{digest}"
    assert harness.status["image"] == {**harness.status["image"], "uri": expected, "digest": digest}
    model = aws.client("sagemaker").describe_model(ModelName=harness.status["modelName"])
    assert model["PrimaryContainer"]["Image"] == expected


def test_an_onnxruntime_package_runs_on_the_torchless_serving_image(
    harness: Harness, aws: Any
) -> None:
    torchless = "123456789012.dkr.ecr.us-east-1.amazonaws.com/qa-serving@sha256:" + "7" * 64
    harness.reconciler = Reconciler(
        dataclasses.replace(harness.reconciler.settings, serving_image_onnxruntime=torchless),
        AwsClients(max_attempts=1).client,
    )
    sm = aws.client("sagemaker")

    def served_on(engine: str) -> str:
        model = harness.spec["model"]
        harness.change(model={**model, "inference": {**model["inference"], "engine": engine}})
        harness.converge()
        assert harness.status["phase"] == "Ready", harness.status
        described = sm.describe_model(ModelName=harness.status["modelName"])
        return str(described["PrimaryContainer"]["Image"])

    assert served_on("onnxruntime") == torchless
    assert served_on("torch") == SERVING_IMAGE  # the torch-less image cannot run a torch package


def test_a_missing_ecr_serving_image_is_reported(harness: Harness) -> None:
    missing = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nowhere:1.0"
    harness.reconciler = Reconciler(
        dataclasses.replace(harness.reconciler.settings, serving_image=missing),
        AwsClients(max_attempts=1).client,
    )
    outcome = harness.reconcile()
    assert outcome.requeue_after is None
    assert harness.condition("Degraded")["reason"] == "ServingImageNotFound"
    assert "nowhere:1.0" in harness.condition("Degraded")["message"]


def test_tag_changes_reach_the_endpoint_its_config_and_model_and_leave_other_tools_tags(
    harness: Harness, aws: Any
) -> None:
    harness.spec = {
        **harness.spec,
        "endpoint": {"instanceType": "ml.m5.large", "tags": {"team": "qa", "cost": "1"}},
    }
    harness.converge()
    sm = aws.client("sagemaker")
    arn = harness.status["endpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "billing:owner", "Value": "finance"}])
    config = harness.status["endpointConfigName"]

    harness.change(endpoint={"instanceType": "ml.m5.large", "tags": {"team": "search"}})
    harness.converge()
    tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["team"] == "search"
    assert "cost" not in tags
    assert tags["billing:owner"] == "finance"
    assert tags["qaoperator.io/uid"] == OWNER.uid
    assert harness.status["endpointConfigName"] == config, "tags alone must not replace the config"
    assert "UpdatedTags" in harness.events
    for served in (
        sm.describe_endpoint_config(EndpointConfigName=config)["EndpointConfigArn"],
        sm.describe_model(ModelName=harness.status["modelName"])["ModelArn"],
    ):
        served_tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=served)["Tags"]}
        assert served_tags["team"] == "search"
        assert "cost" not in served_tags
        assert served_tags["qaoperator.io/uid"] == OWNER.uid


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param({"name": "chosen-name"}, id="name-set"),
        pytest.param({"region": "eu-west-1"}, id="region-set"),
    ],
)
def test_a_changed_endpoint_identity_creates_nothing_and_delete_removes_the_recorded_one(
    harness: Harness, aws: Any, identity: dict[str, str]
) -> None:
    harness.converge()
    recorded = {k: harness.status[k] for k in ("endpointName", "region", "endpointArn")}
    calls = {op: aws.calls("sagemaker", op) for op in ("CreateModel", "CreateEndpoint")}
    events = len(harness.events)

    harness.change(endpoint={"instanceType": "ml.m5.large", **identity})
    outcome = harness.converge()

    assert outcome.requeue_after is None, "terminal: no retry loop"
    degraded = harness.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "EndpointIdentityChanged")
    assert ENDPOINT in degraded["message"] and "us-east-1" in degraded["message"]
    assert identity.get("name", identity.get("region", "")) in degraded["message"]
    assert harness.condition("Ready")["status"] == "False"
    assert harness.status["phase"] == "Failed"
    assert {k: harness.status[k] for k in recorded} == recorded, "status keeps the recorded one"
    assert {op: aws.calls("sagemaker", op) for op in calls} == calls
    assert harness.events[events:] == []
    sm = aws.client("sagemaker")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == [ENDPOINT]

    for _ in range(10):
        if harness.reconciler.finalize(harness.resource()).done:
            break
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []


@pytest.mark.parametrize(
    ("kind", "tags"),
    [
        pytest.param("Model", [], id="untagged-model"),
        pytest.param(
            "EndpointConfig",
            [
                {"Key": "qaoperator.io/uid", "Value": "another-uid"},
                {"Key": "qaoperator.io/managed-by", "Value": "qa-operator"},
            ],
            id="config-of-another-owner",
        ),
    ],
)
def test_an_existing_model_or_config_not_tagged_as_ours_is_a_conflict_never_reused(
    harness: Harness, aws: Any, kind: str, tags: list[dict[str, str]]
) -> None:
    harness.converge()
    model, config = harness.status["modelName"], harness.status["endpointConfigName"]
    sm = aws.client("sagemaker")
    sm.delete_endpoint(EndpointName=ENDPOINT)
    sm.delete_endpoint_config(EndpointConfigName=config)
    sm.delete_model(ModelName=model)
    # Someone else's resource under the names this resource would use.
    sm.create_model(
        ModelName=model if kind == "Model" else "someone-elses",
        ExecutionRoleArn=ROLE_ARN,
        PrimaryContainer={"Image": "x"},
        **({"Tags": tags} if tags else {}),
    )
    if kind == "EndpointConfig":
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "v",
                    "ModelName": "someone-elses",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
            Tags=tags,
        )
    events = len(harness.events)

    outcome = harness.converge()

    assert outcome.requeue_after is None
    degraded = harness.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", f"{kind}NameConflict")
    assert (model if kind == "Model" else config) in degraded["message"]
    assert sm.list_endpoints()["Endpoints"] == [], "nothing serves from someone else's resource"
    assert "CreatingEndpoint" not in harness.events[events:]


def test_a_terminal_failure_posts_one_warning_per_generation(harness: Harness) -> None:
    harness.reconciler = Reconciler(
        dataclasses.replace(harness.reconciler.settings, serving_image=None),
        AwsClients(max_attempts=1).client,
    )
    for _ in range(3):  # the first pass and two resyncs
        harness.reconcile()
    assert harness.condition("Degraded")["reason"] == "NoServingImage"
    assert harness.events.count("NoServingImage") == 1, harness.events

    harness.change(endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2})
    harness.reconcile()
    harness.reconcile()
    assert harness.events.count("NoServingImage") == 2, "a new spec that fails again posts again"


def test_an_unexpected_exception_is_reported_as_internal_error_and_retried_with_backoff(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    ready_since = harness.condition("Ready")["lastTransitionTime"]
    settings = dataclasses.replace(
        harness.reconciler.settings,
        serving_image="registry.local/qa-serving@md5:0123",  # only sha256 digests parse
        image_repository="qa-serving",
        poll_min_seconds=2,
        poll_max_seconds=60,
    )
    harness.reconciler = Reconciler(settings, AwsClients(max_attempts=1).client, jitter=lambda: 0.5)
    harness.change(endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2})

    delays = []
    for attempt in range(3):
        outcome = harness.apply(harness.reconciler.reconcile(harness.resource(), attempt=attempt))
        assert outcome.transient_error
        assert outcome.requeue_after is not None
        delays.append(outcome.requeue_after)

    assert delays == sorted(delays) and delays[0] < delays[-1], "a growing delay, no hot loop"
    degraded = harness.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InternalError")
    assert degraded["message"].startswith("ValueError: "), degraded
    assert "md5:0123" in degraded["message"]
    assert len(degraded["message"]) <= 300
    progressing = harness.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "InternalError")
    ready = harness.condition("Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", ready_since)
    assert harness.status["observedGeneration"] == 2
    assert harness.events.count("InternalError") == 1, "one warning per streak"


def test_after_starting_work_the_endpoint_is_looked_at_again_at_once_then_with_backoff(
    harness: Harness, aws: Any
) -> None:
    settings = dataclasses.replace(
        harness.reconciler.settings, poll_min_seconds=5, poll_max_seconds=60
    )
    harness.reconciler = Reconciler(settings, AwsClients(max_attempts=1).client, jitter=lambda: 0.5)
    aws.set_endpoint_lifecycle(creating_describes=3)

    created = harness.reconcile(attempt=0)
    assert "CreatingEndpoint" in harness.events
    assert created.requeue_after is not None and created.requeue_after <= 0.2, created

    waiting = harness.reconcile(attempt=1)
    assert harness.status["endpointStatus"] == "Creating"
    assert waiting.requeue_after is not None and waiting.requeue_after >= 5, waiting


def test_an_endpoint_sagemaker_finishes_at_once_is_ready_on_the_next_look(
    harness: Harness, aws: Any
) -> None:
    settings = dataclasses.replace(
        harness.reconciler.settings, poll_min_seconds=5, poll_max_seconds=60
    )
    harness.reconciler = Reconciler(settings, AwsClients(max_attempts=1).client)

    first = harness.reconcile()
    assert first.requeue_after is not None and first.requeue_after <= 0.2
    second = harness.reconcile()
    assert second.requeue_after is None
    assert harness.condition("Ready")["status"] == "True"


def test_system_updating_keeps_ready_with_progressing(harness: Harness, aws: Any) -> None:
    harness.converge()
    ready_since = harness.condition("Ready")["lastTransitionTime"]
    set_endpoint_status(ENDPOINT, "SystemUpdating")

    outcome = harness.reconcile()

    assert outcome.requeue_after is not None, "polled until SageMaker is done"
    assert harness.status["endpointStatus"] == "SystemUpdating"
    assert harness.status["phase"] == "Ready"
    ready, progressing = harness.condition("Ready"), harness.condition("Progressing")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", ready_since)
    assert (progressing["status"], progressing["reason"]) == ("True", "EndpointSystemUpdating")
    assert harness.condition("Degraded")["status"] == "False"
    assert outcome.events == [], "nothing is changed while SageMaker works"

    set_endpoint_status(ENDPOINT, "InService")
    harness.converge()
    assert harness.condition("Progressing")["status"] == "False"
    assert harness.condition("Ready")["lastTransitionTime"] == ready_since


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("UpdateRollbackFailed", "EndpointUpdateRollbackFailed"),
        ("OutOfService", "EndpointOutOfService"),
    ],
)
def test_an_endpoint_sagemaker_cannot_recover_is_degraded_not_waited_on(
    harness: Harness, aws: Any, status: str, reason: str
) -> None:
    harness.converge()
    set_endpoint_status(ENDPOINT, status, "Instance capacity unavailable in us-east-1a")

    outcome = harness.reconcile()

    assert outcome.requeue_after is None, "settled: the resync looks again, no polling loop"
    degraded = harness.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", reason)
    assert "Instance capacity unavailable" in degraded["message"]
    assert harness.condition("Ready")["status"] == "False"
    assert harness.status["phase"] == "Failed"
    assert harness.status["failureReason"] == "Instance capacity unavailable in us-east-1a"


def test_a_tag_removed_in_the_same_change_as_an_update_leaves_the_endpoint(
    harness: Harness, aws: Any
) -> None:
    harness.spec = {
        **harness.spec,
        "endpoint": {"instanceType": "ml.m5.large", "tags": {"team": "qa", "cost": "1"}},
    }
    harness.converge()
    config = harness.status["endpointConfigName"]
    aws.set_endpoint_lifecycle(updating_describes=2)

    harness.change(
        endpoint={"instanceType": "ml.m5.xlarge", "instanceCount": 2, "tags": {"team": "search"}}
    )
    harness.reconcile()
    assert harness.status["endpointStatus"] == "Updating"
    assert harness.status["appliedTags"] == ["cost", "team"], "not applied yet"
    harness.converge()

    assert harness.status["endpointConfigName"] != config
    sm = aws.client("sagemaker")
    tags = {
        t["Key"]: t["Value"]
        for t in sm.list_tags(ResourceArn=harness.status["endpointArn"])["Tags"]
    }
    assert tags["team"] == "search"
    assert "cost" not in tags
    assert harness.status["appliedTags"] == ["team"]


def test_deletion_reports_each_step_in_status(harness: Harness, aws: Any) -> None:
    harness.converge()
    aws.set_endpoint_lifecycle(deleting_describes=2)

    def finalize() -> Outcome:
        return harness.apply(harness.reconciler.finalize(harness.resource()))

    outcome = finalize()
    assert not outcome.done
    assert harness.status["phase"] == "Deleting"
    progressing = harness.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "DeletingEndpoint")
    assert ENDPOINT in progressing["message"]
    assert harness.condition("Ready")["status"] == "False"

    outcome = finalize()
    assert not outcome.done
    assert harness.condition("Progressing")["reason"] == "EndpointDeleting"

    aws.inject_fault("sagemaker", "ListEndpointConfigs", "throttle")
    try:
        while harness.condition("Progressing")["reason"] == "EndpointDeleting":
            outcome = finalize()
    finally:
        aws.clear_faults()
    assert not outcome.done
    assert harness.status["phase"] == "Deleting"
    progressing = harness.condition("Progressing")
    assert progressing["reason"].startswith("AwsThrottl")
    assert "deleting the endpoint configs, models and packages" in progressing["message"]

    for _ in range(5):
        if (outcome := finalize()).done:
            break
    assert outcome.done
    assert aws.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []


def _package_keys(aws: Any) -> list[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=PACKAGE_BUCKET).get("Contents", [])
    return sorted(obj["Key"] for obj in listed)


def test_two_resources_with_one_source_share_one_package_until_both_are_deleted(
    harness: Harness, aws: Any
) -> None:
    first = harness
    first.converge()
    second = Harness(first.reconciler, first.spec)
    second.owner = Owner(OWNER.namespace, "second", "1d5f6b3f-6e7d-4b68-8b1f-2a3b4c5d6e7f")
    second.converge()

    uri = first.status["modelPackage"]["uri"]
    assert second.status["modelPackage"]["uri"] == uri
    package = uri.removeprefix(f"s3://{PACKAGE_BUCKET}/")
    assert package.startswith("qa-operator/_packages/sha256-")
    refs = package.removesuffix("model.tar.gz") + "refs/"
    assert _package_keys(aws) == sorted(
        [
            package,
            f"{refs}{OWNER.namespace}.{OWNER.name}.{OWNER.uid}",
            f"{refs}{OWNER.namespace}.second.{second.owner.uid}",
        ]
    )
    assert "UploadedPackage" in first.events and "UploadedPackage" not in second.events

    _finalize(first)
    assert _package_keys(aws) == [package, f"{refs}{OWNER.namespace}.second.{second.owner.uid}"]
    _finalize(second)
    assert _package_keys(aws) == []


def test_the_reference_of_a_deleted_resource_does_not_keep_a_package_another_one_reuploads(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    uri = harness.status["modelPackage"]["uri"]
    _finalize(harness)
    assert _package_keys(aws) == []

    again = Harness(harness.reconciler, harness.spec)
    again.owner = Owner(OWNER.namespace, OWNER.name, "2e6a7c4a-7f8e-4c79-9c2a-3b4c5d6e7f80")
    again.converge()
    # The packager's disk cache still has it: the object is made to exist again after the ref.
    assert again.status["modelPackage"]["uri"] == uri
    assert uri.removeprefix(f"s3://{PACKAGE_BUCKET}/") in _package_keys(aws)


def test_a_package_recorded_under_the_owner_prefix_before_sharing_is_still_deleted(
    harness: Harness, aws: Any
) -> None:
    """A resource from before shared packages keeps its recorded per-owner key (nothing is
    re-uploaded or rolled out for it); its new package, after a change, is the shared one, and
    the old object goes once the endpoint serves the new one, the rest on delete."""
    harness.converge()
    shared = harness.status["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    digest_dir = shared.split("/")[-2]
    legacy = f"qa-operator/{OWNER.namespace}/{OWNER.name}-{OWNER.uid}/{digest_dir}/model.tar.gz"
    s3 = aws.client("s3")
    s3.copy_object(
        Bucket=PACKAGE_BUCKET, Key=legacy, CopySource={"Bucket": PACKAGE_BUCKET, "Key": shared}
    )
    s3.delete_objects(
        Bucket=PACKAGE_BUCKET,
        Delete={"Objects": [{"Key": k} for k in _package_keys(aws) if k != legacy]},
    )
    harness.status["modelPackage"]["uri"] = f"s3://{PACKAGE_BUCKET}/{legacy}"
    harness.converge()
    assert harness.status["modelPackage"]["uri"] == f"s3://{PACKAGE_BUCKET}/{legacy}"
    assert _package_keys(aws) == [legacy]

    inference = {"maxSeqLength": 96, "docStride": 32}
    harness.change(model={**harness.spec["model"], "inference": inference})
    harness.converge()
    now = harness.status["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    assert now.startswith("qa-operator/_packages/")
    assert legacy not in _package_keys(aws)
    assert now in _package_keys(aws)

    _finalize(harness)
    assert _package_keys(aws) == []


def _finalize(harness: Harness) -> Outcome:
    for _ in range(10):
        outcome = harness.apply(harness.reconciler.finalize(harness.resource()))
        if outcome.done:
            return outcome
    raise AssertionError(f"finalize never finished: {harness.status}")


def test_delete_removes_packages_where_they_were_recorded_not_where_settings_now_say(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    uri = harness.status["modelPackage"]["uri"]
    assert uri.startswith(f"s3://{PACKAGE_BUCKET}/qa-operator/")
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="elsewhere")
    harness.reconciler = Reconciler(
        dataclasses.replace(harness.reconciler.settings, bucket="elsewhere", bucket_prefix="new"),
        AwsClients(max_attempts=1).client,
    )

    _finalize(harness)

    assert s3.list_objects_v2(Bucket=PACKAGE_BUCKET).get("Contents", []) == []


def test_delete_aborts_unfinished_uploads_under_the_resource_prefix_only(
    harness: Harness, aws: Any
) -> None:
    harness.converge()
    own = harness.status["modelPackage"]["uri"].removeprefix(f"s3://{PACKAGE_BUCKET}/")
    s3 = aws.client("s3")
    s3.create_multipart_upload(Bucket=PACKAGE_BUCKET, Key=own.replace("model.tar", "next.tar"))
    other = f"qa-operator/{OWNER.namespace}/someone-else/sha256-00/model.tar.gz"
    s3.create_multipart_upload(Bucket=PACKAGE_BUCKET, Key=other)

    _finalize(harness)

    uploads = s3.list_multipart_uploads(Bucket=PACKAGE_BUCKET).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [other]


def test_baked_images_this_resource_pushed_are_deleted_on_supersede_and_delete(
    harness: Harness, aws: Any, oci_registry: Any
) -> None:
    registry = RegistryClient(oci_registry.url)
    base = Images().push_base(registry, "serving-base", "1.0", media_type=DOCKER_MANIFEST)
    harness.reconciler = _with_registry(
        harness, oci_registry.url, f"{oci_registry.host}/serving-base:1.0"
    )
    harness.change(image={"mode": "baked"})
    harness.converge()
    first = harness.status["image"]
    assert (first["repository"], first["pushed"]) == ("qa-serving", True)
    assert first["tag"].startswith("pkg-")
    assert registry.manifest_digest("qa-serving", first["digest"]) is not None

    harness.change(
        model={**harness.spec["model"], "inference": {"maxSeqLength": 96, "docStride": 32}}
    )
    harness.converge()
    second = harness.status["image"]
    assert second["digest"] != first["digest"]
    assert registry.manifest_digest("qa-serving", first["digest"]) is None
    assert registry.manifest_digest("qa-serving", first["tag"]) is None
    assert registry.manifest_digest("qa-serving", second["digest"]) is not None
    assert "supersededImages" not in harness.status

    _finalize(harness)

    assert registry.manifest_digest("qa-serving", second["digest"]) is None
    assert registry.manifest_digest("serving-base", "1.0") == base.image_digest


def test_the_shared_s3_mode_serving_image_is_never_deleted(
    harness: Harness, aws: Any, oci_registry: Any
) -> None:
    registry = RegistryClient(oci_registry.url)
    base = Images().push_base(registry, "serving-base", "1.0", media_type=DOCKER_MANIFEST)
    harness.reconciler = _with_registry(
        harness, oci_registry.url, f"{oci_registry.host}/serving-base:1.0"
    )
    harness.converge()
    assert harness.status["image"]["digest"] == base.image_digest
    assert harness.status["image"]["pushed"] is False

    _finalize(harness)

    assert registry.manifest_digest("qa-serving", base.image_digest) == base.image_digest


def test_without_a_registry_endpoint_images_are_deleted_through_ecr(aws: Any) -> None:
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName="qa-baked")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": "sha256:" + "2" * 64,
                "size": 2,
            },
            "layers": [],
        }
    )
    pushed = ecr.put_image(repositoryName="qa-baked", imageManifest=manifest, imageTag="pkg-1")
    digest = pushed["image"]["imageId"]["imageDigest"]
    images = ImageResolver(
        OperatorSettings(default_region="us-east-1"),
        lambda region: aws.client("ecr"),
    )

    assert images.delete("us-east-1", "qa-baked", digest) is True

    assert ecr.describe_images(repositoryName="qa-baked")["imageDetails"] == []
    assert images.delete("us-east-1", "qa-baked", digest) is False
    assert images.delete("us-east-1", "no-such-repository", digest) is False


def test_a_pass_given_a_body_older_than_the_last_write_does_not_clean_up_again(
    harness: Harness, aws: Any
) -> None:
    """kopf's handlers for one resource can be queued together (a resync, a change handler's
    retry): the second runs on a body read before the first's status write landed. Planned from
    that body it ran the superseded clean-up again (N=500 in bench/scale.py)."""
    import kopf

    from qa_operator import handlers
    from qa_operator.statuspatch import OwnWrites, as_written

    # kopf's decorators type these as its callbacks, whose keyword arguments are all required.
    resync: Any = handlers.resync
    reconcile: Any = handlers.reconcile
    harness.reconcile()  # creates; SageMaker (moto) is InService at once
    before_ready: Any = {
        "apiVersion": "serving.qaoperator.io/v1alpha1",
        "kind": "QAModelDeployment",
        "metadata": {
            "namespace": OWNER.namespace,
            "name": OWNER.name,
            "uid": OWNER.uid,
            "generation": harness.generation,
        },
        "spec": harness.spec,
        "status": dict(harness.status),
    }
    workers = ThreadPoolExecutor(1)
    memo = kopf.Memo(reconciler=harness.reconciler, own_writes=OwnWrites(), workers=workers)
    lookups = _cleanup_lookups(aws)

    first = kopf.Patch()
    resync(body=kopf.Body(before_ready), patch=first, memo=memo)
    assert first["status"]["phase"] == "Ready"
    assert first["status"]["supersededDeletedFor"] == harness.status["endpointConfigName"]
    cleaned = _cleanup_lookups(aws)
    assert all(after > was for after, was in zip(cleaned, lookups, strict=True))

    # The change handler's retry, with the body it was queued with: the first patch not in it.
    second = kopf.Patch()
    asyncio.run(reconcile(body=kopf.Body(before_ready), patch=second, retry=1, memo=memo))
    workers.shutdown()
    assert _cleanup_lookups(aws) == cleaned, "the clean-up ran twice"
    # Its patch is still computed against the body it got, so nothing the first wrote is lost.
    assert second["status"]["phase"] == "Ready"

    # Landed as the API server lands them: a merge patch, where a null removes the key.
    landed_status = as_written(before_ready["status"], [first["status"], second["status"]])
    landed: Any = {**before_ready, "status": landed_status}
    quiet = kopf.Patch()
    resync(body=kopf.Body(landed), patch=quiet, memo=memo)
    assert _cleanup_lookups(aws) == cleaned
    assert not quiet.get("status"), "a resync of the settled resource writes nothing"


def test_a_pass_before_a_schedule_boundary_asks_to_be_woken_there(
    harness: Harness, aws: Any
) -> None:
    import datetime as dt

    clock = [dt.datetime(2026, 11, 30, 18, 59, 40, tzinfo=dt.UTC)]  # a Monday, 20 s to 19:00
    settings = dataclasses.replace(harness.reconciler.settings, resync_seconds=60)
    harness.reconciler = Reconciler(
        settings, AwsClients(max_attempts=1).client, now=lambda: clock[0]
    )
    harness.change(schedule={"timezone": "UTC", "awake": ["Mon-Fri 08:00-19:00"]})
    settled = harness.converge()
    assert harness.status["phase"] == "Ready"
    assert settled.requeue_after is None  # settled: only the boundary brings it back early
    assert settled.wake_after == 20.5

    # Woken at the boundary: the same pass that would have run a resync later suspends now.
    clock[0] += dt.timedelta(seconds=settled.wake_after)
    harness.converge()
    assert harness.status["phase"] == "Suspended"
    with pytest.raises(aws.client("sagemaker").exceptions.ClientError):
        aws.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)

    # Asleep until Tuesday 08:00: more than a resync away, so the timer's interval does.
    assert harness.reconcile().wake_after is None
    clock[0] = dt.datetime(2026, 12, 1, 7, 59, 30, tzinfo=dt.UTC)
    assert harness.reconcile().wake_after == 30.5
    # spec.suspend wins over the schedule: no boundary changes anything.
    harness.change(suspend=True)
    assert harness.reconcile().wake_after is None
