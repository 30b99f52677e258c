"""Clients that act as an assumed role (aws/roles.py), against moto's STS: each role's calls are
made with its session's keys (the stack's call log names the role), credentials are reused
until near their expiry, and STS trouble fails only the pass that needed the role."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.moto_ext.callers import BASE, Caller
from qa_operator.aws.clients import AwsClients
from qa_operator.aws.roles import AssumedRoles
from qa_operator.errors import RetryableError

pytestmark = pytest.mark.e2e

ROLE_A = "arn:aws:iam::123456789012:role/qa-team-a"
ROLE_B = "arn:aws:iam::123456789012:role/qa-team-b"
REGION = "us-east-1"


@pytest.fixture
def clients(aws: Any, monkeypatch: pytest.MonkeyPatch) -> AwsClients:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return AwsClients(max_attempts=1)


def _roles(clients: AwsClients, **options: Any) -> AssumedRoles:
    return AssumedRoles(lambda: clients.client("sts", REGION), clients.build, **options)


def test_each_role_calls_with_its_own_session(aws: Any, clients: AwsClients) -> None:
    roles = _roles(clients)
    roles.client(ROLE_A, "team-a", "sagemaker", REGION).list_endpoints()
    roles.client(ROLE_B, "team-b", "sagemaker", REGION).list_endpoints()
    roles.client(ROLE_B, "team-b", "sagemaker", REGION).list_models()
    clients.client("sagemaker", REGION).list_endpoints()

    assert aws.callers("sagemaker", "ListEndpoints") == {
        Caller(ROLE_A, "qa-operator@team-a"): 1,
        Caller(ROLE_B, "qa-operator@team-b"): 1,
        BASE: 1,
    }
    assert aws.callers("sagemaker", "ListModels") == {Caller(ROLE_B, "qa-operator@team-b"): 1}
    # AssumeRole itself is made with the operator's own keys.
    assert aws.callers("sts", "AssumeRole") == {BASE: 2}
    identity = roles.client(ROLE_A, "team-a", "sts", REGION).get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::123456789012:assumed-role/qa-team-a/qa-operator@team-a"


def test_credentials_are_reused_until_near_expiry(aws: Any, clients: AwsClients) -> None:
    roles = _roles(clients)  # one-hour sessions: far from expiry
    for service in ("sagemaker", "s3", "sagemaker"):
        client = roles.client(ROLE_A, "team-a", service, REGION)
        client.list_endpoints() if service == "sagemaker" else client.list_buckets()
    assert aws.calls("sts", "AssumeRole") == 1
    assert roles.client(ROLE_A, "team-a", "sagemaker", REGION) is roles.client(
        ROLE_A, "team-a", "sagemaker", REGION
    )

    # STS's shortest session (15 min) is always inside botocore's 15-minute refresh window:
    # every signed request fetches fresh credentials first.
    short = _roles(clients, session_seconds=900)
    client = short.client(ROLE_B, "team-b", "sagemaker", REGION)
    client.list_endpoints()
    client.list_endpoints()
    assert aws.calls("sts", "AssumeRole") == 1 + 3
    assert aws.callers("sagemaker", "ListEndpoints")[Caller(ROLE_B, "qa-operator@team-b")] == 2


def test_sts_trouble_fails_the_pass_that_needs_the_role(aws: Any, clients: AwsClients) -> None:
    aws.inject_fault("sts", "AssumeRole", "5xx")
    roles = _roles(clients)
    with pytest.raises(RetryableError):  # the pass is retried with backoff
        roles.client(ROLE_A, "team-a", "sagemaker", REGION)
    aws.clear_faults()
    roles.client(ROLE_A, "team-a", "sagemaker", REGION).list_endpoints()  # the next pass
    assert aws.callers("sagemaker", "ListEndpoints") == {Caller(ROLE_A, "qa-operator@team-a"): 1}
