"""SageMaker's hosting runtime for moto: endpoints run their Model's container, and InvokeEndpoint
reaches it. Off unless an `EndpointRuntime` is installed as `CONTROLS.runtime`; without one, moto's
endpoints start no container and InvokeEndpoint answers moto's canned body.

What it follows (SageMaker developer guide "Custom Inference Code with Hosting Services",
your-algorithms-inference-code.html; API reference CreateEndpoint, UpdateEndpoint,
DeleteEndpoint, InvokeEndpoint; the failure texts are the service's own, as users report them):

- CreateEndpoint: the endpoint stays `Creating` while each production variant's container is
  started: the image is pulled (a tag is resolved to a digest first), ModelDataUrl is read from S3
  (moto's S3, in process) and extracted into /opt/ml/model (read-only), the Model's Environment is
  set, and the container runs `serve`. It must answer GET /ping with 200 within the variant's
  ContainerStartupHealthCheckTimeoutInSeconds (else `ping_timeout_s`) and not exit before. Then
  `InService`; otherwise `Failed` with FailureReason (see the `*_failure` functions).
- UpdateEndpoint: the new config's containers start while the old ones serve ("there is no
  availability loss"); on success they take over and the old ones stop, on failure the new ones stop
  and the endpoint rolls back to the old config (sagemaker.py owns the statuses).
- DeleteEndpoint: its containers stop when `Deleting` starts.
- InvokeEndpoint: the body, Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes go to the
  container's POST /invocations; its answer comes back with `x-Amzn-Invoked-Production-Variant`.
  Errors have the service's shapes (botocore's sagemaker-runtime model): `ValidationError` (400)
  for an endpoint that does not exist or does not serve, `ModelError` (424) with
  OriginalStatusCode, OriginalMessage and LogStreamArn when the container answers non-2xx or does
  not answer within `invoke_timeout_s` (SageMaker: 60 s).
- InvokeEndpointAsync (POST /endpoints/<name>/async-invocations, answered 202 at once; API
  reference InvokeEndpointAsync, developer guide "Asynchronous inference"): only for an endpoint
  whose current EndpointConfig has AsyncInferenceConfig (else `ValidationError`, our wording).
  The request's InputLocation (`s3://bucket/key`, required) is read from moto's S3 in a
  background thread and POSTed to the container's /invocations with the request's ContentType,
  Accept and CustomAttributes (X-Amzn-SageMaker-Content-Type, -Accept, -Custom-Attributes); the
  answer is written to `<S3OutputPath>/<InferenceId>.out`, a failure (input not readable,
  container error or timeout: the ModelError message) to `<S3FailurePath>/<InferenceId>-error.out`
  (`S3OutputPath` without S3FailurePath). InferenceId is the request's or a new UUID; the answer
  carries it in its JSON body and X-Amzn-SageMaker-OutputLocation (and
  X-Amzn-SageMaker-FailureLocation when S3FailurePath is set) in its headers.
  InvocationTimeoutSeconds bounds the container's answer (default 900 s as in SageMaker);
  RequestTTLSeconds is accepted and ignored (requests are never queued).
- The container's output goes to a log file (CloudWatch's /aws/sagemaker/Endpoints/<name> in AWS);
  `log_tail(endpoint_name)` gives its end.

Simplifications: one container per production variant, whatever its instance count (serverless
variants too); InvokeEndpoint goes to the first variant (no weights, TargetVariant ignored); only
ModelDataUrl `s3://bucket/key` archives (no ModelDataSource, no uncompressed data); images from
registries reachable anonymously (the local registry); stopping is SIGTERM then SIGKILL after 30 s
as in SageMaker, 5 s on `stop_all()`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import tarfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from moto.iam.models import get_account_id_from
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

from devstack.containers import (
    Container,
    ContainerError,
    ContainerRuntime,
    ImageError,
    UnpackedImage,
    default_registry_url,
    extract_model_archive,
    run_sagemaker_container,
)
from devstack.processes import free_port
from qa_operator.registry.client import RegistryClient, RegistryError, RegistryNotFound
from qa_operator.registry.images import parse_reference

from .controls import CONTROLS

log = logging.getLogger("moto_ext")

LOG_TAIL_CHARS = 2000
FAST_STOP_S = 5.0
_PING_INTERVAL_S = 0.2
_CONTAINER_HOSTNAME = "primary"  # how ModelError messages name a single-container variant
_MODEL_DATA_CONTAINER = "container_1"  # how download failures name it


# -- SageMaker's texts ----------------------------------------------------------------------------


def ping_failure(variant: str) -> str:
    return (
        f"The primary container for production variant {variant} did not pass the ping health "
        "check. Please check CloudWatch logs for this endpoint."
    )


def download_failure(url: str) -> str:
    return (
        f'Failed to download model data for container "{_MODEL_DATA_CONTAINER}" from URL: "{url}". '
        "Please ensure that there is an object located at the URL and that the role passed to "
        "CreateModel has permissions to download the object."
    )


def extract_failure(url: str) -> str:
    return (
        f'Failed to extract model data archive for container "{_MODEL_DATA_CONTAINER}" from URL: '
        f'"{url}". Please ensure that the object located at the URL is a valid tar.gz archive.'
    )


def missing_image_failure(image: str) -> str:
    return f"The image '{image}' does not exist."


def image_access_failure(variant: str) -> str:
    return (
        f"Please make sure all images included in the model for the production variant {variant} "
        "exist, and that the execution role used to create the model has permissions to access "
        "them."
    )


def missing_model_failure(model_arn: str) -> str:
    return f'Could not find model "{model_arn}".'


INTERNAL_FAILURE = (
    "Request to service failed. If failure persists after retry, contact customer support."
)
STOPPED = "The endpoint's containers were stopped before it was in service."


# -- what runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantSpec:
    """One production variant as CreateEndpoint/UpdateEndpoint found it: its Model's container
    definition (PrimaryContainer, else Containers[0]; None when the Model does not exist)."""

    variant_name: str
    model_arn: str
    container: Mapping[str, Any] | None
    startup_timeout_s: float | None = None  # ContainerStartupHealthCheckTimeoutInSeconds


@dataclass
class _Serving:
    variant_name: str
    container: Container
    port: int


class _StartFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class Start:
    """One EndpointConfig's containers being started in a background thread."""

    endpoint_name: str
    account: str
    region: str
    variants: tuple[VariantSpec, ...]
    finished: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None
    serving: list[_Serving] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    cancelled: bool = False

    @property
    def done(self) -> bool:
        return self.finished.is_set()


