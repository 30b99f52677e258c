"""Self-service RBAC (manifests/11-user-rbac.yaml): users bound to Kubernetes' built-in `edit` and
`view` roles in their namespace manage and read QAModelDeployments there, and nowhere else. Real
user identities (client certificates), the real API server's RBAC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.e2e import PLURAL, REPO, deployment
from support.rbac import aggregate_cluster_roles

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def user_roles(kube_cluster: Any) -> None:
    kube_cluster.kubectl("apply", "-f", str(REPO / "manifests/11-user-rbac.yaml"))
    aggregate_cluster_roles(kube_cluster)


@pytest.fixture
def other_namespace(kube_cluster: Any) -> Iterator[str]:
    name = f"t-other-team-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _user_bound(cluster: Any, namespace: str, role: str) -> Path:
    """A new user who holds the built-in ClusterRole `role` in `namespace` (a RoleBinding)."""
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    user = f"{name}@example.com"
    cluster.kubectl(
        "create", "rolebinding", name, "-n", namespace,
        f"--clusterrole={role}", f"--user={user}",
    )  # fmt: skip
    return Path(cluster.user_kubeconfig(user))


def _as(cluster: Any, kubeconfig: Path, *args: str, input: str | None = None) -> Any:
    return cluster.kubectl(*args, kubeconfig=kubeconfig, input=input, check=False)


def _forbidden(result: Any) -> bool:
    return result.returncode != 0 and "forbidden" in result.stderr.lower()


def _manifest(name: str) -> str:
    return yaml.safe_dump(deployment(name, "s3://qa-sources/tiny/"))


def test_a_namespace_editor_creates_and_changes_deployments_but_not_their_status(
    kube_cluster: Any, namespace: str, user_roles: None
) -> None:
    editor = _user_bound(kube_cluster, namespace, "edit")
    created = _as(kube_cluster, editor, "apply", "-n", namespace, "-f", "-", input=_manifest("qa"))
    assert created.returncode == 0, created.stderr
    changed = _as(
        kube_cluster, editor, "patch", PLURAL, "qa", "-n", namespace, "--type", "merge",
        "-p", '{"spec": {"endpoint": {"instanceCount": 2}}}',
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    status = _as(
        kube_cluster, editor, "patch", PLURAL, "qa", "-n", namespace, "--subresource=status",
        "--type", "merge", "-p", '{"status": {"phase": "Ready"}}',
    )  # fmt: skip
    assert _forbidden(status), status.stderr
    deleted = _as(kube_cluster, editor, "delete", PLURAL, "qa", "-n", namespace, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr


def test_a_namespace_viewer_reads_deployments_and_status_but_cannot_create(
    kube_cluster: Any, namespace: str, user_roles: None
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("qa"))
    kube_cluster.kubectl(
        "patch", PLURAL, "qa", "-n", namespace, "--subresource=status", "--type", "merge",
        "-p", '{"status": {"phase": "Creating"}}',
    )  # fmt: skip
    viewer = _user_bound(kube_cluster, namespace, "view")
    listed = _as(kube_cluster, viewer, "get", PLURAL, "-n", namespace, "-o", "name")
    assert listed.stdout.split() == ["qamodeldeployment.serving.qaoperator.io/qa"], listed.stderr
    phase = _as(
        kube_cluster, viewer, "get", PLURAL, "qa", "-n", namespace, "--subresource=status",
        "-o", "jsonpath={.status.phase}",
    )  # fmt: skip
    assert phase.stdout == "Creating", phase.stderr
    assert _forbidden(
        _as(kube_cluster, viewer, "apply", "-n", namespace, "-f", "-", input=_manifest("mine"))
    )
    assert _forbidden(_as(kube_cluster, viewer, "delete", PLURAL, "qa", "-n", namespace))


def test_an_editor_of_another_namespace_can_neither_read_nor_create_here(
    kube_cluster: Any, namespace: str, other_namespace: str, user_roles: None
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_manifest("qa"))
    outsider = _user_bound(kube_cluster, other_namespace, "edit")
    # In their own namespace they may: the same role, the same user.
    own = _as(
        kube_cluster, outsider, "apply", "-n", other_namespace, "-f", "-", input=_manifest("own")
    )
    assert own.returncode == 0, own.stderr
    assert _forbidden(_as(kube_cluster, outsider, "get", PLURAL, "qa", "-n", namespace))
    assert _forbidden(_as(kube_cluster, outsider, "get", PLURAL, "-A"))
    assert _forbidden(
        _as(kube_cluster, outsider, "apply", "-n", namespace, "-f", "-", input=_manifest("x"))
    )
