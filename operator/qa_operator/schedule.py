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
# How far ahead the next transition is looked for: a week, and a day for the wrap.
LOOKAHEAD = dt.timedelta(days=8)


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


def seconds_until_transition(schedule: Schedule | None, now: dt.datetime) -> float | None:
    """Seconds from `now` to the schedule's next change between awake and asleep; None when it
    never changes (no schedule, or windows that cover the whole week).

    The state is a function of the local wall clock, so it can change only where the clock
    reaches a window's start or end (both instants of an hour that daylight saving repeats) or
    jumps over one (the gap when clocks go forward: the change is at the jump). Those instants in
    the next eight days are the candidates; the first whose state differs from now's is the one.
    """
    if schedule is None:
        return None
    zone = ZoneInfo(schedule.timezone)
    now = now.astimezone(dt.UTC)
    local_today = now.astimezone(zone).date()
    candidates: set[dt.datetime] = set(_offset_changes(zone, now, LOOKAHEAD))
    minutes = {m for w in schedule.awake for m in (w.start_minute, w.end_minute)}
    for day in range(-1, LOOKAHEAD.days + 1):
        date = local_today + dt.timedelta(days=day)
        for minute in minutes:
            wall = dt.datetime.combine(date, dt.time(), tzinfo=zone) + dt.timedelta(minutes=minute)
            for fold in (0, 1):
                candidates.add(wall.replace(fold=fold).astimezone(dt.UTC))
    awake_now = schedule.is_awake(now)
    for instant in sorted(c for c in candidates if now < c <= now + LOOKAHEAD):
        if schedule.is_awake(instant) != awake_now:
            return (instant - now).total_seconds()
    return None


def _offset_changes(zone: ZoneInfo, start: dt.datetime, span: dt.timedelta) -> list[dt.datetime]:
    """The instants in (start, start + span] where the zone's UTC offset changes, to the second
    (rounded up: the first whole second on the new offset)."""
    found = []
    step = dt.timedelta(hours=1)
    at = start
    while at < start + span:
        after = at + step
        before_offset = at.astimezone(zone).utcoffset()
        if before_offset != after.astimezone(zone).utcoffset():
            low, high = at, after
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == before_offset:
                    low = middle
                else:
                    high = middle
            whole = high.replace(microsecond=0)
            found.append(whole if whole == high else whole + dt.timedelta(seconds=1))
        at = after
    return found


def asleep(schedule: Schedule | None, now: dt.datetime) -> bool:
    """Whether the schedule suspends the endpoint now (no schedule: never)."""
    return schedule is not None and not schedule.is_awake(now)
