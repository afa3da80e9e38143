"""Schedule evaluation: is a room open at a given wall-clock instant? Pure; the instant is passed in.

Rules:

1. The instant is a timezone-aware datetime (UTC from the caller); it is converted to the schedule's
   zone with zoneinfo, so windows are local wall-clock times and follow DST changes.
2. A local date listed in ``bank_holidays`` counts as the day ``bank-holiday`` instead of its weekday.
3. A window whose end is before its start crosses midnight and belongs to the day it starts on; its
   part after midnight is open when the *previous* local date's day is in the window's days.
4. Windows are half-open: ``07:00-23:00`` is open at 07:00 and closed at 23:00.
"""

from __future__ import annotations

import datetime
import zoneinfo

from .model import Day, Schedule

__all__ = ["day_of", "describe", "is_open"]

_WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def day_of(schedule: Schedule, date: datetime.date) -> Day:
    """Rule 2: the schedule day a local date counts as."""
    if date in schedule.bank_holidays:
        return "bank-holiday"
    return _WEEKDAYS[date.weekday()]


def is_open(schedule: Schedule, at: datetime.datetime) -> bool:
    """Whether the room is staffed at the aware instant ``at`` (rules 1-4)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("schedule instants must be timezone-aware")
    local = at.astimezone(zoneinfo.ZoneInfo(schedule.timezone))
    minute = local.hour * 60 + local.minute + local.second / 60
    today = day_of(schedule, local.date())
    yesterday = day_of(schedule, local.date() - datetime.timedelta(days=1))
    for window in schedule.open:
        start, end = window.span
        if start < end:
            if today in window.days and start <= minute < end:
                return True
        else:
            if today in window.days and minute >= start:
                return True
            if yesterday in window.days and minute < end:
                return True
    return False


def describe(schedule: Schedule) -> str:
    """Human summary for simulations, e.g. ``07:00-23:00 every day Europe/London``."""
    parts = []
    for window in schedule.open:
        days = "every day" if set(window.days) >= set(_WEEKDAYS) else ",".join(window.days)
        parts.append(f"{window.hours} {days}")
    return "; ".join(parts) + f" {schedule.timezone}"
