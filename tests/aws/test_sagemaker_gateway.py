"""The SageMaker adapter against moto: idempotent verbs, ownership, not-found as a value."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.aws.clients import AwsClients
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
