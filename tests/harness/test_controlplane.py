"""The local control plane behaves like a real cluster where our operator depends on it:
CRDs, the status subresource, schema validation, RBAC and service-account tokens."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.exceptions import ApiException

from devstack.controlplane import build
from support.controlplane.fixtures import Cluster

GROUP = "harness.qa-operator.test"
PLURAL = "widgets"

WIDGET_CRD = textwrap.dedent(
    f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {PLURAL}.{GROUP}
    spec:
      group: {GROUP}
      scope: Namespaced
      names: {{plural: {PLURAL}, singular: widget, kind: Widget}}
      versions:
        - name: v1
          served: true
          storage: true
          subresources: {{status: {{}}}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  required: [size]
                  properties:
                    size: {{type: integer, minimum: 1, maximum: 10}}
                    color: {{type: string, enum: [red, blue]}}
                status:
                  type: object
                  properties:
                    phase: {{type: string}}
    """
)


def widget(name: str, size: int, color: str = "red") -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size, "color": color},
        }
    )


@pytest.fixture(scope="module")
def widget_crd(kube_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("crd") / "widgets.yaml"
    path.write_text(WIDGET_CRD)
    kube_cluster.kubectl("apply", "-f", str(path))
    kube_cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}"
    )
    return f"{PLURAL}.{GROUP}"


def get_widget(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        cluster.kubectl("get", "-n", namespace, f"{PLURAL}.{GROUP}", name, "-o", "json").stdout
    )
    return found


@pytest.mark.e2e
def test_custom_resource_round_trips_through_the_api_server(
    kube_cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("w1", 4, "blue"))

    with kube_cluster.api_client() as api:
        objects = kubernetes.client.CustomObjectsApi(api)
        body: Any = objects.get_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, "w1")
    assert body["spec"] == {"size": 4, "color": "blue"}
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["namespace"] == namespace


@pytest.mark.e2e
def test_status_subresource_is_separate_from_spec(
    kube_cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("w2", 2))

    kube_cluster.kubectl(
        *("patch", "-n", namespace, widget_crd, "w2", "--subresource=status", "--type=merge"),
        "-p",
        '{"status": {"phase": "Ready"}}',
    )
    after_status = get_widget(kube_cluster, namespace, "w2")
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["metadata"]["generation"] == 1, "a status write must not bump generation"

    # Through the main resource, spec changes and the status in the same body is ignored.
    kube_cluster.kubectl(
        *("patch", "-n", namespace, widget_crd, "w2", "--type=merge"),
        "-p",
        '{"spec": {"size": 3}, "status": {"phase": "Overwritten"}}',
    )
    after_spec = get_widget(kube_cluster, namespace, "w2")
    assert after_spec["spec"]["size"] == 3
    assert after_spec["status"] == {"phase": "Ready"}
    assert after_spec["metadata"]["generation"] == 2


@pytest.mark.e2e
def test_schema_validation_rejects_a_bad_object_with_a_clear_message(
    kube_cluster: Cluster, namespace: str, widget_crd: str
) -> None:
    rejected = kube_cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=widget("bad", 0, "green"), check=False
    )

    assert rejected.returncode != 0
    assert "is invalid" in rejected.stderr
    assert (
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        in (rejected.stderr)
    )
    assert 'spec.color: Unsupported value: "green"' in rejected.stderr
    missing = kube_cluster.kubectl("get", "-n", namespace, widget_crd, "bad", check=False)
    assert "NotFound" in missing.stderr


ROLE = textwrap.dedent(
    """\
    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: configmap-reader}
    rules:
      - apiGroups: [""]
        resources: [configmaps]
        verbs: [get, list]
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: configmap-readers}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
    subjects:
      - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: qa-testers}
      - {kind: ServiceAccount, name: robot}
    """
)


