"""The install manifests as `kubectl apply -f manifests/` reads them: files in name order."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from qa_operator.handlers import GROUP, PLURAL
from qa_operator.policy import Policy, parse_policy

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_the_namespace_is_created_before_anything_that_lives_in_it() -> None:
    docs = _documents()
    assert docs[0]["kind"] == "Namespace"
    namespace = docs[0]["metadata"]["name"]
    for doc in docs[1:]:
        meta = doc["metadata"]
        assert isinstance(meta, dict)
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert meta.get("namespace") == namespace, doc["kind"]


def test_the_deployment_runs_as_the_service_account_that_rbac_binds() -> None:
    docs = {str(doc["kind"]): doc for doc in _documents()}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    subjects = docs["ClusterRoleBinding"]["subjects"]
    assert {
        "kind": "ServiceAccount",
        "name": pod["serviceAccountName"],
        "namespace": "qa-operator",
    } in subjects


OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "qa_operator"
Grants = dict[tuple[str, str], set[str]]

# What kopf itself needs beyond the handlers' resource, whatever the handlers do (kopf 1.45,
# `kopf run --standalone`: no peering objects).
KOPF_RUNTIME: dict[tuple[str, str], dict[str, str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {
        "list": "kopf's resource observer lists CRDs to find the served resources",
        "watch": "... and watches them, so a CRD installed later is noticed without a restart",
    },
    ("", "namespaces"): {
        "list": "with `qa-operator run --namespace PATTERN`, kopf lists namespaces to match it",
        "watch": "... and watches them for namespaces created later",
    },
}


def _handler_grants() -> Grants:
    """The verbs derived from what handlers.py does with the Kubernetes API (through kopf)."""
    source = (OPERATOR / "handlers.py").read_text()
    tree = ast.parse(source)
    watched: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith(
            ("kopf.on.", "kopf.timer")
        ):
            names = [arg.id for arg in node.args if isinstance(arg, ast.Name)]
            if names[:1] == ["GROUP"]:
                watched.add((GROUP, PLURAL))
    grants: Grants = {}
    for group, plural in watched:
        # Handlers and timers are fed by kopf's list+watch; kopf writes its finalizer and its
        # progress/diff-base annotations with patch (never update, never a plain get).
        grants[(group, plural)] = {"list", "watch", "patch"}
        if "patch.status" in source:
            grants[(group, f"{plural}/status")] = {"patch"}  # the one status patch per pass
    if "kopf.event(" in source or "settings.posting" in source:
        grants[("", "events")] = {"create"}  # kopf posts core/v1 Events (not events.k8s.io)
    return grants


def _granted() -> Grants:
    role = next(
        doc
        for doc in _documents()
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "qa-operator"
    )
    grants: Grants = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_only_handlers_talk_to_kubernetes_so_the_derivation_sees_every_call() -> None:
    for path in OPERATOR.rglob("*.py"):
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (
                node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
            )
        }
        # leader.py holds the Lease; test_leader_election_rbac_is_what_leader_py_calls checks it.
        assert "kubernetes" not in imported or path.name == "leader.py", path
        assert "kopf" not in imported or path.name in ("handlers.py", "cli.py"), path


def test_rbac_grants_exactly_the_verbs_the_operator_uses() -> None:
    used = _handler_grants()
    for key, verbs in KOPF_RUNTIME.items():
        used.setdefault(key, set()).update(verbs)
    granted = _granted()
    assert granted == used, (
        f"granted but unused: { {k: granted[k] - used.get(k, set()) for k in granted} }; "
        f"used but not granted: { {k: used[k] - granted.get(k, set()) for k in used} }"
    )


def test_the_policy_configmap_is_mounted_where_the_operator_reads_it_and_parses() -> None:
    docs = _documents()
    configmaps = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ConfigMap"}
    pod = next(doc for doc in docs if doc["kind"] == "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    policy_file = Path(env["QA_OPERATOR_POLICY_FILE"])
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(policy_file.parent)]
    # A subPath mount never sees the ConfigMap's updates: the policy would not reload.
    assert "subPath" not in mount and mount.get("readOnly") is True
    source = volumes[mount["name"]]["configMap"]
    assert source["name"] == "qa-operator-policy" and "optional" not in source
    text = configmaps["qa-operator-policy"]["data"][policy_file.name]
    assert parse_policy(text, "qa-operator-policy") == Policy(source="qa-operator-policy")
    # The commented example (single-# lines; ## lines explain) is itself a valid policy.
    example = "\n".join(
        line.removeprefix("# ") for line in text.splitlines() if not line.startswith("##")
    )
    assert parse_policy(example).for_namespace("team-a").s3_sources == ("s3://team-a-models/",)


AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def _user_roles() -> dict[str, dict[str, Any]]:
    """The ClusterRoles that join Kubernetes' built-in view/edit/admin by aggregation labels."""
    return {
        doc["metadata"]["name"]: doc
        for doc in _documents()
        if doc["kind"] == "ClusterRole"
        and any(label.startswith(AGGREGATE) for label in doc["metadata"].get("labels", {}))
    }


