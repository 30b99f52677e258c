"""schedule.py: windows and time zones against an injected clock, one row per rule."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_operator.schedule import Window, asleep, parse_schedule, parse_window
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
