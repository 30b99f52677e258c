"""Which keys of a pass's status patch would change the status: the rest is not sent."""

from __future__ import annotations

from typing import Any

import pytest

from qa_operator.statuspatch import merged, status_patch

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