def _user_grants(tier: str) -> Grants:
    grants: Grants = {}
    for role in _user_roles().values():
        if role["metadata"]["labels"].get(AGGREGATE + tier) == "true":
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_namespace_viewers_read_and_editors_change_deployments_but_never_write_status() -> None:
    read = {"get", "list", "watch"}
    write = {"create", "update", "patch", "delete", "deletecollection"}
    resource, status = (GROUP, PLURAL), (GROUP, f"{PLURAL}/status")
    assert _user_grants("view") == {resource: read, status: read}
    # edit and admin hold view's rules too, whether or not the cluster aggregates transitively.
    for tier in ("edit", "admin"):
        assert _user_grants(tier) == {resource: read | write, status: read}, tier
    # The operator's own role is no user role: binding `edit` must not grant it.
    assert "qa-operator" not in _user_roles()


def test_the_metrics_service_reaches_the_port_the_operator_serves_on() -> None:
    docs = _documents()
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "qa-operator"
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["metrics"] == int(config["data"]["QA_OPERATOR_METRICS_PORT"])
    (port,) = service["spec"]["ports"]
    # A ServiceMonitor names the port: `metrics`, routed to the container's port of that name.
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


# kubernetes-client method prefixes -> the RBAC verb each needs.
CLIENT_VERBS = {
    "read": "get",
    "list": "list",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
}


def test_leader_election_rbac_is_what_leader_py_calls() -> None:
    called = {
        node.attr.split("_", 1)[0]
        for node in ast.walk(ast.parse((OPERATOR / "leader.py").read_text()))
        if isinstance(node, ast.Attribute) and node.attr.endswith("_namespaced_lease")
    }
    used = {CLIENT_VERBS[prefix] for prefix in called}
    docs = _documents()
    (role,) = [d for d in docs if d["kind"] == "Role"]
    (rule,) = role["rules"]
    assert (rule["apiGroups"], rule["resources"]) == (["coordination.k8s.io"], ["leases"])
    assert set(rule["verbs"]) == used == {"get", "create", "update"}
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "qa-operator", "namespace": "qa-operator"}
    ]
    # The Lease lives where the pods run: POD_NAMESPACE is the Role's namespace.
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def _kustomization(directory: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((directory / "Kustomization").read_text())
    return found


def test_the_kustomize_base_holds_every_manifest_and_the_crds() -> None:
    base = _kustomization(MANIFESTS)
    files = sorted(path.name for path in MANIFESTS.glob("*.yaml"))
    assert base["resources"] == ["../crds", *files]  # a new manifest file must be listed too
    crds = MANIFESTS.parent / "crds"
    assert _kustomization(crds)["resources"] == sorted(p.name for p in crds.glob("*.yaml"))


def test_the_kustomize_images_entry_names_the_deployments_image() -> None:
    (entry,) = _kustomization(MANIFESTS)["images"]
    deployment = next(doc for doc in _documents() if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    name, _, tag = container["image"].rpartition(":")
    assert (entry["name"], entry["newTag"]) == (name, tag)
