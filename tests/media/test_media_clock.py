"""The absolute 20 ms schedule, driven by a hand-advanced clock."""

from __future__ import annotations

import random

import pytest

from gateway.media.clock import TickSchedule


def test_on_time_ticks_one_frame_each() -> None:
    s = TickSchedule(100.0)
    assert s.poll(100.0) == (1, 0)
    assert s.next_deadline() == pytest.approx(100.02)
    assert s.poll(100.019) == (0, 0)  # woke early: nothing
    assert s.poll(100.02) == (1, 0)
    assert s.next_deadline() == pytest.approx(100.04)


def test_late_wakeup_catches_up_one_extra_frame_per_tick() -> None:
    s = TickSchedule(0.0)
    s.poll(0.0)
    # the loop was blocked for 70 ms: ticks 1, 2, 3 are due at 0.07
    assert s.poll(0.07) == (2, 0)
    assert s.next_deadline() == pytest.approx(0.08)  # not immediately: no burst beyond one extra frame
    assert s.poll(0.08) == (2, 0)  # tick 3 (owed) and tick 4
    assert s.poll(0.1) == (1, 0)
    assert s.produced == 6


def test_far_behind_skips_and_counts() -> None:
    s = TickSchedule(0.0, max_backlog=10)
    s.poll(0.0)
    frames, skipped = s.poll(1.0)  # 50 ticks due
    assert (frames, skipped) == (2, 40)
    assert s.skipped == 40
    assert s.poll(1.02) == (2, 0)


def test_no_drift_over_an_hour_of_jittery_wakeups() -> None:
    rng = random.Random(1)
    s = TickSchedule(5.0)
    now = 5.0
    total = 0
    for _ in range(180_000):
        frames, skipped = s.poll(now)
        assert frames <= 2 and skipped == 0
        total += frames
        now = s.next_deadline() + rng.uniform(0, 0.004)  # every wake-up 0-4 ms late
    assert total == s.due(now) - (1 if s.produced < s.due(now) else 0) or total == s.produced
    assert s.tick_time(180_000) == pytest.approx(5.0 + 3600.0)
    assert s.produced >= 180_000 - 1


def test_tick_times_are_start_plus_n_intervals() -> None:
    s = TickSchedule(1.5)
    times = []
    now = 1.5
    for _ in range(5):
        s.poll(now)
        times.append(now)
        now = s.next_deadline()
    assert times == pytest.approx([1.5, 1.52, 1.54, 1.56, 1.58])
