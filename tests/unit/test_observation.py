"""How a pass observes its endpoint from the shared ListEndpoints snapshot, and which listed
names are an endpoint's own."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from qa_operator.aws.observation import RegionObservations
from qa_operator.observation import (
    EndpointSummary,
    Look,
    ResyncTiming,
    how_to_observe,
    own_content_names,
    resync_timing,
)

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


class World:
    """SageMaker's endpoint list over time: the endpoint is deleted out of band at `changed_at`.
    ListEndpoints answers as of the clock when the snapshot begins."""

    def __init__(self, changed_at: float) -> None:
        self.changed_at = changed_at
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def list_endpoints(self, **_: object) -> dict[str, object]:
        if self.now >= self.changed_at:
            return {"Endpoints": []}
        entry = {
            "EndpointName": "ours",
            "EndpointStatus": "InService",
            "LastModifiedTime": T0,
            "CreationTime": T0,
        }
        return {"Endpoints": [entry]}


def worst_detection_lag(timing: ResyncTiming, others: int = 1, steps: int = 200) -> float:
    """The longest time from an out-of-band deletion to the first resync of the endpoint's
    resource that sees it, over changes at many points of the resync cycle, with other resources'
    resyncs (at other phases of the same grid) renewing the shared snapshot, as in one region.

    The worst case (others=1): another resource renews the snapshot just before the change, and
    ours starts while that snapshot is still young enough to be reused."""
    worst = 0.0
    grid = timing.interval
    for step in range(steps):
        changed_at = 10 * grid + grid * step / steps
        world = World(changed_at)
        region = RegionObservations(timing.snapshot_max_age, clock=world.clock)
        starts = [(k * grid, "ours") for k in range(30)]
        for other in range(others):
            phase = (changed_at - 1e-6 - other * timing.snapshot_max_age / others) % grid
            starts += [(k * grid + phase, "other") for k in range(30)]
        for at, who in sorted(starts):
            world.now = at
            snapshot = region.snapshot(world)
            if who == "ours" and at >= changed_at and "ours" not in snapshot.endpoints:
                worst = max(worst, at - changed_at)
                break
        else:
            raise AssertionError("never detected")
    return worst


@pytest.mark.parametrize("resync_seconds", [2.0, 20.0, 60.0, 300.0])
def test_an_out_of_band_change_shows_within_one_resync_interval(resync_seconds: float) -> None:
    timing = resync_timing(resync_seconds)
    assert timing.detection_lag == pytest.approx(resync_seconds)
    assert worst_detection_lag(timing) <= resync_seconds
    assert worst_detection_lag(timing, others=7) <= resync_seconds
    # The simulation does reach the bound: a snapshot renewed just before the change is reused.
    assert worst_detection_lag(timing) > resync_seconds * 0.98
    # What the timer did before: a resync every interval, on top of the snapshot's age.
    before = ResyncTiming(interval=resync_seconds, snapshot_max_age=resync_seconds / 10)
    assert worst_detection_lag(before) > resync_seconds * 1.05


def test_the_resync_timer_runs_on_the_timing_grid() -> None:
    """kopf's sharp timer keeps the grid the bound assumes (a plain one waits `interval` after
    each pass ends, so a slow pass pushes every later one back)."""
    import kopf

    from qa_operator import handlers

    timers: list[Any] = [
        h
        for h in kopf.get_default_registry()._spawning.get_all_handlers()
        if h.id.endswith("resync") and hasattr(h, "sharp")
    ]
    assert len(timers) == 1
    timer = timers[0]
    assert timer.sharp is True
    assert timer.interval == handlers.RESYNC.interval
    assert resync_timing(handlers.SETTINGS.resync_seconds) == handlers.RESYNC
