"""Which keys of a pass's status patch would change the status: the rest is not sent."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.statuspatch import OwnWrites, merged, status_patch

READY = {"type": "Ready", "status": "True", "reason": "EndpointInService"}


@pytest.mark.parametrize(
    ("current", "wanted", "patch"),
    [
        pytest.param({}, {}, {}, id="nothing"),
        pytest.param({"phase": "Ready"}, {"phase": "Ready"}, {}, id="same-value"),
        pytest.param({"phase": "Creating"}, {"phase": "Ready"}, {"phase": "Ready"}, id="changed"),
        pytest.param({}, {"phase": "Ready"}, {"phase": "Ready"}, id="new-key"),
        pytest.param({}, {"failureReason": None}, {}, id="removing-an-absent-key"),
        pytest.param(
            {"failureReason": "x"}, {"failureReason": None}, {"failureReason": None}, id="removing"
        ),
        pytest.param({"conditions": [READY]}, {"conditions": [dict(READY)]}, {}, id="equal-list"),
        pytest.param(
            {"conditions": [READY]},
            {"conditions": [{**READY, "status": "False"}]},
            {"conditions": [{**READY, "status": "False"}]},
            id="changed-list",
        ),
        # A merge patch leaves a nested key it does not name, and removes one it sets to None:
        # the nested record {"cause": None} is already what the server holds without "cause".
        pytest.param(
            {"lastFailure": {"config": "c1", "generation": 2}},
            {"lastFailure": {"config": "c1", "generation": 2, "cause": None}},
            {},
            id="nested-none-already-absent",
        ),
        pytest.param(
            {"lastFailure": {"config": "c1", "generation": 2, "cause": "SmokeTest"}},
            {"lastFailure": {"config": "c1", "generation": 2, "cause": None}},
            {"lastFailure": {"config": "c1", "generation": 2, "cause": None}},
            id="nested-removal",
        ),
        pytest.param(
            {"modelPackage": {"uri": "s3://b/k", "digest": "d1"}},
            {"modelPackage": {"digest": "d2"}},
            {"modelPackage": {"digest": "d2"}},
            id="nested-change",
        ),
        pytest.param(
            {"phase": "Ready", "endpointStatus": "InService"},
            {"phase": "Ready", "endpointStatus": "Updating"},
            {"endpointStatus": "Updating"},
            id="only-what-changed",
        ),
    ],
)
def test_status_patch(
    current: dict[str, Any], wanted: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert status_patch(current, wanted) == patch
    # Sending only the patch leaves the status the whole of `wanted` would have.
    assert merged(current, patch) == merged(current, wanted)


CREATING = {"phase": "Creating", "supersededDeletedFor": None}
CLEANED = {"phase": "Ready", "supersededDeletedFor": "cfg-2"}


@pytest.mark.parametrize(
    ("writes", "body", "seen", "still_pending"),
    [
        pytest.param([], {"phase": "Creating"}, {"phase": "Creating"}, False, id="no-writes"),
        # The body predates the write: the pass plans from what the write made.
        pytest.param(
            [CLEANED],
            {"phase": "Creating"},
            {"phase": "Ready", "supersededDeletedFor": "cfg-2"},
            True,
            id="body-older-than-the-write",
        ),
        pytest.param(
            [CLEANED],
            {"phase": "Ready", "supersededDeletedFor": "cfg-2", "endpointStatus": "InService"},
            {"phase": "Ready", "supersededDeletedFor": "cfg-2", "endpointStatus": "InService"},
            False,
            id="write-landed",
        ),
        # Two unlanded writes apply in order; a None in the later one removes the earlier value.
        pytest.param(
            [CLEANED, CREATING],
            {"phase": "Ready"},
            {"phase": "Creating"},
            True,
            id="two-writes-in-order",
        ),
        pytest.param(
            [CREATING, CLEANED],
            {"phase": "Creating"},
            {"phase": "Ready", "supersededDeletedFor": "cfg-2"},
            True,
            id="first-landed-second-not",
        ),
        # Keys this operator did not write come from the body.
        pytest.param(
            [{"phase": "Ready"}],
            {"phase": "Creating", "endpointArn": "arn:x"},
            {"phase": "Ready", "endpointArn": "arn:x"},
            True,
            id="other-keys-from-the-body",
        ),
    ],
)
def test_a_pass_sees_its_own_writes(
    writes: list[dict[str, Any]], body: dict[str, Any], seen: dict[str, Any], still_pending: bool
) -> None:
    own = OwnWrites()
    for patch in writes:
        own.wrote("uid-1", patch)
    assert own.seen("uid-1", body) == seen
    assert own.seen("uid-2", body) == body, "another resource's writes are not laid over"
    # Until a body shows the writes, every pass sees them; then the body alone is the truth.
    assert own.seen("uid-1", body) == (seen if still_pending else body)
    assert own.seen("uid-1", seen) == seen
    assert own.seen("uid-1", body) == body


def test_empty_patches_are_not_pending_and_forget_drops_a_resource() -> None:
    own = OwnWrites()
    own.wrote("uid-1", {})
    assert own.seen("uid-1", {"phase": "Creating"}) == {"phase": "Creating"}
    own.wrote("uid-1", {"phase": "Ready"})
    own.forget("uid-1")
    assert own.seen("uid-1", {"phase": "Creating"}) == {"phase": "Creating"}
