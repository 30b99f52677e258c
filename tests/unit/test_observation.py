"""How a pass observes its endpoint from the shared ListEndpoints snapshot, and which listed
names are an endpoint's own."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_operator.observation import EndpointSummary, Look, how_to_observe, own_content_names

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
IN_SERVICE = EndpointSummary("InService", T0, T0)
MODIFIED = EndpointSummary("InService", T0 + dt.timedelta(seconds=1), T0)
UPDATING = EndpointSummary("Updating", T0 + dt.timedelta(seconds=1), T0)
RECREATED = EndpointSummary("InService", T0, T0 + dt.timedelta(seconds=5))
FAILED = EndpointSummary("Failed", T0 + dt.timedelta(seconds=1), T0)


@pytest.mark.parametrize(
    ("listed", "described", "changing", "after_write", "look"),
    [
        pytest.param(IN_SERVICE, IN_SERVICE, False, True, Look.REUSE, id="unchanged-resync"),
        pytest.param(IN_SERVICE, IN_SERVICE, True, True, Look.DESCRIBE, id="changing-pass"),
        pytest.param(IN_SERVICE, IN_SERVICE, False, False, Look.DESCRIBE, id="listed-before-write"),
        pytest.param(None, IN_SERVICE, False, False, Look.DESCRIBE, id="unlisted-before-write"),
        pytest.param(None, IN_SERVICE, False, True, Look.ABSENT, id="deleted-out-of-band"),
        pytest.param(None, None, False, True, Look.ABSENT, id="never-existed"),
        pytest.param(IN_SERVICE, None, False, True, Look.DESCRIBE, id="never-described"),
        pytest.param(MODIFIED, IN_SERVICE, False, True, Look.DESCRIBE, id="last-modified-moved"),
        pytest.param(UPDATING, IN_SERVICE, False, True, Look.DESCRIBE, id="status-changed"),
        pytest.param(UPDATING, UPDATING, False, True, Look.DESCRIBE, id="transitional"),
        pytest.param(RECREATED, IN_SERVICE, False, True, Look.DESCRIBE, id="recreated-same-name"),
        pytest.param(FAILED, FAILED, False, True, Look.REUSE, id="failed-and-unchanged"),
    ],
)
def test_how_to_observe(
    listed: EndpointSummary | None,
    described: EndpointSummary | None,
    changing: bool,
    after_write: bool,
    look: Look,
) -> None:
    assert (
        how_to_observe(listed, described, changing=changing, listed_after_write=after_write) is look
    )


def test_own_content_names_match_the_exact_stem() -> None:
    names = [
        "default-qa-1-0123456789",  # qa-1's
        "default-qa-10-0123456789",  # qa-10's: NameContains "default-qa-1" matches it too
        "default-qa-1-x-0123456789",  # qa-1-x's
        "default-qa-1-01234",  # not a content name
        "other-default-qa-1-0123456789",  # contains the stem, does not start with it
        "default-qa-1-abcdefabcd",
    ]
    assert own_content_names("default-qa-1", names, 10) == [
        "default-qa-1-0123456789",
        "default-qa-1-abcdefabcd",
    ]
