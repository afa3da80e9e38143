"""Schedules: local wall-clock windows in an IANA zone, DST changes, bank holidays, overnight windows."""

from __future__ import annotations

import datetime

import msgspec
import pytest

from gateway.dialplan.model import Schedule
from gateway.dialplan.schedule import day_of, describe, is_open

UTC = datetime.UTC


def schedule(**fields: object) -> Schedule:
    return msgspec.convert(fields, Schedule)


def utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


DAYTIME = schedule(open=[{"hours": "07:00-23:00"}])


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2026-11-22T02:10", False),  # the golden simulation: Sunday night, GMT
        ("2026-11-22T06:59:59", False),
        ("2026-11-22T07:00", True),  # half-open window: open at 07:00 ...
        ("2026-11-22T22:59:59", True),
        ("2026-11-22T23:00", False),  # ... closed at 23:00
        ("2026-07-01T06:30", True),  # BST: 06:30 UTC is 07:30 local
        ("2026-07-01T22:30", False),  # BST: 22:30 UTC is 23:30 local
        ("2026-07-01T05:59", False),
    ],
)
def test_london_daytime_window(instant: str, expected: bool) -> None:
    assert is_open(DAYTIME, utc(instant)) is expected


def test_dst_spring_forward_keeps_local_opening_time() -> None:
    # 2026-03-29: clocks go 01:00 GMT -> 02:00 BST. 07:00 local is 06:00 UTC that day, 07:00 UTC the day before.
    assert not is_open(DAYTIME, utc("2026-03-28T06:30"))
    assert is_open(DAYTIME, utc("2026-03-28T07:00"))
    assert not is_open(DAYTIME, utc("2026-03-29T05:59"))
    assert is_open(DAYTIME, utc("2026-03-29T06:00"))


def test_dst_fall_back_repeated_hour() -> None:
    # 2026-10-25: 02:00 BST -> 01:00 GMT, so local 01:00-02:00 happens twice (00:00-01:00 and 01:00-02:00 UTC).
    night = schedule(open=[{"hours": "01:00-01:30"}])
    assert is_open(night, utc("2026-10-25T00:15"))  # 01:15 BST
    assert not is_open(night, utc("2026-10-25T00:45"))  # 01:45 BST
    assert is_open(night, utc("2026-10-25T01:15"))  # 01:15 GMT, the second time round
    assert not is_open(night, utc("2026-10-25T01:45"))


def test_bank_holiday_replaces_the_weekday() -> None:
    weekdays = schedule(
        open=[{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00"},
              {"days": ["bank-holiday"], "hours": "10:00-14:00"}],
        bank_holidays=["2026-12-25", "2026-12-28"],
    )
    christmas = datetime.date(2026, 12, 25)  # a Friday
    assert day_of(weekdays, christmas) == "bank-holiday"
    assert not is_open(weekdays, utc("2026-12-25T09:00"))
    assert is_open(weekdays, utc("2026-12-25T11:00"))
    assert is_open(weekdays, utc("2026-12-24T09:00"))  # ordinary Thursday
    assert not is_open(weekdays, utc("2026-12-26T11:00"))  # Saturday
    assert not is_open(weekdays, utc("2026-12-28T09:00"))  # Monday, substitute bank holiday


def test_default_days_include_bank_holidays() -> None:
    every_day = schedule(open=[{"hours": "07:00-23:00"}], bank_holidays=["2026-12-25"])
    assert is_open(every_day, utc("2026-12-25T12:00"))


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    friday_night = schedule(open=[{"days": ["fri", "sat"], "hours": "22:00-04:00"}])
    assert is_open(friday_night, utc("2026-11-20T23:00"))  # Friday 23:00
    assert is_open(friday_night, utc("2026-11-21T03:59"))  # Saturday 03:59, Friday's window
    assert is_open(friday_night, utc("2026-11-22T03:00"))  # Sunday 03:00, Saturday's window
    assert not is_open(friday_night, utc("2026-11-23T03:00"))  # Monday 03:00: Sunday has no window
    assert not is_open(friday_night, utc("2026-11-20T03:00"))  # Friday 03:00: Thursday has no window


def test_whole_day_and_other_zones() -> None:
    always = schedule(open=[{"hours": "00:00-24:00"}])
    assert is_open(always, utc("2026-06-01T23:59:59"))
    sydney = schedule(timezone="Australia/Sydney", open=[{"hours": "09:00-17:00"}])
    assert is_open(sydney, utc("2026-06-01T00:00"))  # 10:00 AEST
    assert not is_open(sydney, utc("2026-06-01T12:00"))  # 22:00 AEST


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(DAYTIME, datetime.datetime(2026, 11, 22, 2, 10))


def test_non_utc_aware_instants_work() -> None:
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert is_open(DAYTIME, datetime.datetime(2026, 11, 22, 8, 30, tzinfo=paris))  # 07:30 London


def test_describe() -> None:
    assert describe(DAYTIME) == "07:00-23:00 every day Europe/London"


@pytest.mark.parametrize(
    ("hours", "why"),
    [
        ("7:00-23:00", "hours must look like 07:00-23:00, got '7:00-23:00'"),
        ("07:00-07:00", "hours '07:00-07:00' is an empty window"),
        ("07:00-24:30", "hours '07:00-24:30' ends after 24:00"),
        ("24:00-01:00", "hours must look like 07:00-23:00, got '24:00-01:00'"),
    ],
)
def test_bad_hours(hours: str, why: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=why.replace("(", r"\(")):
        schedule(open=[{"hours": hours}])
