"""ClusterRole aggregation for the test control plane, which runs no kube-controller-manager.

In a cluster, the controller manager's clusterrole-aggregation controller keeps the rules of every
ClusterRole that has an `aggregationRule` equal to the union of the rules of the ClusterRoles its
selectors match. `aggregate_cluster_roles` does that one step once, reading the selectors of the
API server's own bootstrap roles (`view`, `edit`, `admin`), so a wrong label on our roles still
leaves a user without the access. RBAC itself is then evaluated by the real API server.
"""

from __future__ import annotations

import json
from typing import Any


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector {selector}: only matchLabels, as the built-in roles")
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def aggregate_cluster_roles(cluster: Any) -> None:
    roles = json.loads(cluster.kubectl("get", "clusterroles", "-o", "json").stdout)["items"]
    for role in roles:
        selectors = (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []
        if not selectors:
            continue
        rules: list[dict[str, Any]] = []
        for other in roles:
            labels = other["metadata"].get("labels") or {}
            if other is not role and any(_matches(s, labels) for s in selectors):
                rules += [rule for rule in other.get("rules") or [] if rule not in rules]
        patch = json.dumps({"rules": rules})
        cluster.kubectl("patch", "clusterrole", role["metadata"]["name"], "-p", patch)