@pytest.mark.e2e
def test_rbac_forbids_a_restricted_user_until_a_role_binding_grants_it(
    kube_cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    alice = kube_cluster.user_kubeconfig("alice", groups=["qa-testers"])
    whoami = json.loads(
        kube_cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=alice).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == "alice"
    assert "qa-testers" in whoami["status"]["userInfo"]["groups"]

    denied = kube_cluster.kubectl(
        "get", "configmaps", "-n", namespace, kubeconfig=alice, check=False
    )
    assert denied.returncode != 0
    assert 'User "alice" cannot list resource "configmaps"' in denied.stderr

    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=ROLE)
    kube_cluster.kubectl("create", "configmap", "-n", namespace, "settings", "--from-literal=a=1")

    # The grant comes through the group in the certificate's Organization.
    kube_cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=alice)
    with kube_cluster.api_client(alice) as api:
        core = kubernetes.client.CoreV1Api(api)
        names = [
            cm.metadata and cm.metadata.name
            for cm in core.list_namespaced_config_map(namespace).items
        ]
        assert "settings" in names
        with pytest.raises(ApiException) as forbidden:
            core.list_namespaced_secret(namespace)
    assert forbidden.value.status == 403
    can_create = kube_cluster.kubectl(
        "auth", "can-i", "create", "configmaps", "-n", namespace, kubeconfig=alice, check=False
    )
    assert can_create.stdout.strip() == "no"


@pytest.mark.e2e
def test_service_account_token_authenticates_as_that_account(
    kube_cluster: Cluster, namespace: str
) -> None:
    robot = kube_cluster.service_account_kubeconfig(namespace, "robot")
    whoami = json.loads(
        kube_cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=robot).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"

    assert (
        kube_cluster.kubectl(
            "auth", "can-i", "list", "configmaps", "-n", namespace, kubeconfig=robot, check=False
        ).stdout.strip()
        == "no"
    )
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=ROLE)
    kube_cluster.kubectl("get", "configmaps", "-n", namespace, kubeconfig=robot)


def fake_binaries(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    return directory


@pytest.fixture
def no_binary_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in (build.ENV_ASSETS_DIR, *build.ENV_BINARY.values()):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


@pytest.mark.usefixtures("no_binary_env")
def test_binaries_resolve_like_envtest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    versions = build.Versions(kubernetes="v1.37.2", etcd="v3.7.0")
    with pytest.raises(build.ControlPlaneBinariesMissing, match="make test-peers"):
        build.locate(versions)

    assets = fake_binaries(tmp_path / "assets", "kube-apiserver", "etcd", "kubectl")
    monkeypatch.setenv(build.ENV_ASSETS_DIR, str(assets))
    own_etcd = fake_binaries(tmp_path / "elsewhere", "etcd") / "etcd"
    monkeypatch.setenv("TEST_ASSET_ETCD", str(own_etcd))

    found = build.locate(versions)
    assert found == build.Binaries(
        kube_apiserver=assets / "kube-apiserver", etcd=own_etcd, kubectl=assets / "kubectl"
    )


@pytest.mark.usefixtures("no_binary_env")
def test_a_cache_from_another_version_or_recipe_is_not_used(tmp_path: Path) -> None:
    versions = build.Versions(kubernetes="v1.37.2", etcd="v3.7.0")
    cached = fake_binaries(build.cache_dir(versions), "kube-apiserver", "etcd", "kubectl")
    (cached / "VERSIONS").write_text("kubernetes=v1.37.2\netcd=v3.7.0\nrecipe=0\n")
    with pytest.raises(build.ControlPlaneBinariesMissing):
        build.locate(versions)

    (cached / "VERSIONS").write_text(build.build_stamp(versions))
    assert build.locate(versions).kube_apiserver == cached / "kube-apiserver"
    assert cached.name == "k8s-v1.37.2-etcd-v3.7.0"


def test_pinned_versions_come_from_go_mod() -> None:
    versions = build.pinned_versions()
    assert re.fullmatch(r"v1\.\d+\.\d+", versions.kubernetes)
    assert re.fullmatch(r"v3\.\d+\.\d+", versions.etcd)
    # Each staging module is replaced by its v0.Y.Z twin of the same Kubernetes release.
    twin = f"v0.{versions.kubernetes_minor}.{versions.kubernetes.split('.')[2]}"
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => \S+ (v\S+)", build.GO_MOD.read_text(), re.M)
    assert len(replaced) > 20
    assert {version for _, version in replaced} == {twin}
