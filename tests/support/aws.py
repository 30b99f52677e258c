"""pytest plugin: moto's server (extended to real SageMaker behaviour) on loopback.

Code under test reaches it only the standard way: `AWS_ENDPOINT_URL` (or endpoint_url) plus dummy
credentials, from any process. The server runs in the test process, so tests turn its lifecycle
and fault settings directly; see devstack/moto_ext/ and tests/README.md ("AWS (moto)").
The fixture `sagemaker_runtime` makes endpoints run their containers for one test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
import requests

from devstack.containers import ContainerRuntime
from devstack.moto_ext import CONTROLS, EndpointRuntime, ExtendedMotoServer, Fault, Lifecycle
from devstack.moto_ext.callers import Caller
from devstack.moto_ext.controls import Phase
from devstack.moto_ext.server import client, client_environment

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


class MotoServer:
    """Handle on the running server: where it is, clients for it, and its test knobs."""

    def __init__(self, server: ExtendedMotoServer) -> None:
        self._server = server
        self.endpoint_url = f"http://127.0.0.1:{server.port}"
        self.region = REGION
        self.account_id = ACCOUNT_ID
        self.log_path: Path = server.log_path

    def env(self) -> dict[str, str]:
        """Environment for a process (the operator) that should talk to this server."""
        return client_environment(self.endpoint_url, self.region)

    def client(self, service: str, *, max_attempts: int = 1) -> Any:
        """A boto3 client bound to the server.

        `max_attempts` counts the first try: 1 (the default) means no retries, so that injected
        faults reach the test as they are.
        """
        return client(self.endpoint_url, self.region, service, max_attempts=max_attempts)

    def reset(self) -> None:
        """All moto state, lifecycle settings and faults back to defaults; the container runtime
        (if enabled) stops its containers and is disabled."""
        self._server.reset_extensions()
        response = requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30)
        response.raise_for_status()

    def set_endpoint_lifecycle(
        self,
        *,
        creating_describes: int = 0,
        creating_seconds: float = 0.0,
        updating_describes: int = 0,
        deleting_describes: int = 0,
        updating_seconds: float = 0.0,
        deleting_seconds: float = 0.0,
    ) -> None:
        """How long endpoints stay Creating / Updating (and RollingBack) / Deleting.

        A status is left once it has been seen by at least N DescribeEndpoint calls AND at least
        T seconds have passed; all zero (the default) skips the status entirely, as moto does.
        Applies to operations started after the call.
        """
        with CONTROLS.lock:
            CONTROLS.lifecycle = Lifecycle(
                creating=Phase(creating_describes, creating_seconds),
                updating=Phase(updating_describes, updating_seconds),
                deleting=Phase(deleting_describes, deleting_seconds),
            )

    def set_service_quotas(self, service_code: str, quotas: dict[str, float]) -> None:
        """ListServiceQuotas answers these applied values (quota name -> value) for the code;
        a code never set answers NoSuchResourceException (devstack/moto_ext/servicequotas.py)."""
        with CONTROLS.lock:
            CONTROLS.service_quotas[service_code] = dict(quotas)

    def fail_next_endpoint_creation(self, endpoint_name: str, reason: str) -> None:
        """The next CreateEndpoint of this name ends `Failed` with this FailureReason."""
        with CONTROLS.lock:
            CONTROLS.failed_creations[endpoint_name] = reason

    def fail_next_endpoint_update(self, endpoint_name: str, reason: str) -> None:
        """The next UpdateEndpoint of this name rolls back to the old config with this reason."""
        with CONTROLS.lock:
            CONTROLS.failed_updates[endpoint_name] = reason

    def inject_fault(
        self,
        service: str,
        operation: str,
        kind: Literal["throttle", "5xx", "latency"],
        *,
        rate: float = 1.0,
        count: int | None = None,
        latency_s: float = 0.0,
        http_status: int = 500,
    ) -> None:
        """Make `service` (signing name: "sagemaker", "s3", ...) `operation` ("CreateEndpoint",
        or "*" for all) throttle, fail with `http_status` (500 or 503), or wait `latency_s`.

        `rate` hits that fraction of matching requests, deterministically (0.5: every second one);
        `count` stops after that many hits. Faults accumulate until `clear_faults()`.
        """
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        if kind == "5xx" and http_status not in (500, 503):
            raise ValueError(f"http_status must be 500 or 503, got {http_status}")
        CONTROLS.add_fault(
            Fault(
                service=service,
                operation=operation,
                kind=kind,
                rate=rate,
                count=count,
                latency_s=latency_s,
                http_status=http_status,
            )
        )

    def clear_faults(self) -> None:
        CONTROLS.clear_faults()

    def enable_runtime(self, runtime: EndpointRuntime) -> None:
        """From now on, endpoints created or updated run their containers with `runtime` and
        InvokeEndpoint reaches them (devstack/moto_ext/runtime.py); a runtime enabled before
        stops its containers."""
        CONTROLS.set_runtime(runtime)

    def disable_runtime(self) -> None:
        """Stop the runtime's containers; endpoints are moto's again (no container, canned
        InvokeEndpoint answers)."""
        CONTROLS.set_runtime(None)

    @property
    def runtime(self) -> EndpointRuntime | None:
        return CONTROLS.runtime

    def calls(self, service: str, operation: str) -> int:
        """Requests received for this operation since the last reset, faulted ones included."""
        with CONTROLS.lock:
            return CONTROLS.calls[(service, operation)]

    def callers(self, service: str, operation: str | None = None) -> Counter[Caller]:
        """Who made this service's requests (one operation, or all) since the last reset: the
        assumed role and session of each (devstack/moto_ext/callers.py), `BASE` for the
        stack's own long-term keys."""
        found: Counter[Caller] = Counter()
        with CONTROLS.lock:
            for (svc, op, caller), count in CONTROLS.callers.items():
                if svc == service and operation in (None, op):
                    found[caller] += count
        return found


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server for the whole session; log at <basetemp>/moto0/moto.log."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    server = ExtendedMotoServer(log_path)
    server.start()
    try:
        handle = MotoServer(server)
        # Fail loudly, here, if it does not answer a real signed call.
        identity = handle.client("sts").get_caller_identity()
        if identity["Account"] != ACCOUNT_ID:
            raise RuntimeError(f"moto server answered an unexpected identity: {identity}")
        yield handle
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The session's server with all state, lifecycle settings and faults reset for this test."""
    moto_server.reset()
    yield moto_server
    moto_server.clear_faults()


@pytest.fixture
def sagemaker_runtime(
    aws: MotoServer, container_runtime: ContainerRuntime, tmp_path: Path
) -> Iterator[EndpointRuntime]:
    """`aws` with endpoints that run their Model's container (pulled by `container_runtime`, files
    under <tmp_path>/sagemaker-runtime) and InvokeEndpoint reaching them; stopped after the test."""
    runtime = EndpointRuntime(container_runtime, tmp_path / "sagemaker-runtime")
    aws.enable_runtime(runtime)
    try:
        yield runtime
    finally:
        aws.disable_runtime()
        runtime.stop_all()  # also when the test replaced it
