"""preflight.py: each check's verdict from the facts, one row per branch, and the trust policy."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import quote

import pytest

from qa_operator.preflight import (
    Check,
    Facts,
    Record,
    Result,
    Unreadable,
    failure_message,
    first_failure,
    judge,
    role_for_simulation,
    trusts_sagemaker,
)

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"
TRUST: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
GOOD = Facts(
    role_arn=ROLE,
    role={"Arn": ROLE, "AssumeRolePolicyDocument": TRUST},
    may_pass_role=True,
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/qa@sha256:" + "a" * 64,
    image_found=True,
    package_url="s3://pkg/ns/x/model.tar.gz",
    package_size=1234,
    instance_type="ml.m5.large",
    instance_count=2,
    quota=4.0,
)
DENIED = Unreadable("servicequotas:ListServiceQuotas: AccessDeniedException")


def results(facts: Facts) -> dict[str, Result]:
    return {c.name: c.result for c in judge(facts)}


def test_everything_there_passes() -> None:
    assert set(results(GOOD).values()) == {Result.PASSED}
    assert first_failure(judge(GOOD)) is None


ROWS = [
    ("no role", {"role": None}, "ExecutionRole", Result.FAILED),
    ("role not trusting SageMaker", {"role": {"AssumeRolePolicyDocument": {"Statement": []}}},
     "ExecutionRoleTrust", Result.FAILED),
    ("role unreadable: skipped", {"role": Unreadable("iam:GetRole: AccessDenied")},
     "ExecutionRole", Result.SKIPPED),
    ("may not pass the role", {"may_pass_role": False}, "PassRole", Result.FAILED),
    ("pass role unanswerable: skipped", {"may_pass_role": DENIED}, "PassRole", Result.SKIPPED),
    ("image missing", {"image_found": False}, "Image", Result.FAILED),
    ("image not in ECR: skipped", {"image_found": None}, "Image", Result.SKIPPED),
    ("package missing", {"package_size": None}, "Package", Result.FAILED),
    ("baked image, no package: skipped", {"package_url": None, "package_size": None}, "Package",
     Result.SKIPPED),
    ("package unreadable: skipped", {"package_size": DENIED}, "Package", Result.SKIPPED),
    ("instance type not offered", {"quota": None}, "InstanceQuota", Result.FAILED),
    ("quota below the count", {"quota": 1.0}, "InstanceQuota", Result.FAILED),
    ("quota exactly the count", {"quota": 2.0}, "InstanceQuota", Result.PASSED),
    ("quotas unreadable: skipped politely", {"quota": DENIED}, "InstanceQuota", Result.SKIPPED),
    ("serverless: no instance quota", {"instance_type": None, "quota": None}, "InstanceQuota",
     Result.SKIPPED),
]  # fmt: skip


@pytest.mark.parametrize(("name", "change", "check", "result"), ROWS, ids=[r[0] for r in ROWS])
def test_one_fact_changed(name: str, change: dict[str, object], check: str, result: Result) -> None:
    checks = judge(dataclasses.replace(GOOD, **change))  # type: ignore[arg-type]
    assert {c.name: c.result for c in checks}[check] is result
    failure = first_failure(checks)
    if result is Result.FAILED:
        assert failure is not None and failure.name == check
        assert check in failure_message(failure) and "nothing was created" in failure_message(
            failure
        )
    else:
        assert failure is None


@pytest.mark.parametrize(
    ("document", "trusted"),
    [
        (TRUST, True),
        (json.dumps(TRUST), True),
        (quote(json.dumps(TRUST)), True),  # GetRole returns it URL-encoded
        ({"Statement": {**TRUST["Statement"][0], "Effect": "Deny"}}, False),
        (
            {
                "Statement": [
                    {**TRUST["Statement"][0], "Principal": {"Service": "ec2.amazonaws.com"}}
                ]
            },
            False,
        ),
        ({"Statement": [{**TRUST["Statement"][0], "Action": ["sts:TagSession"]}]}, False),
        (
            {
                "Statement": [
                    {
                        **TRUST["Statement"][0],
                        "Principal": {"Service": ["ec2.amazonaws.com", "sagemaker.amazonaws.com"]},
                    }
                ]
            },
            True,
        ),
        ("not json", False),
        (None, False),
    ],
)
def test_trust_policy(document: object, trusted: bool) -> None:
    assert trusts_sagemaker(document) is trusted


@pytest.mark.parametrize(
    ("caller", "source"),
    [
        ("arn:aws:sts::123456789012:assumed-role/qa-operator/botocore-session-1",
         "arn:aws:iam::123456789012:role/qa-operator"),
        ("arn:aws:iam::123456789012:user/alex", "arn:aws:iam::123456789012:user/alex"),
        ("arn:aws-cn:sts::123456789012:assumed-role/r/s", "arn:aws-cn:iam::123456789012:role/r"),
    ],
)  # fmt: skip
def test_role_for_simulation(caller: str, source: str) -> None:
    assert role_for_simulation(caller) == source


def test_record_round_trips_and_covers_one_generation_and_config() -> None:
    record = Record(3, "cfg-a", (Check("Image", Result.FAILED, "missing"),))
    restored = Record.from_status(record.to_status())
    assert restored == record
    assert record.to_status()["passed"] is False
    assert record.covers(3, "cfg-a")
    assert not record.covers(4, "cfg-a") and not record.covers(3, "cfg-b")
    assert Record.from_status({"generation": 1}) is None
