"""Pure preflight: is everything SageMaker will need there, before any Create or Update call?

A wrong role, a missing image, a package the role cannot read or an instance type without quota
otherwise shows up only after CreateEndpoint, sometimes an hour later as Failed, while billing.
The adapter (aws/preflight.py) gathers `Facts`; `judge` turns them into one result per check; the
first failure is a terminal `PreflightFailed` naming its check, and nothing is created. A fact the
operator may not read (Service Quotas, iam:SimulatePrincipalPolicy) is Skipped, never a failure.
Results are cached in status.preflight for one (generation, config): resyncs do not ask again.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

SAGEMAKER_PRINCIPAL = "sagemaker.amazonaws.com"


class Unreadable:
    """A fact the operator may not read (access denied, or the API is not offered): the check is
    skipped, with why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return f"Unreadable({self.why!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unreadable) and other.why == self.why

    def __hash__(self) -> int:
        return hash(self.why)


class Result(enum.Enum):
    PASSED = "Passed"
    FAILED = "Failed"
    SKIPPED = "Skipped"


@dataclass(frozen=True)
class Check:
    name: str
    result: Result
    message: str


@dataclass(frozen=True)
class Facts:
    """What the adapter found. None: not there (not found); Unreadable: may not be read."""

    role_arn: str
    role: Mapping[str, Any] | Unreadable | None  # iam:GetRole's Role
    may_pass_role: bool | Unreadable | None  # iam:SimulatePrincipalPolicy for iam:PassRole
    image_uri: str
    image_found: bool | Unreadable | None  # None: not an ECR image, nothing to ask
    package_url: str | None
    package_size: int | Unreadable | None
    instance_type: str | None  # None: serverless, no instance quota
    instance_count: int
    quota: float | Unreadable | None  # "<type> for endpoint usage"; None: not offered here


def judge(facts: Facts) -> tuple[Check, ...]:
    return (
        *_role(facts),
        _pass_role(facts),
        _image(facts),
        _package(facts),
        _quota(facts),
    )


def first_failure(checks: Sequence[Check]) -> Check | None:
    return next((c for c in checks if c.result is Result.FAILED), None)


def _skipped(name: str, fact: Unreadable) -> Check:
    return Check(name, Result.SKIPPED, f"not checked: {fact.why}")


def _role(facts: Facts) -> tuple[Check, Check]:
    role = facts.role
    if isinstance(role, Unreadable):
        return _skipped("ExecutionRole", role), _skipped("ExecutionRoleTrust", role)
    if role is None:
        missing = f"execution role {facts.role_arn} does not exist"
        return (
            Check("ExecutionRole", Result.FAILED, missing),
            Check("ExecutionRoleTrust", Result.SKIPPED, "not checked: no role"),
        )
    exists = Check("ExecutionRole", Result.PASSED, f"role {facts.role_arn} exists")
    if trusts_sagemaker(role.get("AssumeRolePolicyDocument")):
        return exists, Check(
            "ExecutionRoleTrust", Result.PASSED, f"it trusts {SAGEMAKER_PRINCIPAL}"
        )
    return exists, Check(
        "ExecutionRoleTrust",
        Result.FAILED,
        f"execution role {facts.role_arn} does not trust {SAGEMAKER_PRINCIPAL} "
        "(its trust policy has no Allow of sts:AssumeRole for that service principal)",
    )


def trusts_sagemaker(document: Any) -> bool:
    """Whether a trust policy (a dict, or the JSON or URL-encoded JSON GetRole returns) allows
    sagemaker.amazonaws.com to assume the role."""
    if isinstance(document, str):
        try:
            document = json.loads(unquote(document))
        except ValueError:
            return False
    if not isinstance(document, Mapping):
        return False
    statements = document.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    for statement in statements:
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        actions = _as_list(statement.get("Action"))
        if not any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions):
            continue
        principal = statement.get("Principal")
        services = _as_list(principal.get("Service")) if isinstance(principal, Mapping) else []
        if SAGEMAKER_PRINCIPAL in services or principal == "*":
            return True
    return False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _pass_role(facts: Facts) -> Check:
    allowed = facts.may_pass_role
    if isinstance(allowed, Unreadable):
        return _skipped("PassRole", allowed)
    if allowed is None:
        return Check("PassRole", Result.SKIPPED, "not checked: the caller's identity is unknown")
    if allowed:
        return Check("PassRole", Result.PASSED, f"the operator may pass {facts.role_arn}")
    return Check(
        "PassRole",
        Result.FAILED,
        f"the operator's identity may not iam:PassRole {facts.role_arn} (CreateModel would be "
        "denied)",
    )


