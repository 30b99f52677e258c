"""schedule.py: windows and time zones against an injected clock, one row per rule."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_operator.schedule import (
    Window,
    asleep,
    parse_schedule,
    parse_window,
    seconds_until_transition,
)
from qa_operator.spec import SpecError, parse_spec

WORKDAYS = {"timezone": "Europe/Copenhagen", "awake": ["Mon-Fri 08:00-19:00"]}
NIGHTS = {"timezone": "UTC", "awake": ["Fri 22:00-02:00"]}
WEEKEND = {"timezone": "UTC", "awake": ["Sat-Sun 00:00-24:00"]}
WRAPPING = {"timezone": "UTC", "awake": ["Fri-Mon 10:00-11:00"]}


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# 2026-11-27 is a Friday; Copenhagen is UTC+1 in November (CET), UTC+2 in summer (CEST).
ROWS = [
    ("workday morning in Copenhagen", WORKDAYS, "2026-11-27T07:00", False),
    ("before 08:00 Copenhagen (06:59 UTC)", WORKDAYS, "2026-11-27T06:59", True),
    ("19:00 Copenhagen ends the window", WORKDAYS, "2026-11-27T18:00", True),
    ("18:59 Copenhagen is inside", WORKDAYS, "2026-11-27T17:59", False),
    ("saturday sleeps", WORKDAYS, "2026-11-28T12:00", True),
    ("summer time moves the window (07:00 CEST = 05:00 UTC... asleep)", WORKDAYS,
     "2026-06-05T05:30", True),
    ("summer time: 08:00 CEST = 06:00 UTC is awake", WORKDAYS, "2026-06-05T06:00", False),
    ("a window past midnight: Friday evening", NIGHTS, "2026-11-27T23:00", False),
    ("a window past midnight: Saturday small hours", NIGHTS, "2026-11-28T01:59", False),
    ("a window past midnight: over at 02:00", NIGHTS, "2026-11-28T02:00", True),
    ("a window past midnight: not Thursday night", NIGHTS, "2026-11-27T01:00", True),
    ("all day: the last minute of Sunday", WEEKEND, "2026-11-29T23:59", False),
    ("all day: Monday midnight sleeps", WEEKEND, "2026-11-30T00:00", True),
    ("a day range wrapping the week: Monday", WRAPPING, "2026-11-30T10:30", False),
    ("a day range wrapping the week: not Wednesday", WRAPPING, "2026-12-02T10:30", True),
]  # fmt: skip


@pytest.mark.parametrize(("name", "raw", "now", "sleeps"), ROWS, ids=[r[0] for r in ROWS])
def test_asleep(name: str, raw: dict[str, object], now: str, sleeps: bool) -> None:
    assert asleep(parse_schedule(raw), utc(now)) is sleeps


def test_no_schedule_never_sleeps() -> None:
    assert asleep(None, utc("2026-11-28T03:00")) is False
    assert parse_schedule(None) is None


def test_window_parsing() -> None:
    assert parse_window("Mon-Fri 08:00-19:00") == Window(frozenset(range(5)), 480, 1140)
    assert parse_window("Sun 22:00-06:00") == Window(frozenset({6}), 1320, 360)
    assert parse_window("Sat-Mon 00:00-24:00").days == frozenset({5, 6, 0})


@pytest.mark.parametrize(
    "text",
    ["Mon-Fri", "Mon-Fri 8:00-19:00", "Xyz 08:00-09:00", "Mon 24:00-01:00", "Mon 08:60-09:00",
     "Mon 08:00-08:00", "Mon 08:00-24:01", "monday 08:00-09:00"],
)  # fmt: skip
def test_bad_windows(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def test_spec_schedule_errors_name_the_field() -> None:
    raw = {"model": {"s3": {"uri": "s3://bucket/m/"}}, "endpoint": {"instanceType": "ml.m5.large"}}
    assert parse_spec({**raw, "schedule": WORKDAYS}).schedule == parse_schedule(WORKDAYS)
    for bad, field in (
        ({"timezone": "Mars/Olympus", "awake": ["Mon 08:00-09:00"]}, "schedule.timezone"),
        ({"awake": []}, "schedule.awake"),
        ({"awake": ["whenever"]}, "schedule.awake"),
    ):
        with pytest.raises(SpecError) as error:
            parse_spec({**raw, "schedule": bad})
        assert error.value.field_path == field


H = 3600.0
ALWAYS = {"timezone": "UTC", "awake": ["Mon-Sun 00:00-24:00"]}
ADJACENT = {"timezone": "UTC", "awake": ["Mon 08:00-12:00", "Mon 12:00-14:00"]}
NEW_YORK = {"timezone": "America/New_York", "awake": ["Mon-Fri 09:00-17:00"]}
# Copenhagen's clocks: 2026-03-29 01:00 UTC jumps 02:00 -> 03:00 local; 2026-10-25 01:00 UTC
# goes back 03:00 -> 02:00 local (the hour 02:00-03:00 happens twice).
SPRING = {"timezone": "Europe/Copenhagen", "awake": ["Sun 02:30-05:00"]}
AUTUMN = {"timezone": "Europe/Copenhagen", "awake": ["Sun 00:00-02:30"]}

TRANSITIONS = [
    ("asleep before a workday: wakes at 08:00 Copenhagen", WORKDAYS, "2026-11-30T06:30", 0.5 * H),
    ("awake: sleeps at 19:00 Copenhagen", WORKDAYS, "2026-11-30T10:00", 8 * H),
    ("Friday evening: wakes on Monday (the week wraps)", WORKDAYS, "2026-11-27T20:00", 59 * H),
    ("seconds count, not only minutes", WORKDAYS, "2026-11-30T06:59:30", 30.0),
    ("at the boundary itself: the next one", WORKDAYS, "2026-11-30T07:00", 11 * H),
    ("summer time: 08:00 CEST is 06:00 UTC", WORKDAYS, "2026-06-08T05:00", 1 * H),
    ("west of UTC: 09:00 EST Monday", NEW_YORK, "2026-11-27T22:30", 63.5 * H),
    ("adjacent windows are one stretch awake", ADJACENT, "2026-11-30T10:00", 4 * H),
    ("past midnight: Saturday 02:00", NIGHTS, "2026-11-28T01:00", 1 * H),
    ("past midnight: the next Friday night", NIGHTS, "2026-11-28T03:00", 163 * H),
    ("a window in the skipped hour starts when clocks jump", SPRING, "2026-03-29T00:30", 0.5 * H),
    ("the repeated hour: 02:30 summer time ends the window", AUTUMN, "2026-10-24T23:30", 1 * H),
    ("the repeated hour: clocks back to 02:00 wake it again", AUTUMN, "2026-10-25T00:45", 0.25 * H),
    ("the repeated hour: 02:30 winter time ends it for good", AUTUMN, "2026-10-25T01:00", 0.5 * H),
]  # fmt: skip


@pytest.mark.parametrize(("name", "raw", "now", "seconds"), TRANSITIONS)
def test_seconds_until_transition(
    name: str, raw: dict[str, object], now: str, seconds: float
) -> None:
    schedule = parse_schedule(raw)
    assert seconds_until_transition(schedule, utc(now)) == seconds
    # The state flips there, and not a second before.
    after = utc(now) + dt.timedelta(seconds=seconds)
    assert asleep(schedule, after) != asleep(schedule, utc(now))
    assert asleep(schedule, after - dt.timedelta(seconds=1)) == asleep(schedule, utc(now))


def test_no_transition_without_a_schedule_or_with_one_always_awake() -> None:
    assert seconds_until_transition(None, utc("2026-11-27T12:00")) is None
    assert seconds_until_transition(parse_schedule(ALWAYS), utc("2026-11-27T12:00")) is None
