"""Which AWS identity acts for a resource (aws_identity.py) and the policy's identity section."""

from __future__ import annotations

import dataclasses
import re

import pytest

from qa_operator.aws_identity import (
    AWS_IDENTITY_CHANGED,
    FROM_POLICY,
    NO_AWS_IDENTITY,
    OPERATOR_DEFAULT,
    OPERATOR_IDENTITY,
    AwsIdentity,
    IdentityRules,
    identity_for,
    identity_to_act_as,
    identity_to_delete_as,
    session_name,
)
from qa_operator.desired import source_key
from qa_operator.errors import TerminalError
from qa_operator.policy import PolicyError, parse_policy
from qa_operator.spec import parse_spec

ROLE_A = "arn:aws:iam::123456789012:role/qa-team-a"
ROLE_B = "arn:aws:iam::210987654321:role/teams/qa-team-b"
MAPPED = IdentityRules(roles={"team-a": ROLE_A, "team-b": ROLE_B})
STRICT = IdentityRules(roles={"team-a": ROLE_A}, allow_operator_default=False)


@pytest.mark.parametrize(
    ("namespace", "rules", "expected"),
    [
        ("team-a", MAPPED, AwsIdentity(ROLE_A, FROM_POLICY)),
        ("team-b", MAPPED, AwsIdentity(ROLE_B, FROM_POLICY)),
        ("other", MAPPED, OPERATOR_IDENTITY),
        ("team-a", STRICT, AwsIdentity(ROLE_A, FROM_POLICY)),
        ("any", IdentityRules(), OPERATOR_IDENTITY),
    ],
)
def test_the_policy_maps_a_namespace_to_its_identity(
    namespace: str, rules: IdentityRules, expected: AwsIdentity
) -> None:
    assert identity_for(namespace, rules) == expected


def test_an_unmapped_namespace_without_the_default_is_refused_clearly() -> None:
    with pytest.raises(TerminalError) as refused:
        identity_for("team-c", STRICT)
    assert refused.value.reason == NO_AWS_IDENTITY
    assert "namespace team-c" in refused.value.message
    assert "allowOperatorDefault: false" in refused.value.message


@pytest.mark.parametrize(
    ("namespace", "rules", "recorded", "expected"),
    [
        ("team-a", MAPPED, None, AwsIdentity(ROLE_A, FROM_POLICY)),
        ("team-a", MAPPED, AwsIdentity(ROLE_A, FROM_POLICY), AwsIdentity(ROLE_A, FROM_POLICY)),
        ("other", MAPPED, OPERATOR_IDENTITY, OPERATOR_IDENTITY),
        # Another role, or a role where the operator's own made things: they may not be seen.
        ("team-a", MAPPED, AwsIdentity(ROLE_B, FROM_POLICY), AWS_IDENTITY_CHANGED),
        ("team-a", MAPPED, OPERATOR_IDENTITY, AWS_IDENTITY_CHANGED),
        ("other", MAPPED, AwsIdentity(ROLE_A, FROM_POLICY), AWS_IDENTITY_CHANGED),
        ("team-c", STRICT, OPERATOR_IDENTITY, NO_AWS_IDENTITY),
    ],
)
def test_a_pass_acts_as_the_recorded_identity_or_is_blocked(
    namespace: str, rules: IdentityRules, recorded: AwsIdentity | None, expected: object
) -> None:
    if isinstance(expected, AwsIdentity):
        assert identity_to_act_as(namespace, rules, recorded) == expected
        return
    with pytest.raises(TerminalError) as blocked:
        identity_to_act_as(namespace, rules, recorded)
    assert blocked.value.reason == expected


def test_a_changed_identity_names_both_and_no_secret() -> None:
    with pytest.raises(TerminalError) as blocked:
        identity_to_act_as("team-a", MAPPED, AwsIdentity(ROLE_B, FROM_POLICY))
    assert ROLE_A in blocked.value.message and ROLE_B in blocked.value.message


