"""The SageMaker adapter against moto: idempotent verbs, ownership, not-found as a value."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.moto_ext import set_endpoint_status
from qa_operator.aws.clients import AwsClients
from qa_operator.aws.observation import RegionObservations
from qa_operator.aws.sagemaker import SageMakerGateway
from qa_operator.desired import Artifacts, Owner, desired_state
from qa_operator.errors import RetryableError, TerminalError
from qa_operator.spec import parse_spec

pytestmark = pytest.mark.e2e

OWNER = Owner("team-a", "squad", "uid-1")
STRANGER = Owner("team-b", "squad", "uid-2")
DESIRED = desired_state(
    parse_spec(
        {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    ),
    OWNER,
    Artifacts("sha256:" + "cd" * 32, "registry.local/qa@sha256:" + "ef" * 32, "s3://b/k"),
    execution_role_arn="arn:aws:iam::123456789012:role/qa",
)


@pytest.fixture
def gateway(aws: Any, monkeypatch: pytest.MonkeyPatch) -> SageMakerGateway:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return SageMakerGateway(AwsClients(max_attempts=1).client("sagemaker", "us-east-1"))


def test_missing_resources_are_values_not_errors(gateway: SageMakerGateway) -> None:
    assert gateway.describe_endpoint("nothing-here", OWNER) is None
    assert gateway.model_exists("nothing-here") is False
    assert gateway.endpoint_config_exists("nothing-here") is False
    gateway.delete_endpoint("nothing-here")
    gateway.delete_model("nothing-here")


def test_creating_twice_is_harmless_for_the_owner(gateway: SageMakerGateway, aws: Any) -> None:
    for _ in range(2):
        gateway.create_model(DESIRED.model, OWNER)
        gateway.create_endpoint_config(DESIRED.config, OWNER)
        gateway.create_endpoint(DESIRED.endpoint, OWNER)
    assert aws.calls("sagemaker", "CreateEndpoint") == 2
    endpoint = gateway.describe_endpoint(DESIRED.endpoint.name, OWNER)
    assert endpoint is not None and endpoint.owned
    assert endpoint.config_name == DESIRED.config.name
    assert gateway.owned_models("team-a-squad", OWNER) == [DESIRED.model.name]


def test_a_name_taken_by_another_owner_is_a_conflict(gateway: SageMakerGateway) -> None:
    gateway.create_model(DESIRED.model, OWNER)
    with pytest.raises(TerminalError) as raised:
        gateway.create_model(DESIRED.model, STRANGER)
    assert raised.value.reason == "NameConflict"
    assert gateway.owned_models("team-a-squad", STRANGER) == []


def test_throttling_surfaces_as_retryable(gateway: SageMakerGateway, aws: Any) -> None:
    aws.inject_fault("sagemaker", "DescribeEndpoint", "throttle")
    with pytest.raises(RetryableError) as raised:
        gateway.describe_endpoint("any", OWNER)
    assert raised.value.reason == "AwsThrottlingException"


@pytest.fixture
def client(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return AwsClients(max_attempts=1).client("sagemaker", "us-east-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reads(aws: Any) -> dict[str, int]:
    return {
        op: aws.calls("sagemaker", op) for op in ("DescribeEndpoint", "ListTags", "ListEndpoints")
    }


def test_resyncs_read_the_shared_listing_and_describe_only_what_changed(
    aws: Any, client: Any
) -> None:
    clock = Clock()
    observations = RegionObservations(max_age=5, clock=clock)
    gateway = SageMakerGateway(client, observations)
    gateway.create_model(DESIRED.model, OWNER)
    gateway.create_endpoint_config(DESIRED.config, OWNER)
    gateway.create_endpoint(DESIRED.endpoint, OWNER)
    name = DESIRED.endpoint.name
    described = gateway.observe_endpoint(name, OWNER, changing=True)
    assert described is not None and described.owned and described.status == "InService"

    clock.now += 1  # a snapshot that starts after the create
    before = reads(aws)
    for _ in range(3):
        seen = SageMakerGateway(client, observations).observe_endpoint(name, OWNER, changing=False)
        assert seen == described
    assert reads(aws) == {**before, "ListEndpoints": before["ListEndpoints"] + 1}, (
        "one ListEndpoints for three resyncs, no DescribeEndpoint, no ListTags"
    )
    stranger = gateway.observe_endpoint(name, STRANGER, changing=False)
    assert stranger is not None and not stranger.owned

    set_endpoint_status(name, "OutOfService", "capacity")  # behind the operator's back
    clock.now += 6  # the snapshot expires
    changed = gateway.observe_endpoint(name, OWNER, changing=False)
    assert changed is not None
    assert (changed.status, changed.failure_reason) == ("OutOfService", "capacity")
    assert aws.calls("sagemaker", "DescribeEndpoint") == before["DescribeEndpoint"] + 1
    assert aws.calls("sagemaker", "ListTags") == before["ListTags"], "tags cached by ARN"

    client.delete_endpoint(EndpointName=name)  # out of band; moto's Deleting is instant
    clock.now += 6
    assert gateway.observe_endpoint(name, OWNER, changing=False) is None


def test_an_endpoint_written_after_the_snapshot_is_described(aws: Any, client: Any) -> None:
    gateway = SageMakerGateway(client, RegionObservations(max_age=5, clock=Clock()))
    gateway.create_model(DESIRED.model, OWNER)
    gateway.create_endpoint_config(DESIRED.config, OWNER)
    assert gateway.observe_endpoint(DESIRED.endpoint.name, OWNER, changing=False) is None
    gateway.create_endpoint(DESIRED.endpoint, OWNER)  # the snapshot (not expired) misses it
    found = gateway.observe_endpoint(DESIRED.endpoint.name, OWNER, changing=False)
    assert found is not None and found.owned


def test_tags_written_by_the_operator_are_read_again(aws: Any, client: Any) -> None:
    gateway = SageMakerGateway(client, RegionObservations(max_age=5))
    gateway.create_model(DESIRED.model, OWNER)
    gateway.create_endpoint_config(DESIRED.config, OWNER)
    gateway.create_endpoint(DESIRED.endpoint, OWNER)
    endpoint = gateway.describe_endpoint(DESIRED.endpoint.name, OWNER)
    assert endpoint is not None
    gateway.set_tags(endpoint.arn, {"team": "search"})
    again = gateway.describe_endpoint(DESIRED.endpoint.name, OWNER)
    assert again is not None and again.tags["team"] == "search"


def test_owned_names_are_matched_by_exact_stem_not_substring(aws: Any, client: Any) -> None:
    gateway = SageMakerGateway(client)
    spec = {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    artifacts = Artifacts("sha256:" + "cd" * 32, "registry.local/qa@sha256:" + "ef" * 32, None)
    owners = [Owner("default", name, f"uid-{name}") for name in ("qa-1", "qa-10", "qa-1-x")]
    for owner in owners:
        desired = desired_state(
            parse_spec(spec),
            owner,
            artifacts,
            execution_role_arn="arn:aws:iam::123456789012:role/qa",
        )
        gateway.create_model(desired.model, owner)
        gateway.create_endpoint_config(desired.config, owner)
    qa_1 = owners[0]
    tags_before = aws.calls("sagemaker", "ListTags")
    models = gateway.owned_models("default-qa-1", qa_1)
    configs = gateway.owned_endpoint_configs("default-qa-1", qa_1)
    assert len(models) == len(configs) == 1
    assert models[0].startswith("default-qa-1-") and configs[0].startswith("default-qa-1-")
    assert aws.calls("sagemaker", "ListTags") == tags_before + 2, "only qa-1's own names"
