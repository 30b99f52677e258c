"""HA (leader.py): replicas elect one leader on a Lease in the real API server, with the
operator's own RBAC; only the leader reconciles, and when it is killed another takes over with
nothing lost or created twice."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from devstack.processes import free_port
from qa_operator.leader import LeaseElector, Timing
from support.e2e import (
    apply,
    deployment,
    endpoint_observations,
    get,
    is_ready,
    owned,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.e2e
LEASE_NAMESPACE = "qa-operator"  # where manifests/10-rbac.yaml lets the operator hold Leases


def _leading(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == "qa_operator_leading"]
    return float(family.samples[0].value)


def _holder(cluster: Any, name: str) -> str:
    found = cluster.kubectl(
        "get", "lease", name, "-n", LEASE_NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}",
        check=False,
    )  # fmt: skip
    return str(found.stdout) if found.returncode == 0 else ""


def test_one_elector_holds_the_lease_until_it_goes_silent_or_releases(
    kube_cluster: Any, operator_kubeconfig: Path, namespace: str
) -> None:
    from kubernetes.client import CoordinationV1Api

    name, now = f"elect-{namespace}"[:63], [0.0]
    timing = Timing.for_lease(15)
    with kube_cluster.api_client(operator_kubeconfig) as client:
        api = CoordinationV1Api(client)

        def elector(me: str) -> LeaseElector:
            return LeaseElector(api, LEASE_NAMESPACE, name, me, timing, clock=lambda: now[0])

        a, b = elector("a"), elector("b")
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
        now[0] += 14
        assert a.try_acquire_or_renew()  # renewed: b sees a new record and starts counting again
        now[0] += 14
        assert not b.try_acquire_or_renew()
        now[0] += 14
        assert not b.try_acquire_or_renew()  # 14 s without a renewal: not yet a whole lease
        now[0] += 2
        assert b.try_acquire_or_renew()  # a silent for longer than the lease: b takes over
        assert _holder(kube_cluster, name) == "b"
        assert not a.try_acquire_or_renew()  # a's renewal (if it ever came back) is refused
        b.release()  # a graceful stop hands over at once
        assert a.try_acquire_or_renew() and _holder(kube_cluster, name) == "a"
        lease = api.read_namespaced_lease(name, LEASE_NAMESPACE)
        assert lease.spec is not None and lease.spec.lease_transitions == 2


def test_a_leader_whose_lease_is_taken_stops_within_its_renew_deadline(
    kube_cluster: Any, operator_kubeconfig: Path, namespace: str
) -> None:
    from kubernetes.client import CoordinationV1Api

    name, later = f"lost-{namespace}"[:63], [0.0]
    with kube_cluster.api_client(operator_kubeconfig) as client:
        api = CoordinationV1Api(client)
        leader = LeaseElector(api, LEASE_NAMESPACE, name, "a", Timing.for_lease(1.5))
        leader.acquire()
        lost = threading.Event()
        leader.keep(on_lost=lost.set)
        # A candidate whose clock says the lease ran out (as after a network partition of `a`).
        usurper = LeaseElector(
            api, LEASE_NAMESPACE, name, "b", Timing.for_lease(1.5), clock=lambda: later[0]
        )
        assert not usurper.try_acquire_or_renew()
        for _ in range(50):  # `a` may renew between b's reads: b starts counting again
            later[0] += 60
            if usurper.try_acquire_or_renew():
                break
        else:
            pytest.fail("b never saw the lease unrenewed for a whole lease duration")
        assert lost.wait(timeout=30), "the old leader kept going without its lease"
        assert _holder(kube_cluster, name) == "b"
        leader.release()  # not the holder any more: leaves b's lease alone
        assert _holder(kube_cluster, name) == "b"


def test_of_two_replicas_only_the_leader_acts_and_the_other_takes_over_when_it_is_killed(
    kube_cluster: Any, aws: Any, namespace: str, operator: Any, s3_model_uri: str
) -> None:
    lease = f"ha-{namespace}"[:63]
    election = {
        "QA_OPERATOR_LEADER_ELECTION": "on",
        "QA_OPERATOR_LEASE_NAME": lease,
        "QA_OPERATOR_LEASE_NAMESPACE": LEASE_NAMESPACE,
        "QA_OPERATOR_LEASE_SECONDS": "4",
    }
    ports = free_port(), free_port()
    leader = operator.start(
        POD_NAME="replica-a", QA_OPERATOR_METRICS_PORT=str(ports[0]), **election
    )
    wait_for("replica-a to lead", lambda: _holder(kube_cluster, lease).startswith("replica-a_"))
    standby = operator.start(
        POD_NAME="replica-b", QA_OPERATOR_METRICS_PORT=str(ports[1]), **election
    )

    apply(kube_cluster, namespace, deployment("first", s3_model_uri))
    first = wait_ready(kube_cluster, namespace, "first", operator)
    # Both replicas watch the same namespace; let the leader look a few more times, then check
    # that nothing was done twice (a second actor would have called each Create* again).
    describes = endpoint_observations(aws)
    wait_for("more resyncs", lambda: endpoint_observations(aws) >= describes + 3)
    creates = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")
    assert {op: aws.calls("sagemaker", op) for op in creates} == dict.fromkeys(creates, 1)
    assert _holder(kube_cluster, lease).startswith("replica-a_")
    assert standby.process.poll() is None
    # Both are scrape targets; each says whether it leads.
    assert [_leading(port) for port in ports] == [1, 0]

    leader.kill()  # SIGKILL: no release, the Lease simply stops being renewed
    apply(kube_cluster, namespace, deployment("second", s3_model_uri))
    second = wait_ready(kube_cluster, namespace, "second", operator, timeout=180)
    assert _holder(kube_cluster, lease).startswith("replica-b_")
    assert _leading(ports[1]) == 1

    describes = endpoint_observations(aws)
    wait_for("more resyncs", lambda: endpoint_observations(aws) >= describes + 3)
    assert {op: aws.calls("sagemaker", op) for op in creates} == dict.fromkeys(creates, 2)
    for obj in (first, second):
        assert {kind: len(names) for kind, names in owned(aws, obj["metadata"]["uid"]).items()} == {
            "endpoints": 1,
            "configs": 1,
            "models": 1,
        }
    assert is_ready(get(kube_cluster, namespace, "first"))  # resumed by the new leader, untouched
