"""adoption.py: what a pass does about an endpoint it did not create, one row per branch."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_operator.adoption import AdoptionPolicy, plan_adoption
from qa_operator.desired import Owner, is_owned_by, owner_tags
from qa_operator.plan import ObservedEndpoint
from qa_operator.spec import SpecError, parse_spec

OWNER = Owner("ns", "squad", "uid-1")
NOW = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)
HANDMADE = ObservedEndpoint(
    "handmade", "arn:ep", "InService", "handmade-cfg", tags={"team": "qa"}, owned=False
)
OURS = ObservedEndpoint("handmade", "arn:ep", "InService", "cfg", tags=owner_tags(OWNER))
OTHER_RESOURCE = ObservedEndpoint(
    "handmade", "arn:ep", "InService", "cfg",
    tags=owner_tags(Owner("ns", "other", "uid-2")), owned=False,
)  # fmt: skip

ROWS = [
    # name, policy, observed, adopts, blocked
    ("Never keeps the conflict", "Never", HANDMADE, False, False),
    ("Adopt takes over a hand-made endpoint", "Adopt", HANDMADE, True, False),
    ("AdoptOrCreate takes over a hand-made endpoint", "AdoptOrCreate", HANDMADE, True, False),
    ("Adopt with nothing there is blocked", "Adopt", None, False, True),
    ("AdoptOrCreate with nothing there creates", "AdoptOrCreate", None, False, False),
    ("Never with nothing there creates", "Never", None, False, False),
    ("already ours: nothing to do", "Adopt", OURS, False, False),
    ("another resource's endpoint is never taken", "AdoptOrCreate", OTHER_RESOURCE, False, False),
]


@pytest.mark.parametrize(("name", "policy", "observed", "adopts", "blocked"), ROWS)
def test_plan_adoption(
    name: str,
    policy: AdoptionPolicy,
    observed: ObservedEndpoint | None,
    adopts: bool,
    blocked: bool,
) -> None:
    step = plan_adoption(policy, observed, "handmade", OWNER, NOW)
    assert (step.missing is not None) is blocked
    assert bool(step.tags_to_set) is adopts
    assert (step.record is not None) is adopts
    if adopts:
        assert step.endpoint is not None and step.endpoint.owned
        assert is_owned_by(step.endpoint.tags, OWNER)
        assert step.endpoint.tags["team"] == "qa"  # the tags it had are kept
        assert step.record == {
            "endpointArn": "arn:ep",
            "endpointConfigName": "handmade-cfg",
            "endpointStatus": "InService",
            "adoptedAt": "2026-11-27T09:30:00Z",
        }
    else:
        assert step.endpoint == observed


def test_spec_adoption_policy() -> None:
    raw = {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    assert parse_spec(raw).adoption == "Never"
    assert parse_spec({**raw, "adoption": {"policy": "AdoptOrCreate"}}).adoption == "AdoptOrCreate"
    with pytest.raises(SpecError) as error:
        parse_spec({**raw, "adoption": {"policy": "Steal"}})
    assert error.value.field_path == "adoption.policy"
