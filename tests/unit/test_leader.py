"""Who may write itself as the Lease holder (leader.py), and the timing derived from the lease."""

from __future__ import annotations

import socket

import pytest
import requests

from devstack.processes import free_port
from qa_operator.leader import LeaseRecord, Timing, identity, may_take, standby_health


@pytest.mark.parametrize(
    ("record", "unchanged_for_s", "expected"),
    [
        (None, 0.0, True),  # no Lease yet: create it
        (LeaseRecord(holder=None, duration_s=15, version="1"), 0.0, True),  # released
        (LeaseRecord(holder="", duration_s=15, version="1"), 0.0, True),
        (LeaseRecord(holder="me", duration_s=15, version="1"), 0.0, True),  # renew
        (LeaseRecord(holder="other", duration_s=15, version="1"), 0.0, False),
        (LeaseRecord(holder="other", duration_s=15, version="1"), 15.0, False),  # not yet over
        (LeaseRecord(holder="other", duration_s=15, version="1"), 15.1, True),  # presumed dead
    ],
)
def test_a_candidate_takes_the_lease_only_when_free_its_own_or_unrenewed_for_a_lease(
    record: LeaseRecord | None, unchanged_for_s: float, expected: bool
) -> None:
    assert may_take(record, "me", unchanged_for_s) is expected


def test_the_holder_gives_up_before_anyone_may_take_over() -> None:
    timing = Timing.for_lease(15)
    assert (timing.renew_deadline_s, timing.retry_s) == (10, 2)  # client-go's defaults
    assert timing.retry_s < timing.renew_deadline_s < timing.lease_s


def test_each_process_is_a_new_candidate_named_after_its_pod() -> None:
    first, second = (
        identity({"POD_NAME": "qa-operator-7d9"}),
        identity({"POD_NAME": "qa-operator-7d9"}),
    )
    assert first.startswith("qa-operator-7d9_") and second.startswith("qa-operator-7d9_")
    assert first != second


def test_a_standby_answers_its_liveness_path_and_frees_the_port_for_kopf() -> None:
    port = free_port()
    with standby_health(f"http://127.0.0.1:{port}/healthz"):
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    with socket.socket() as again:  # kopf's liveness server binds the same port next
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
