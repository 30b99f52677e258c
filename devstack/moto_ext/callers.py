"""Who made each request: the call log's caller, as CloudTrail's `userIdentity` records it.

A request signed with the temporary keys of an STS AssumeRole session is made as that role
(CloudTrail: `type: AssumedRole`, `sessionContext.sessionIssuer.arn` the role's ARN,
`arn` `arn:aws:sts::<account>:assumed-role/<role name>/<session name>`). moto's STS backend
keeps every session it issued with its access key id, so the key in the request's SigV4
`Credential=` scope names the role and session. Any other key (the test stack's long-term
`testing` keys) is the base identity: `Caller(None, None)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from moto.sts.models import sts_backends

_ACCESS_KEY = re.compile(r"Credential=([^/]+)/")


@dataclass(frozen=True)
class Caller:
    role_arn: str | None  # the assumed role (sessionIssuer.arn); None: long-term credentials
    session_name: str | None

    @property
    def arn(self) -> str | None:
        """CloudTrail's userIdentity.arn for an assumed-role session."""
        if self.role_arn is None:
            return None
        account = self.role_arn.split(":")[4]
        role_name = self.role_arn.rsplit("/", 1)[-1]
        return f"arn:aws:sts::{account}:assumed-role/{role_name}/{self.session_name}"


BASE = Caller(None, None)


def access_key_of(environ: dict[str, Any]) -> str | None:
    match = _ACCESS_KEY.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


def caller_of(environ: dict[str, Any]) -> Caller:
    key = access_key_of(environ)
    if key is None:
        return BASE
    for account in list(sts_backends.values()):
        for backend in list(account.values()):
            session = backend.get_assumed_role_from_access_key(key)
            if session is not None:
                return Caller(session.role_arn, session.session_name)
    return BASE
