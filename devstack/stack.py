"""The whole local stack on loopback: what `make demo`, `python -m devstack up` and the tests of
the demo run against, with no cluster, no AWS account and no Docker.

`LocalStack` starts, in this order, printing a line per step: kube-apiserver + etcd (built from
Go modules the first time), the CRDs (until Established), the operator's namespace and RBAC
(manifests/00-namespace.yaml, 10-rbac.yaml), an OCI registry, and moto extended with SageMaker's
runtime (endpoints run their Model's image as a container; `sagemaker-runtime` reaches it).
Another process uses it through two files under the state dir (default `<repo>/.devstack/`):

    kubeconfig   admin credentials for the API server
    aws.env      `export AWS_ENDPOINT_URL=...` and the other AWS settings, plus the registry
    bin/kubectl  the kubectl built with the API server (the one on PATH may be too old)
    run/         this run's data and logs (control plane, registry, moto, endpoints); wiped at
                 the next start

Stopping (leaving the `with` block, Ctrl-C included) stops the endpoint containers, moto, the
registry and the control plane, and removes the two files. One stack per state dir: a lock file
says whether one runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.cache import cache_dir
from devstack.containers import ContainerRuntime
from devstack.controlplane.build import ControlPlaneBinariesMissing, build, locate
from devstack.controlplane.build import cache_dir as controlplane_cache
from devstack.controlplane.cluster import Cluster, local_control_plane
from devstack.moto_ext import ExtendedMotoServer
from devstack.moto_ext.runtime import EndpointRuntime
from devstack.moto_ext.server import client, client_environment
from devstack.registry import Registry, start_registry, stop_registry

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO / ".devstack"
ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
OPERATOR_NAMESPACE = "qa-operator"  # manifests/00-namespace.yaml and 10-rbac.yaml
OPERATOR_ACCOUNT = "qa-operator"


class StackBusy(RuntimeError):
    """Another stack runs from this state dir."""


class LocalStack:
    """The local stack; a context manager. Attributes are set once `start()` has returned."""

    cluster: Cluster
    registry: Registry
    containers: ContainerRuntime
    runtime: EndpointRuntime
    moto: ExtendedMotoServer
    endpoint_url: str
    aws_env: dict[str, str]

    def __init__(
        self, state_dir: Path | None = None, *, say: Callable[[str], None] = print
    ) -> None:
        self.state_dir = (state_dir or DEFAULT_STATE_DIR).resolve()
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.aws_env_file = self.state_dir / "aws.env"
        self.bin_dir = self.state_dir / "bin"
        self.run_dir = self.state_dir / "run"
        self.region = REGION
        self.account_id = ACCOUNT_ID
        self._say = say
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start and stop ----------------------------------------------------------------------

    def start(self) -> LocalStack:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self._exit.enter_context(exclusive_lock(self.state_dir / "lock")):
            self._exit.close()
            raise StackBusy(
                f"a local stack already runs from {self.state_dir}: stop it (Ctrl-C in its "
                "terminal), or give this one another state dir"
            )
        self._exit.callback(self._remove_files)
        try:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir.mkdir()
            self._start_control_plane()
            with self._step("CRDs", "crds/*.yaml, until Established"):
                self.cluster.apply_crds(sorted((REPO / "crds").glob("*.yaml")))
            with self._step("namespace and RBAC", "manifests/00-namespace.yaml, 10-rbac.yaml"):
                manifests = REPO / "manifests"
                self.cluster.kubectl(
                    "apply", "-f", str(manifests / "00-namespace.yaml"),
                    "-f", str(manifests / "10-rbac.yaml"),
                )  # fmt: skip
            self._start_registry()
            self._start_aws()
            self._write_files()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything that started, newest first; a second Ctrl-C does not cut it short."""
        with _sigint_ignored():
            self._exit.close()

    def _step(self, name: str, detail: str) -> contextlib.AbstractContextManager[None]:
        return _timed_step(self._say, name, detail)

    def _start_control_plane(self) -> None:
        try:
            binaries = locate()
        except ControlPlaneBinariesMissing:
            self._say(
                "  control plane: building kube-apiserver, etcd and kubectl from Go modules, a "
                f"one-time build of several minutes (10-20 on 2 cores), cached in "
                f"{controlplane_cache()}"
            )
            build()
            binaries = locate()
        with self._step("control plane", "kube-apiserver + etcd"):
            self.cluster = self._exit.enter_context(
                local_control_plane(self.run_dir / "controlplane", binaries)
            )
        self._say(f"    {self.cluster.server}")
        self.bin_dir.mkdir(exist_ok=True)
        link = self.bin_dir / "kubectl"
        link.unlink(missing_ok=True)
        link.symlink_to(binaries.kubectl)

    def _start_registry(self) -> None:
        with self._step("OCI registry", "Debian's docker-registry"):
            work = self.run_dir / "registry"
            work.mkdir()
            # The registry's blobs outlive the stack (in the user cache), so that a warm start
            # pushes nothing; a second stack running at the same time gets its own, removed after.
            shared = cache_dir("registry")
            shared.mkdir(parents=True, exist_ok=True)
            if self._exit.enter_context(exclusive_lock(shared / ".lock")):
                (work / "storage").symlink_to(shared, target_is_directory=True)
            else:
                self._exit.callback(shutil.rmtree, work / "storage", ignore_errors=True)
            self.registry = start_registry(work)
            self._exit.callback(stop_registry, self.registry)
        self._say(f"    {self.registry.url}")

    def _start_aws(self) -> None:
        with self._step("AWS (moto)", "SageMaker runs each endpoint's image as a container"):
            self.containers = ContainerRuntime()
            self.containers.bwrap()  # fails here, with the install hint, when it is missing
            self.runtime = EndpointRuntime(self.containers, self.run_dir / "endpoints")
            self._exit.callback(self.runtime.stop_all)
            self.moto = ExtendedMotoServer(self.run_dir / "moto.log", runtime=self.runtime)
            self.moto.start()
            self._exit.callback(self.moto.stop)
            self.endpoint_url = f"http://127.0.0.1:{self.moto.port}"
            self.aws_env = client_environment(self.endpoint_url, self.region)
            self.client("sts").get_caller_identity()  # answers a signed call, or fails here
        self._say(f"    {self.endpoint_url}")

    def _write_files(self) -> None:
        _write_private(self.kubeconfig, self.cluster.kubeconfig.read_text())
        lines = [f"export {key}={value}" for key, value in self.aws_env.items()]
        lines.append(f"export DEVSTACK_REGISTRY={self.registry.host}")
        _write_private(self.aws_env_file, "\n".join(lines) + "\n")

    def _remove_files(self) -> None:
        for path in (self.kubeconfig, self.aws_env_file):
            path.unlink(missing_ok=True)

    # -- using it ----------------------------------------------------------------------------

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the stack stops, before the peers it may use (an operator)."""
        self._exit.callback(callback)

    def client(self, service: str) -> Any:
        """A boto3 client for moto (standard retries, as the operator's)."""
        return client(self.endpoint_url, self.region, service)

    def operator_kubeconfig(self) -> Path:
        """The operator's ServiceAccount identity: exactly the RBAC of manifests/10-rbac.yaml."""
        return self.cluster.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


def stack_env_lines(state_dir: Path) -> list[str]:
    """`export` lines for the stack running from `state_dir`; FileNotFoundError if none runs."""
    state_dir = state_dir.resolve()
    missing = FileNotFoundError(
        f"no local stack runs from {state_dir}: start one with `python -m devstack up`"
    )
    if not (state_dir / "aws.env").is_file():
        raise missing
    with exclusive_lock(state_dir / "lock") as free:
        if free:  # the files of a stack that was killed
            raise missing
    return [
        f"export KUBECONFIG={state_dir / 'kubeconfig'}",
        f'export PATH="{state_dir / "bin"}:$PATH"',
        *(state_dir / "aws.env").read_text().splitlines(),
    ]


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive flock on `path` while inside, if no one else holds it; yield whether we
    do. The kernel lets go when the process dies, so a killed stack leaves no stale lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@contextlib.contextmanager
def _timed_step(say: Callable[[str], None], name: str, detail: str) -> Iterator[None]:
    say(f"  {name}: {detail} ...")
    started = time.monotonic()
    yield
    say(f"  {name}: ready in {time.monotonic() - started:.1f} s")


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM unwind as KeyboardInterrupt, so that `with LocalStack()` stops the
    stack; SIGINT too, as a shell starts background jobs with it ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)
