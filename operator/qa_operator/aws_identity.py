"""Which AWS identity acts for a resource: a role the admin policy maps its namespace to, or the
operator's own credentials where the policy allows that (pure; the adapter is aws/roles.py).

The identity a resource's AWS things were made under is recorded in `status.awsIdentity` before
the first call, and it stays: a pass whose policy now names another identity is blocked
(`AwsIdentityChanged`), since the new one may not see, and would never delete, what the old one
made; deletion always acts as the recorded identity, whatever the policy says by then.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qa_operator.errors import TerminalError

NO_AWS_IDENTITY = "NoAwsIdentity"
AWS_IDENTITY_CHANGED = "AwsIdentityChanged"
FROM_POLICY = "Policy"
OPERATOR_DEFAULT = "OperatorDefault"

# IAM's role ARN: any partition, a 12-digit account, a path and a name of IAM's characters.
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
# STS RoleSessionName: 2-64 characters of [\w+=,.@-].
SESSION_NAME_MAX = 64
_SESSION_UNSAFE = re.compile(r"[^\w+=,.@-]")
SESSION_PREFIX = "qa-operator@"


@dataclass(frozen=True)
class IdentityRules:
    """The policy's `identity` section."""

    roles: Mapping[str, str] = field(default_factory=dict)  # namespace -> role ARN
    allow_operator_default: bool = True


@dataclass(frozen=True)
class AwsIdentity:
    role_arn: str | None  # None: the operator's own credentials
    source: str  # FROM_POLICY or OPERATOR_DEFAULT

    def to_status(self) -> dict[str, Any]:
        return {"roleArn": self.role_arn, "source": self.source}

    @classmethod
    def from_status(cls, raw: Any) -> AwsIdentity | None:
        if not isinstance(raw, Mapping) or not raw.get("source"):
            return None
        return cls(raw.get("roleArn") or None, str(raw["source"]))

    def describe(self) -> str:
        return f"role {self.role_arn}" if self.role_arn else "the operator's own AWS identity"


OPERATOR_IDENTITY = AwsIdentity(None, OPERATOR_DEFAULT)


def identity_for(namespace: str, rules: IdentityRules) -> AwsIdentity:
    """The identity the policy gives `namespace`; TerminalError NoAwsIdentity when it gives none."""
    role = rules.roles.get(namespace)
    if role is not None:
        return AwsIdentity(role, FROM_POLICY)
    if rules.allow_operator_default:
        return OPERATOR_IDENTITY
    raise TerminalError(
        NO_AWS_IDENTITY,
        f"the operator's policy maps namespace {namespace} to no AWS role (identity.roles) and "
        "does not allow the operator's own identity (identity.allowOperatorDefault: false); "
        "nothing was created",
    )


def identity_to_act_as(
    namespace: str, rules: IdentityRules, recorded: AwsIdentity | None
) -> AwsIdentity:
    """A reconcile pass's identity: the policy's, unless it differs from the recorded one."""
    current = identity_for(namespace, rules)
    if recorded is None or recorded.role_arn == current.role_arn:
        return current
    raise TerminalError(
        AWS_IDENTITY_CHANGED,
        f"this resource's AWS things were made as {recorded.describe()}; the operator's policy "
        f"now gives namespace {namespace} {current.describe()}, which may not see or delete "
        "them. Restore the mapping, or delete the resource (deleted as the recorded identity) "
        "and create it again",
    )


def identity_to_delete_as(
    namespace: str,
    rules: IdentityRules | None,
    recorded: AwsIdentity | None,
    made_anything: bool,
) -> AwsIdentity | None:
    """Deletion's identity: the recorded one, whatever the policy says now. Without a record, a
    resource whose status names what it made made it before identities were recorded, as the
    operator. One that recorded nothing looks with the policy's identity (a status write may have
    been lost), and with none when the policy gives none (None: nothing to delete). `rules` is
    needed only in that last case."""
    if recorded is not None:
        return recorded
    if made_anything:
        return OPERATOR_IDENTITY
    try:
        return identity_for(namespace, rules or IdentityRules())
    except TerminalError:
        return None


def session_name(namespace: str) -> str:
    """STS RoleSessionName for the namespace's sessions (CloudTrail shows it): within STS's 64
    characters and character set; a long name keeps a hash of the whole so two never collide."""
    name = SESSION_PREFIX + _SESSION_UNSAFE.sub("-", namespace)
    if len(name) <= SESSION_NAME_MAX:
        return name
    digest = hashlib.sha256(namespace.encode()).hexdigest()[:10]
    return f"{name[: SESSION_NAME_MAX - 11]}-{digest}"
