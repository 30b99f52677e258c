"""moto's server, extended, on a free loopback port in a background thread of this process."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from . import sagemaker, servicequotas
from .controls import CONTROLS
from .faults import FaultInjector
from .runtime import EndpointRuntime, InvocationProxy


def client_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """What a process (the operator, a user's shell) needs to reach the server the standard way."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


def client(endpoint_url: str, region: str, service: str, *, max_attempts: int | None = None) -> Any:
    """A boto3 client for the server; `max_attempts` (the first try included) caps botocore's
    standard retries, None keeps its default."""
    retries: Any = {"mode": "standard"}
    if max_attempts is not None:
        retries["total_max_attempts"] = max_attempts
    session: Any = boto3.session.Session()  # any service name, not the stubs' literals
    return session.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries=retries),
    )


class ExtendedMotoServer:
    """Threaded moto server with the SageMaker patches installed, the fault injector in front and
    InvokeEndpoint going to the endpoints' containers while a runtime is installed.

    `runtime`, when given, is installed at start (endpoints run their containers) and its
    containers stop with the server. Request lines (werkzeug), injected faults and the runtime's
    events (moto_ext) are written to `log_path`.
    """

    def __init__(
        self, log_path: Path, host: str = "127.0.0.1", runtime: EndpointRuntime | None = None
    ) -> None:
        self.host = host
        self.log_path = log_path
        self.runtime = runtime
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._handler: logging.Handler | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.server_address[1])

    def start(self) -> None:
        # Read at IAM backend creation; real accounts have AWS managed policies.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        sagemaker.install()
        servicequotas.install()
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        for name in ("werkzeug", "moto_ext"):
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        if self.runtime is not None:
            CONTROLS.set_runtime(self.runtime)
        moto_app = DomainDispatcherApplication(create_backend_app)
        app = FaultInjector(
            InvocationProxy(moto_app, sagemaker.serving_endpoint, sagemaker.async_inference_config),
            CONTROLS,
        )
        self._server = make_server(
            self.host, 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="moto-server", daemon=True
        )
        self._thread.start()

    def reset_extensions(self) -> None:
        CONTROLS.reset()
        sagemaker.reset()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        CONTROLS.set_runtime(None)  # whichever is installed stops its containers
        if self.runtime is not None:
            self.runtime.stop_all()
        if self._handler is not None:
            for name in ("werkzeug", "moto_ext"):
                logging.getLogger(name).removeHandler(self._handler)
            self._handler.close()
