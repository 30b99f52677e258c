"""Clients that act as an assumed IAM role: one STS AssumeRole per (role, namespace), its
credentials refreshed by botocore before they expire, and the clients built on them cached.

botocore's RefreshableCredentials (the same object its own assume-role provider uses) fetches new
credentials once fewer than 15 minutes are left (10: every caller waits for them), so a client is
built once per role, namespace, service and region and never sees expired keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.credentials import RefreshableCredentials

from qa_operator.aws.errors import aws_call
from qa_operator.aws_identity import session_name

SESSION_SECONDS = 3600  # AssumeRole's default; every role allows at least this much

StsClient = Callable[[], Any]


class AssumedRoles:
    """`client(role_arn, namespace, service, region)` for the reconciler; `make_client` builds a
    client from a boto3 session (AwsClients.build: its retry config and call metrics)."""

    def __init__(
        self,
        sts_client: StsClient,
        make_client: Callable[[Any, str, str], Any],
        *,
        session_seconds: int = SESSION_SECONDS,
    ) -> None:
        self._sts_client = sts_client
        self._session_seconds = session_seconds
        self._make_client = make_client
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], boto3.session.Session] = {}
        self._clients: dict[tuple[str, str, str, str], Any] = {}

    def client(self, role_arn: str, namespace: str, service: str, region: str) -> Any:
        key = (role_arn, namespace, service, region)
        with self._lock:
            found = self._clients.get(key)
        if found is not None:
            return found
        session = self._session(role_arn, namespace)
        with self._lock:
            return self._clients.setdefault(key, self._make_client(session, service, region))

    def _session(self, role_arn: str, namespace: str) -> boto3.session.Session:
        with self._lock:
            found = self._sessions.get((role_arn, namespace))
        if found is not None:
            return found
        name = session_name(namespace)

        def assume() -> dict[str, str]:
            sts = self._sts_client()
            answer = aws_call(
                "AssumeRole",
                lambda: sts.assume_role(
                    RoleArn=role_arn, RoleSessionName=name, DurationSeconds=self._session_seconds
                ),
            )
            credentials = answer["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        # The first AssumeRole happens here, in the pass that needs it: a role the operator may
        # not assume fails that pass (AccessDenied: terminal), not a later one.
        credentials = RefreshableCredentials.create_from_metadata(
            metadata=assume(), refresh_using=assume, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        # botocore has no public setter for refreshable credentials; its own tools set this.
        setattr(core, "_credentials", credentials)  # noqa: B010
        session = boto3.session.Session(botocore_session=core)
        with self._lock:
            return self._sessions.setdefault((role_arn, namespace), session)
