"""pytest plugin: a real kube-apiserver + etcd per test session, and a namespace per test.

`kube_cluster` starts both on free loopback ports (or reuses the cluster in
``QA_TEST_KUBECONFIG``), installs every CRD in ``crds/*.yaml`` and waits until each is
Established. Missing binaries or a peer that will not start fail the test loudly; nothing skips.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.controlplane.build import ControlPlaneBinariesMissing, locate, locate_kubectl
from devstack.controlplane.cluster import (
    Cluster,
    ControlPlaneError,
    KubectlError,
    existing_cluster,
    local_control_plane,
)

__all__ = ["Cluster", "kube_cluster", "namespace"]

ENV_REUSE_KUBECONFIG = "QA_TEST_KUBECONFIG"

# What the terminal summary reports: where the logs are and how long startup took.
_session: dict[str, str] = {}


def _crd_files(root: Path) -> list[Path]:
    return sorted((root / "crds").glob("*.yaml"))


@pytest.fixture(scope="session")
def kube_cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Cluster]:
    work_dir = tmp_path_factory.mktemp("controlplane")
    crds = _crd_files(pytestconfig.rootpath)
    failure = ""
    try:
        with _session_cluster(work_dir, crds) as cluster:
            yield cluster
    except (ControlPlaneBinariesMissing, ControlPlaneError, KubectlError) as error:
        failure = str(error)
    if failure:  # outside the except block, so pytest shows the message, not a chained trace
        pytest.fail(failure, pytrace=False)


@contextlib.contextmanager
def _session_cluster(work_dir: Path, crds: list[Path]) -> Iterator[Cluster]:
    reuse = os.environ.get(ENV_REUSE_KUBECONFIG)
    if reuse:
        cluster = existing_cluster(Path(reuse), work_dir, locate_kubectl())
        _install_crds(cluster, crds)
        _session["control plane"] = f"reused {cluster.server} from {ENV_REUSE_KUBECONFIG}"
        yield cluster
        return
    binaries = locate()
    started = time.monotonic()
    with local_control_plane(work_dir, binaries) as cluster:
        _session["control plane logs"] = str(cluster.log_dir)
        # Proves the kubectl we picked (built or from PATH) really talks to this server.
        cluster.kubectl("version", "-o", "json")
        _install_crds(cluster, crds)
        _session["control plane startup"] = (
            f"{time.monotonic() - started:.1f} s (etcd + kube-apiserver ready, "
            f"{len(crds)} CRD file(s) Established)"
        )
        yield cluster


def _install_crds(cluster: Cluster, crds: list[Path]) -> None:
    try:
        cluster.apply_crds(crds)
    except KubectlError as error:
        message = f"installing {[str(p) for p in crds]} failed:\n{error.stderr}"
    else:
        return
    raise ControlPlaneError(message)


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test. Deleting it only marks it Terminating: no namespace
    controller runs to empty it, so we issue the delete and move on."""
    name = _namespace_name(request.node.name)
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for key, value in _session.items():
        terminalreporter.write_line(f"{key}: {value}")