@dataclass(frozen=True)
class Answer:
    """An HTTP answer for the InvokeEndpoint caller."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class EndpointRuntime:
    """Runs endpoints' containers with `containers` (files under `work_dir`) and forwards
    InvokeEndpoint to them. State changes happen under `CONTROLS.lock`; pulling, starting,
    waiting and stopping never do."""

    def __init__(
        self,
        containers: ContainerRuntime,
        work_dir: Path,
        *,
        ping_timeout_s: float = 180.0,
        invoke_timeout_s: float = 60.0,
    ) -> None:
        self.container_runtime = containers
        self.work_dir = Path(work_dir)
        self.ping_timeout_s = ping_timeout_s
        self.invoke_timeout_s = invoke_timeout_s
        self._serving: dict[str, list[_Serving]] = {}  # endpoint ARN -> what serves it
        self._starts: dict[str, Start] = {}  # endpoint ARN -> the start in flight
        self._names: dict[str, str] = {}  # endpoint ARN -> name
        self._logs: dict[str, list[Path]] = {}  # endpoint name -> its latest start's logs
        self._retiring: list[Container] = []
        self._threads: list[threading.Thread] = []
        self._sequence = itertools.count(1)
        # bubblewrap's --die-with-parent follows the thread that started it (PR_SET_PDEATHSIG):
        # containers are started by one thread that lives until stop_all, not by the start's.
        self._launcher: ThreadPoolExecutor | None = None

    # -- lifecycle (called by sagemaker.py under CONTROLS.lock) ---------------------------------

    def start(
        self,
        arn: str,
        endpoint_name: str,
        variants: Iterable[VariantSpec],
        *,
        account: str,
        region: str,
    ) -> Start:
        """Start the containers of `variants` for the endpoint; see `Start.done`/`.failure`."""
        start = Start(endpoint_name, account, region, tuple(variants))
        with CONTROLS.lock:
            previous = self._starts.pop(arn, None)
            if previous is not None:
                self._cancel(previous)
            self._starts[arn] = start
            self._names[arn] = endpoint_name
            self._logs[endpoint_name] = start.logs
            self._spawn(f"sagemaker-start-{endpoint_name}", lambda: self._run(start))
        return start

    def promote(self, arn: str, start: Start) -> bool:
        """The finished `start` serves the endpoint, and what served it before stops; False (and
        nothing changes) when the start failed."""
        with CONTROLS.lock:
            if self._starts.get(arn) is start:
                del self._starts[arn]
            if start.failure is not None or start.cancelled:
                start.failure = start.failure or STOPPED
                return False
            self._retire(self._serving.pop(arn, []))
            self._serving[arn] = list(start.serving)
            return True

    def remove(self, arn: str) -> None:
        """DeleteEndpoint: cancel any start and stop what serves the endpoint."""
        with CONTROLS.lock:
            self.cancel(arn)
            self._retire(self._serving.pop(arn, []))

    def cancel(self, arn: str) -> None:
        """Give up the start in flight, if any (its containers stop)."""
        with CONTROLS.lock:
            start = self._starts.pop(arn, None)
            if start is not None:
                self._cancel(start)

    def stop_all(self) -> None:
        """Stop every container (5 s from SIGTERM to SIGKILL) and wait for the runtime's threads."""
        with CONTROLS.lock:
            starts = list(self._starts.values())
            self._starts.clear()
            for start in starts:
                start.cancelled = True
            containers = [s.container for group in self._serving.values() for s in group]
            containers += [s.container for start in starts for s in start.serving]
            containers += self._retiring
            self._serving.clear()
            threads = list(self._threads)
        for container in containers:
            container.stop(timeout=FAST_STOP_S)
        for thread in threads:
            thread.join(timeout=60)
        with CONTROLS.lock:
            launcher, self._launcher = self._launcher, None
        if launcher is not None:
            launcher.shutdown(wait=True)

    # -- what tests and the stack look at -------------------------------------------------------

    def containers(self, endpoint_name: str) -> list[Container]:
        """The containers serving the endpoint(s) of this name now."""
        with CONTROLS.lock:
            return [
                serving.container
                for arn, group in self._serving.items()
                if self._names.get(arn) == endpoint_name
                for serving in group
            ]

    def log_tail(self, endpoint_name: str) -> str:
        """The last 2,000 characters of the container log(s) of the endpoint's latest start."""
        with CONTROLS.lock:
            paths = list(self._logs.get(endpoint_name, ()))
        text = ""
        for path in paths:
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text[-LOG_TAIL_CHARS:]

    # -- InvokeEndpoint -------------------------------------------------------------------------

    def invoke(
        self,
        arn: str | None,
        endpoint_name: str,
        *,
        account: str,
        region: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> Answer:
        """Forward an invocation to the endpoint's container (`arn` None: the endpoint does not
        exist or does not serve). `headers`: the request's Content-Type, Accept and
        X-Amzn-SageMaker-Custom-Attributes, when sent."""
        with CONTROLS.lock:
            serving = list(self._serving.get(arn, ())) if arn is not None else []
        if not serving:
            return validation_error(f"Endpoint {endpoint_name} of account {account} not found.")
        return self._post(
            serving[0], endpoint_name, account, region, body, headers, self.invoke_timeout_s
        )

    def _post(
        self,
        target: _Serving,
        endpoint_name: str,
        account: str,
        region: str,
        body: bytes,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Answer:
        """POST to the container's /invocations; its answer, or SageMaker's ModelError."""
        url = f"http://127.0.0.1:{target.port}/invocations"
        session = requests.Session()
        session.trust_env = False  # loopback: never through a proxy from the environment
        try:
            with session:
                response = session.post(url, data=body, headers=dict(headers), timeout=timeout)
        except requests.Timeout:
            return model_error(
                endpoint_name,
                account,
                region,
                status=None,
                message=(
                    "Your invocation timed out while waiting for a response from container "
                    f"{_CONTAINER_HOSTNAME}. Review the latency metrics for each container in "
                    "Amazon CloudWatch, resolve the issue, and try again."
                ),
            )
        except requests.ConnectionError as error:
            log.info("runtime: endpoint %s: %s: %s", endpoint_name, url, error)
            return model_error(
                endpoint_name,
                account,
                region,
                status=None,
                message=f"Your invocation could not reach container {_CONTAINER_HOSTNAME}.",
            )
        if not 200 <= response.status_code < 300:
            return model_error(
                endpoint_name,
                account,
                region,
                status=response.status_code,
                message=response.content.decode("utf-8", "replace"),
            )
        answer_headers = [("x-Amzn-Invoked-Production-Variant", target.variant_name)]
        for name in ("Content-Type", "X-Amzn-SageMaker-Custom-Attributes"):
            if name in response.headers:
                answer_headers.append((name, response.headers[name]))
        return Answer(200, tuple(answer_headers), response.content)

    # -- InvokeEndpointAsync --------------------------------------------------------------------

    def invoke_async(
        self,
        arn: str | None,
        endpoint_name: str,
        *,
        account: str,
        region: str,
        async_config: Mapping[str, Any] | None,
        headers: Mapping[str, str],
    ) -> Answer:
        """Accept an asynchronous invocation (`async_config`: the endpoint config's
        AsyncInferenceConfig, None without one) and answer 202 at once; a background thread asks
        the container and writes the answer or the failure to S3. `headers`: the request's
        X-Amzn-SageMaker-* headers by their names."""
        with CONTROLS.lock:
            serving = bool(self._serving.get(arn)) if arn is not None else False
        if not serving:
            return validation_error(f"Endpoint {endpoint_name} of account {account} not found.")
        output = (async_config or {}).get("OutputConfig") or {}
        if not output.get("S3OutputPath"):
            return validation_error(
                f"Endpoint {endpoint_name} of account {account} is not an asynchronous inference "
                "endpoint: its endpoint configuration has no AsyncInferenceConfig."
            )
        input_location = headers.get("X-Amzn-SageMaker-InputLocation", "")
        if _s3_location(input_location) is None:
            return validation_error(
                f"InputLocation must be an S3 URI (s3://bucket/key), not '{input_location}'."
            )
        try:
            timeout = float(headers.get("X-Amzn-SageMaker-InvocationTimeoutSeconds") or 900)
        except ValueError:
            return validation_error("InvocationTimeoutSeconds must be an integer.")
        if not 1 <= timeout <= 3600:
            return validation_error("InvocationTimeoutSeconds must be between 1 and 3600.")
        inference_id = headers.get("X-Amzn-SageMaker-Inference-Id") or str(uuid.uuid4())
        output_location = f"{str(output['S3OutputPath']).rstrip('/')}/{inference_id}.out"
        failure_path = output.get("S3FailurePath")
        failure_location = (
            f"{str(failure_path or output['S3OutputPath']).rstrip('/')}/{inference_id}-error.out"
        )
        forwarded = {
            name: headers[header]
            for header, name in (
                ("X-Amzn-SageMaker-Content-Type", "Content-Type"),
                ("X-Amzn-SageMaker-Accept", "Accept"),
                ("X-Amzn-SageMaker-Custom-Attributes", "X-Amzn-SageMaker-Custom-Attributes"),
            )
            if headers.get(header)
        }

        def work() -> None:
            answer = self._answer_async(
                arn, endpoint_name, account, region, input_location, forwarded, timeout
            )
            if answer.status == 200:
                self._put_s3(account, region, output_location, answer.body)
            else:
                error = json.loads(answer.body)
                message = str(error.get("Message") or error.get("message") or "")
                self._put_s3(account, region, failure_location, message.encode())

        with CONTROLS.lock:
            self._spawn(f"sagemaker-async-{endpoint_name}-{inference_id}", work)
        answer_headers = [
            ("Content-Type", "application/json"),
            ("X-Amzn-SageMaker-OutputLocation", output_location),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ]
        if failure_path:
            answer_headers.append(("X-Amzn-SageMaker-FailureLocation", failure_location))
        body = json.dumps({"InferenceId": inference_id}).encode()
        return Answer(202, tuple(answer_headers), body)

    def _answer_async(
        self,
        arn: str | None,
        endpoint_name: str,
        account: str,
        region: str,
        input_location: str,
        headers: Mapping[str, str],
        timeout: float,
    ) -> Answer:
        body = self._get_s3(account, region, input_location)
        if body is None:
            return validation_error(
                f"Could not read the input at {input_location}: no such object, or access denied."
            )
        with CONTROLS.lock:
            serving = list(self._serving.get(arn, ())) if arn is not None else []
        if not serving:
            return validation_error(f"Endpoint {endpoint_name} of account {account} not found.")
        return self._post(serving[0], endpoint_name, account, region, body, headers, timeout)

    @staticmethod
    def _get_s3(account: str, region: str, url: str) -> bytes | None:
        location = _s3_location(url)
        if location is None:
            return None
        try:
            found = s3_backends[account][get_partition(region)].get_object(*location)
        except Exception as error:  # moto's MissingBucket, MissingKey, ...
            log.info("runtime: reading %s: %r", url, error)
            return None
        return found.value if found is not None else None

    @staticmethod
    def _put_s3(account: str, region: str, url: str, value: bytes) -> None:
        location = _s3_location(url)
        try:
            assert location is not None, url
            s3_backends[account][get_partition(region)].put_object(*location, value)
        except Exception:  # a bucket that is not there: SageMaker's answer is lost too
            log.exception("runtime: writing %s failed", url)

    # -- starting -------------------------------------------------------------------------------

    def _run(self, start: Start) -> None:
        try:
            for variant in start.variants:
                self._start_variant(start, variant)
        except _StartFailed as failed:
            self._fail(start, failed.reason)
        except Exception:
            log.exception(
                "runtime: endpoint %s: starting its containers failed", start.endpoint_name
            )
            self._fail(start, INTERNAL_FAILURE)
        else:
            log.info("runtime: endpoint %s: every container passed /ping", start.endpoint_name)
        finally:
            start.finished.set()

    def _fail(self, start: Start, reason: str) -> None:
        with CONTROLS.lock:
            start.failure = reason
            started = [s.container for s in start.serving]
        for container in started:
            container.stop(timeout=FAST_STOP_S)
        if not start.cancelled:
            log.info(
                "runtime: endpoint %s failed: %s\ncontainer log tail:\n%s",
                start.endpoint_name,
                reason,
                self.log_tail(start.endpoint_name),
            )

    def _start_variant(self, start: Start, variant: VariantSpec) -> None:
        definition = variant.container
        if definition is None:
            raise _StartFailed(missing_model_failure(variant.model_arn))
        name = f"{next(self._sequence):03d}-{variant.variant_name}"
        directory = self.work_dir / start.endpoint_name / name
        directory.mkdir(parents=True, exist_ok=True)
        image = self._pull(str(definition.get("Image") or ""), variant.variant_name)
        model_dir = None
        if url := definition.get("ModelDataUrl"):
            model_dir = self._model_data(str(url), start, directory)
        self._check(start)
        port = free_port()
        log_path = directory / "container.log"
        with CONTROLS.lock:
            start.logs.append(log_path)
        with CONTROLS.lock:
            if self._launcher is None:
                self._launcher = ThreadPoolExecutor(1, thread_name_prefix="sagemaker-containers")
            launcher = self._launcher
        try:
            container = launcher.submit(
                run_sagemaker_container,
                self.container_runtime,
                image,
                model_dir=model_dir,
                port=port,
                log_path=log_path,
                model_environment=dict(definition.get("Environment") or {}),
            ).result()
        except ContainerError as error:
            log.info("runtime: endpoint %s: %s", start.endpoint_name, error)
            raise _StartFailed(ping_failure(variant.variant_name)) from error
        with CONTROLS.lock:
            start.serving.append(_Serving(variant.variant_name, container, port))
        log.info(
            "runtime: endpoint %s variant %s: %s on 127.0.0.1:%d, log %s",
            start.endpoint_name,
            variant.variant_name,
            image.digest,
            port,
            log_path,
        )
        timeout = variant.startup_timeout_s or self.ping_timeout_s
        self._await_ping(start, container, port, timeout, variant.variant_name)

    @staticmethod
    def _check(start: Start) -> None:
        if start.cancelled:
            raise _StartFailed(STOPPED)

    def _pull(self, reference: str, variant: str) -> UnpackedImage:
        try:
            ref = parse_reference(reference)
            if ref.host is None:
                raise _StartFailed(image_access_failure(variant))
            if ref.digest is None:
                assert ref.tag is not None
                client = RegistryClient(default_registry_url(ref.host))
                try:
                    digest = client.manifest_digest(ref.repository, ref.tag)
                finally:
                    client.close()
                if digest is None:
                    raise _StartFailed(missing_image_failure(reference))
                reference = f"{ref.host}/{ref.repository}@{digest}"
            return self.container_runtime.pull(reference)
        except RegistryNotFound as error:
            log.info("runtime: pulling %s: %s", reference, error)
            raise _StartFailed(missing_image_failure(reference)) from error
        except (RegistryError, ImageError, ValueError) as error:
            log.info("runtime: pulling %s: %s", reference, error)
            raise _StartFailed(image_access_failure(variant)) from error

    def _model_data(self, url: str, start: Start, directory: Path) -> Path:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        value: bytes | None = None
        if url.startswith("s3://") and bucket and key:
            try:
                backend = s3_backends[start.account][get_partition(start.region)]
                found = backend.get_object(bucket, key)
                value = found.value if found is not None else None
            except Exception as error:  # moto's MissingBucket, AccessDenied, ...
                log.info("runtime: reading %s: %r", url, error)
        if value is None:
            raise _StartFailed(download_failure(url))
        archive = directory / "model.tar.gz"
        archive.write_bytes(value)
        try:
            return extract_model_archive(archive, directory / "model")
        except (tarfile.TarError, ValueError, OSError, EOFError, zlib.error) as error:
            log.info("runtime: extracting %s: %r", url, error)
            raise _StartFailed(extract_failure(url)) from error

    def _await_ping(
        self, start: Start, container: Container, port: int, timeout: float, variant: str
    ) -> None:
        url = f"http://127.0.0.1:{port}/ping"
        deadline = time.monotonic() + timeout
        session = requests.Session()
        session.trust_env = False
        with session:
            while True:
                self._check(start)
                if not container.running():
                    log.info(
                        "runtime: endpoint %s variant %s: container exited with %s before /ping",
                        start.endpoint_name,
                        variant,
                        container.returncode,
                    )
                    raise _StartFailed(ping_failure(variant))
                with contextlib.suppress(requests.RequestException):
                    if session.get(url, timeout=5).status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    log.info(
                        "runtime: endpoint %s variant %s: no 200 from /ping within %.0f s",
                        start.endpoint_name,
                        variant,
                        timeout,
                    )
                    raise _StartFailed(ping_failure(variant))
                time.sleep(_PING_INTERVAL_S)

    # -- stopping -------------------------------------------------------------------------------

    def _cancel(self, start: Start) -> None:
        start.cancelled = True
        self._retire(list(start.serving))

    def _retire(self, serving: list[_Serving]) -> None:
        """Stop these containers in the background (SageMaker's SIGTERM, SIGKILL 30 s later)."""
        containers = [s.container for s in serving]
        if not containers:
            return
        self._retiring.extend(containers)

        def stop() -> None:
            for container in containers:
                container.stop()
            with CONTROLS.lock:
                for container in containers:
                    with contextlib.suppress(ValueError):
                        self._retiring.remove(container)

        self._spawn("sagemaker-stop", stop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()


# -- SageMaker runtime's error answers ------------------------------------------------------------


def _s3_location(url: str) -> tuple[str, str] | None:
    """(bucket, key) of `s3://bucket/key`, else None."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return (bucket, key) if url.startswith("s3://") and bucket and key else None


def _json_error(status: int, code: str, fields: Mapping[str, Any]) -> Answer:
    body = json.dumps(dict(fields)).encode()
    headers = (
        ("Content-Type", "application/json"),
        ("x-amzn-ErrorType", code),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    )
    return Answer(status, headers, body)


def validation_error(message: str) -> Answer:
    return _json_error(400, "ValidationError", {"message": message})


def model_error(
    endpoint_name: str, account: str, region: str, *, status: int | None, message: str
) -> Answer:
    """HTTP 424 ModelError as SageMaker words it; `status` None: the container did not answer
    (SageMaker reports status 0 and no OriginalStatusCode)."""
    group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    console = (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logEventViewer:group={group}"
    )
    kind = "client" if status is not None and status < 500 else "server"
    text = (
        f"Received {kind} error ({status or 0}) from {_CONTAINER_HOSTNAME} with message "
        f'"{message}". See {console} in account {account} for more information.'
    )
    fields: dict[str, Any] = {
        "Message": text,
        "LogStreamArn": f"arn:{get_partition(region)}:logs:{region}:{account}:log-group:{group}",
    }
    if status is not None:
        fields["OriginalStatusCode"] = status
        fields["OriginalMessage"] = message
        if kind == "client":
            fields["ErrorCode"] = "CLIENT_ERROR_FROM_MODEL"
    return _json_error(424, "ModelError", fields)


# -- the WSGI layer -------------------------------------------------------------------------------

_INVOCATIONS = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<kind>async-)?invocations$")
_CREDENTIAL = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
_FORWARDED = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_ACCEPT": "Accept",
    "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES": "X-Amzn-SageMaker-Custom-Attributes",
}
_ASYNC_HEADERS = (
    "X-Amzn-SageMaker-Content-Type",
    "X-Amzn-SageMaker-Accept",
    "X-Amzn-SageMaker-Custom-Attributes",
    "X-Amzn-SageMaker-Inference-Id",
    "X-Amzn-SageMaker-InputLocation",
    "X-Amzn-SageMaker-RequestTTLSeconds",
    "X-Amzn-SageMaker-InvocationTimeoutSeconds",
)
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 424: "Failed Dependency"}

Lookup = Callable[[str, str, str], str | None]
"""(account, region, endpoint name) -> the endpoint's ARN when it takes invocations, else None."""
AsyncLookup = Callable[[str, str, str], Mapping[str, Any] | None]
"""(account, region, endpoint name) -> its current EndpointConfig's AsyncInferenceConfig, if any."""


def _account_of(environ: Mapping[str, Any], access_key: str) -> str:
    """The account moto serves the request for (as moto's BaseResponse.get_current_account)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if "HTTP_X_MOTO_ACCOUNT_ID" in environ:
        return str(environ["HTTP_X_MOTO_ACCOUNT_ID"])
    return str(get_account_id_from(access_key))


class InvocationProxy:
    """WSGI layer in front of moto: while a runtime is installed, InvokeEndpoint
    (POST /endpoints/<name>/invocations, signed for `sagemaker`) goes to the endpoint's container,
    and InvokeEndpointAsync (POST /endpoints/<name>/async-invocations) to `invoke_async`;
    everything else, and everything while none is installed, goes to moto."""

    def __init__(self, app: Any, lookup: Lookup, async_lookup: AsyncLookup | None = None) -> None:
        self.app = app
        self.lookup = lookup
        self.async_lookup = async_lookup

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        runtime = CONTROLS.runtime
        match = _INVOCATIONS.match(environ.get("PATH_INFO", ""))
        credential = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if (
            runtime is None
            or match is None
            or credential is None
            or credential.group(3) != "sagemaker"
            or environ.get("REQUEST_METHOD") != "POST"
        ):
            return self.app(environ, start_response)
        name = match["name"]
        account = _account_of(environ, credential.group(1))
        region = credential.group(2)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if match["kind"]:
            async_config = self.async_lookup(account, region, name) if self.async_lookup else None
            answer = runtime.invoke_async(
                self.lookup(account, region, name),
                name,
                account=account,
                region=region,
                async_config=async_config,
                headers={
                    header: str(environ[key])
                    for header in _ASYNC_HEADERS
                    if environ.get(key := "HTTP_" + header.upper().replace("-", "_"))
                },
            )
        else:
            headers = {h: environ[key] for key, h in _FORWARDED.items() if environ.get(key)}
            answer = runtime.invoke(
                self.lookup(account, region, name),
                name,
                account=account,
                region=region,
                body=body,
                headers=headers,
            )
        status_line = f"{answer.status} {_REASONS.get(answer.status, 'Error')}"
        start_response(status_line, [*answer.headers, ("Content-Length", str(len(answer.body)))])
        return [answer.body]
