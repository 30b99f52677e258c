"""boto3 clients, built once per region with botocore's standard retry mode.

Endpoints and credentials come from the standard chain (environment, IRSA web identity in a
cluster, AWS_ENDPOINT_URL for a local stand-in); nothing here overrides them.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from qa_operator.aws.call_metrics import instrument

# SageMaker ends a real-time invocation after 60 s; a little more lets its own error arrive.
INVOKE_READ_TIMEOUT_S = 70


class AwsClients:
    def __init__(
        self, *, max_attempts: int = 5, connect_timeout: float = 10, read_timeout: float = 60
    ):
        self._config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # An invocation is never retried by the SDK: a slow or failing endpoint would hold a
        # worker for attempts x timeout. The smoke test retries on its own, with backoff.
        self._invoke_config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=connect_timeout,
            read_timeout=INVOKE_READ_TIMEOUT_S,
        )
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._session = boto3.session.Session()

    def client(self, service: str, region: str) -> Any:
        """A client with the operator's own credentials."""
        key = (service, region)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self.build(self._session, service, region)
            return self._clients[key]

    def build(self, session: boto3.session.Session, service: str, region: str) -> Any:
        """A new client of `session` (another identity's, aws/roles.py) with our settings."""
        make_client: Any = session.client  # typed per service name; ours vary
        config = self._invoke_config if service == "sagemaker-runtime" else self._config
        client = make_client(service, region_name=region, config=config)
        return instrument(client)  # metrics.py: AWS calls by outcome