@pytest.mark.parametrize(
    ("rules", "recorded", "made_anything", "expected"),
    [
        # The recorded identity, whatever the policy says now (even when it gives none).
        (None, AwsIdentity(ROLE_B, FROM_POLICY), True, AwsIdentity(ROLE_B, FROM_POLICY)),
        (None, OPERATOR_IDENTITY, True, OPERATOR_IDENTITY),
        # Made before identities were recorded: by the operator.
        (None, None, True, OPERATOR_IDENTITY),
        # Nothing recorded at all: look as the policy's identity, or not at all.
        (MAPPED, None, False, AwsIdentity(ROLE_A, FROM_POLICY)),
        (IdentityRules(allow_operator_default=False), None, False, None),
    ],
)
def test_deletion_acts_as_the_recorded_identity(
    rules: IdentityRules | None,
    recorded: AwsIdentity | None,
    made_anything: bool,
    expected: AwsIdentity | None,
) -> None:
    assert identity_to_delete_as("team-a", rules, recorded, made_anything) == expected


def test_status_records_the_role_and_its_source_and_reads_them_back() -> None:
    identity = AwsIdentity(ROLE_A, FROM_POLICY)
    assert identity.to_status() == {"roleArn": ROLE_A, "source": "Policy"}
    assert AwsIdentity.from_status(identity.to_status()) == identity
    assert OPERATOR_IDENTITY.to_status() == {"roleArn": None, "source": OPERATOR_DEFAULT}
    assert AwsIdentity.from_status(OPERATOR_IDENTITY.to_status()) == OPERATOR_IDENTITY
    assert AwsIdentity.from_status(None) is None
    assert AwsIdentity.from_status({}) is None


STS_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("team-a", "qa-operator@team-a"),
        ("a", "qa-operator@a"),
        ("x" * 52, "qa-operator@" + "x" * 52),  # exactly 64
    ],
)
def test_session_names_name_the_namespace(namespace: str, expected: str) -> None:
    assert session_name(namespace) == expected


def test_long_session_names_fit_sts_and_stay_distinct() -> None:
    first, second = "n" * 62 + "a", "n" * 62 + "b"  # 63: the longest namespace name
    names = {session_name(first), session_name(second)}
    assert len(names) == 2
    for name in names:
        assert STS_SESSION_NAME.match(name), name
        assert len(name) == 64


POLICY = f"""
identity:
  allowOperatorDefault: false
  roles:
    team-a: {ROLE_A}
    team-b: {ROLE_B}
"""


def test_the_policy_file_gives_the_identity_section() -> None:
    policy = parse_policy(POLICY, "policy.yaml")
    assert policy.identity == IdentityRules(
        roles={"team-a": ROLE_A, "team-b": ROLE_B}, allow_operator_default=False
    )
    assert parse_policy("", "policy.yaml").identity == IdentityRules()
    assert parse_policy("s3Sources: []", "policy.yaml").identity.allow_operator_default


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("identity: [a]", "identity: must be a mapping"),
        ("identity: {roleArns: {}}", "identity: unknown key(s) roleArns"),
        ("identity: {allowOperatorDefault: 'no'}", "allowOperatorDefault: must be true or false"),
        ("identity: {roles: [a]}", "identity.roles: must map namespace names"),
        (f"identity: {{roles: {{Team_A: {ROLE_A}}}}}", "'Team_A' is not a namespace name"),
        (
            "identity: {roles: {team-a: 'arn:aws:iam::123:role/x'}}",
            "identity.roles.team-a: 'arn:aws:iam::123:role/x' is not an IAM role ARN",
        ),
        (
            "identity: {roles: {team-a: 'arn:aws:iam::123456789012:user/x'}}",
            "is not an IAM role ARN",
        ),
        ("namespaces: {team-a: {identity: {}}}", "unknown key(s) identity"),
    ],
)
def test_a_malformed_identity_section_is_an_error_naming_where(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "policy.yaml")
    assert error in str(raised.value)


def test_the_role_that_reads_a_source_is_part_of_its_package_key() -> None:
    spec = parse_spec(
        {"model": {"s3": {"uri": "s3://models/qa/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    )
    read_by_a = dataclasses.replace(spec, source_reader=ROLE_A)
    read_by_b = dataclasses.replace(spec, source_reader=ROLE_B)
    assert len({source_key(spec), source_key(read_by_a), source_key(read_by_b)}) == 3
    assert source_key(read_by_a) == source_key(dataclasses.replace(spec, source_reader=ROLE_A))
