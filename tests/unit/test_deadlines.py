"""deadlines.py: durations, spec.endpoint.timeouts, and check_deadline, one row per branch."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from qa_operator.deadlines import Clock, check_deadline
from qa_operator.plan import Action, ObservedEndpoint, Plan, State
from qa_operator.spec import SpecError, parse_spec
from qa_operator.timeouts import Timeouts, parse_duration, parse_timeouts

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
DEFAULTS = (3600.0, 5400.0)
CONFIG = "ep-cfg-new"
CREATE = Plan(State.CREATING, "CreatingEndpoint", "creating", (Action.CREATE_ENDPOINT,))
UPDATE = Plan(State.UPDATING, "UpdatingEndpoint", "updating", (Action.UPDATE_ENDPOINT,))
WAIT = Plan(State.WAITING, "EndpointCreating", "waiting")
NO_TIMEOUTS = Timeouts()
READY = Plan(State.READY, "EndpointInService", "ready")


def endpoint(status: str) -> ObservedEndpoint:
    return ObservedEndpoint("ep", "arn:ep", status, CONFIG)


def clock(op: str = "Create", minutes_ago: float = 0, **kw: object) -> Clock:
    fields: dict[str, object] = {
        "operation": op,
        "config": CONFIG,
        "generation": 1,
        "started_at": T0 - dt.timedelta(minutes=minutes_ago),
    }
    fields.update(kw)
    return Clock(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60m", 3600), ("1h30m", 5400), ("90s", 90), ("2h", 7200), ("1m30s", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0m", "60", "1d", "m", "-5m", "1.5h", "5 m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_spec_timeouts_parse_and_bad_ones_name_the_field() -> None:
    base = {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    assert parse_spec(base).endpoint.timeouts == Timeouts()
    with_timeouts = {
        **base,
        "endpoint": {
            "instanceType": "ml.m5.large",
            "timeouts": {"create": "20m", "onTimeout": "Delete"},
        },
    }
    assert parse_spec(with_timeouts).endpoint.timeouts == Timeouts(1200.0, None, "Delete")
    for bad, field in (
        ({"update": "soon"}, "endpoint.timeouts.update"),
        ({"onTimeout": "Explode"}, "endpoint.timeouts.onTimeout"),
    ):
        with pytest.raises(SpecError) as error:
            parse_spec({**base, "endpoint": {"instanceType": "ml.m5.large", "timeouts": bad}})
        assert error.value.field_path == field
    with pytest.raises(ValueError):
        parse_timeouts({"create": 60})


@dataclass(frozen=True)
class Row:
    name: str
    plan: Plan
    endpoint: ObservedEndpoint | None
    previous: Clock | None
    expect_reason: str
    expect_actions: tuple[Action, ...] = ()
    expect_timed_out: bool | None = None  # None: no clock recorded
    timeouts: Timeouts = NO_TIMEOUTS
    generation: int = 1
    timed_out_now: bool = False


ROWS = [
    Row("create starts a clock", CREATE, None, None, "CreatingEndpoint",
        (Action.CREATE_ENDPOINT,), expect_timed_out=False),
    Row("update starts a clock", UPDATE, endpoint("InService"), None, "UpdatingEndpoint",
        (Action.UPDATE_ENDPOINT,), expect_timed_out=False),
    Row("creating within the default deadline waits", WAIT, endpoint("Creating"),
        clock(minutes_ago=59), "EndpointCreating", expect_timed_out=False),
    Row("creating past the default deadline times out", WAIT, endpoint("Creating"),
        clock(minutes_ago=61), "CreateTimedOut", expect_timed_out=True, timed_out_now=True),
    Row("the spec's shorter deadline wins", WAIT, endpoint("Creating"), clock(minutes_ago=11),
        "CreateTimedOut", expect_timed_out=True, timeouts=Timeouts(600.0), timed_out_now=True),
    Row("onTimeout Delete deletes the stuck endpoint", WAIT, endpoint("Creating"),
        clock(minutes_ago=11), "CreateTimedOut", (Action.DELETE_ENDPOINT,),
        expect_timed_out=True, timeouts=Timeouts(600.0, None, "Delete"), timed_out_now=True),
    Row("deleted on timeout: not created again", CREATE, None,
        clock(minutes_ago=20, timed_out=True, last_status="Creating"), "CreateTimedOut",
        expect_timed_out=True, timeouts=Timeouts(600.0, None, "Delete")),
    Row("deleting on timeout: not deleted twice", WAIT, endpoint("Deleting"),
        clock(minutes_ago=20, timed_out=True, last_status="Creating"), "CreateTimedOut",
        expect_timed_out=True, timeouts=Timeouts(600.0, None, "Delete")),
    Row("timed out and still creating: reported, no event again", WAIT, endpoint("Creating"),
        clock(minutes_ago=20, timed_out=True, last_status="Creating"), "CreateTimedOut",
        expect_timed_out=True, timeouts=Timeouts(600.0)),
    Row("timed out but InService after all: planned as usual", READY, endpoint("InService"),
        clock(minutes_ago=90, timed_out=True, last_status="Creating"), "EndpointInService"),
    Row("a new spec after a deleted timeout creates again", CREATE, None,
        clock(minutes_ago=20, timed_out=True, last_status="Creating"), "CreatingEndpoint",
        (Action.CREATE_ENDPOINT,), expect_timed_out=False, generation=2),
    Row("a new spec with a longer deadline lets a creating endpoint wait", WAIT,
        endpoint("Creating"), clock(minutes_ago=20, timed_out=True, last_status="Creating"),
        "EndpointCreating", expect_timed_out=False, timeouts=Timeouts(3600.0), generation=2),
    Row("updating past its deadline times out, never deleted", WAIT, endpoint("Updating"),
        clock("Update", minutes_ago=91), "UpdateTimedOut", expect_timed_out=True,
        timeouts=Timeouts(None, None, "Delete"), timed_out_now=True),
    Row("waiting with no clock (started elsewhere) starts one", WAIT, endpoint("Creating"),
        None, "EndpointCreating", expect_timed_out=False),
    Row("a clock of another config is not this one's", WAIT, endpoint("Creating"),
        clock(minutes_ago=90, config="ep-cfg-old"), "EndpointCreating", expect_timed_out=False),
    Row("in service: no clock", READY, endpoint("InService"), clock(minutes_ago=5),
        "EndpointInService"),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_check_deadline(row: Row) -> None:
    check = check_deadline(
        row.plan, row.endpoint, CONFIG, row.generation, row.previous, row.timeouts, DEFAULTS, T0
    )
    assert check.plan.reason == row.expect_reason
    assert check.plan.actions == row.expect_actions
    assert (None if check.clock is None else check.clock.timed_out) == row.expect_timed_out
    assert check.timed_out_now == row.timed_out_now
    if row.expect_reason.endswith("TimedOut"):
        assert check.plan.state is State.FAILED
        assert "Creating" in check.plan.message or "Updating" in check.plan.message


def test_the_timeout_message_is_the_same_on_every_pass() -> None:
    """No status patch for nothing on the resyncs after a timeout."""
    first = check_deadline(
        WAIT, endpoint("Creating"), CONFIG, 1, clock(minutes_ago=61), Timeouts(), DEFAULTS, T0
    )
    later = check_deadline(
        WAIT,
        endpoint("Creating"),
        CONFIG,
        1,
        first.clock,
        Timeouts(),
        DEFAULTS,
        T0 + dt.timedelta(minutes=7),
    )
    assert later.plan.message == first.plan.message
    assert later.clock == first.clock


def test_clock_round_trips_through_status_and_ignores_garbage() -> None:
    original = clock(minutes_ago=3, timed_out=True, last_status="Creating")
    restored = Clock.from_status(original.to_status())
    assert restored is not None
    assert restored.started_at == original.started_at.replace(microsecond=0)
    assert restored.timed_out and restored.last_status == "Creating"
    assert Clock.from_status({"operation": "Create", "startedAt": "yesterday"}) is None
    assert Clock.from_status(None) is None
