"""Pure: `spec.schedule` suspends and resumes an endpoint on a timetable.

`{timezone: Europe/Copenhagen, awake: ["Mon-Fri 08:00-19:00"]}`: awake inside any window, suspended
(suspend.py) outside them. A window is a day or day range (Mon..Sun, wrapping: Fri-Mon) and a
time range in that day, 00:00-24:00 at most; an end before its start runs past midnight into the
next day. The clock is injected, so every rule is a row of tests/unit/test_schedule.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WINDOW = re.compile(
    r"^(?P<first>[A-Z][a-z]{2})(?:-(?P<last>[A-Z][a-z]{2}))?\s+"
    r"(?P<start>\d{2}):(?P<start_min>\d{2})-(?P<end>\d{2}):(?P<end_min>\d{2})$"
)
MAX_WINDOWS = 20


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start_minute: int  # minutes since midnight
    end_minute: int  # up to 1440; before start_minute: ends the next day

    def contains(self, local: dt.datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start_minute < self.end_minute:
            return day in self.days and self.start_minute <= minute < self.end_minute
        # Past midnight: the evening of a listed day, or the morning after one.
        return (day in self.days and minute >= self.start_minute) or (
            (day - 1) % 7 in self.days and minute < self.end_minute
        )


@dataclass(frozen=True)
class Schedule:
    timezone: str
    awake: tuple[Window, ...]

    def is_awake(self, now: dt.datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        return any(window.contains(local) for window in self.awake)


def parse_window(text: str) -> Window:
    """ValueError with a message for anything but "Mon-Fri 08:00-19:00" and its kin."""
    found = WINDOW.match(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"{text!r} is not a window such as 'Mon-Fri 08:00-19:00'")
    first, last = found["first"], found["last"] or found["first"]
    if first not in DAYS or last not in DAYS:
        raise ValueError(f"{text!r}: days are {', '.join(DAYS)}")
    start = int(found["start"]) * 60 + int(found["start_min"])
    end = int(found["end"]) * 60 + int(found["end_min"])
    if int(found["start_min"]) > 59 or int(found["end_min"]) > 59 or start >= 1440 or end > 1440:
        raise ValueError(f"{text!r}: times run from 00:00 to 24:00")
    if start == end:
        raise ValueError(f"{text!r}: an empty window")
    a, b = DAYS.index(first), DAYS.index(last)
    days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    return Window(days, start, end)


def parse_schedule(raw: Mapping[str, Any] | None) -> Schedule | None:
    """ValueError(field, message) for bad input; None when no schedule is set."""
    if not raw:
        return None
    timezone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("schedule.timezone", f"{timezone!r} is not a known time zone") from exc
    awake = raw.get("awake")
    if not isinstance(awake, Sequence) or isinstance(awake, str) or not awake:
        raise ValueError("schedule.awake", "must list at least one window")
    if len(awake) > MAX_WINDOWS:
        raise ValueError("schedule.awake", f"at most {MAX_WINDOWS} windows")
    windows = []
    for item in awake:
        try:
            windows.append(parse_window(item))
        except ValueError as exc:
            raise ValueError("schedule.awake", str(exc)) from exc
    return Schedule(str(timezone), tuple(windows))


def asleep(schedule: Schedule | None, now: dt.datetime) -> bool:
    """Whether the schedule suspends the endpoint now (no schedule: never)."""
    return schedule is not None and not schedule.is_awake(now)