def _image(facts: Facts) -> Check:
    found = facts.image_found
    if isinstance(found, Unreadable):
        return _skipped("Image", found)
    if found is None:
        return Check("Image", Result.SKIPPED, f"not checked: {facts.image_uri} is not in ECR")
    if found:
        return Check("Image", Result.PASSED, f"image {facts.image_uri} exists")
    return Check("Image", Result.FAILED, f"image {facts.image_uri} does not exist in ECR")


def _package(facts: Facts) -> Check:
    size = facts.package_size
    if facts.package_url is None:
        return Check("Package", Result.SKIPPED, "not checked: the image holds the model")
    if isinstance(size, Unreadable):
        return _skipped("Package", size)
    if size is None:
        return Check("Package", Result.FAILED, f"model package {facts.package_url} does not exist")
    return Check("Package", Result.PASSED, f"model package {facts.package_url} is {size} bytes")


def _quota(facts: Facts) -> Check:
    if facts.instance_type is None:
        return Check("InstanceQuota", Result.SKIPPED, "not checked: serverless endpoint")
    quota = facts.quota
    if isinstance(quota, Unreadable):
        return _skipped("InstanceQuota", quota)
    if quota is None:
        return Check(
            "InstanceQuota",
            Result.FAILED,
            f"instance type {facts.instance_type} is not offered for endpoints in this region "
            "(Service Quotas lists no quota for it)",
        )
    if quota < facts.instance_count:
        return Check(
            "InstanceQuota",
            Result.FAILED,
            f"the account's quota for {facts.instance_type} endpoint instances is {quota:g}, "
            f"fewer than the {facts.instance_count} asked for",
        )
    return Check(
        "InstanceQuota",
        Result.PASSED,
        f"quota for {facts.instance_type}: {quota:g} (asked for {facts.instance_count})",
    )


@dataclass(frozen=True)
class Record:
    """status.preflight: the checks of one (generation, config)."""

    generation: int
    config: str
    checks: tuple[Check, ...]

    def covers(self, generation: int, config: str) -> bool:
        return (self.generation, self.config) == (generation, config)

    @property
    def failure(self) -> Check | None:
        return first_failure(self.checks)

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None) -> Record | None:
        try:
            if not raw:
                return None
            checks = tuple(
                Check(str(c["name"]), Result(c["result"]), str(c.get("message", "")))
                for c in raw["checks"]
            )
            return cls(int(raw["generation"]), str(raw["config"]), checks)
        except (KeyError, TypeError, ValueError):
            return None

    def to_status(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "config": self.config,
            "passed": self.failure is None,
            "checks": [
                {"name": c.name, "result": c.result.value, "message": c.message}
                for c in self.checks
            ],
        }


def failure_message(check: Check) -> str:
    return f"preflight check {check.name} failed: {check.message}; nothing was created"


def role_for_simulation(caller_arn: str) -> str:
    """iam:SimulatePrincipalPolicy takes a user or role ARN: an assumed role's session ARN
    (arn:aws:sts::123:assumed-role/Name/session) becomes its role's."""
    prefix, _, rest = caller_arn.partition(":assumed-role/")
    if not rest:
        return caller_arn
    partition_account = prefix.removeprefix("arn:").split(":sts::")
    if len(partition_account) != 2:
        return caller_arn
    partition, account = partition_account
    return f"arn:{partition}:iam::{account}:role/{rest.rsplit('/', 1)[0]}"
