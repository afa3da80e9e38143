"""Help-point liveness with hand-advanced time: thresholds, silence rule, reasons."""

from __future__ import annotations

from gateway.calls.liveness import Liveness, State


def make() -> Liveness:
    live = Liveness(grace=60.0, fail_threshold=3, ok_threshold=2)
    live.add("hp-a", 30.0, 0.0)
    return live


def test_never_seen_goes_down_after_interval_plus_grace():
    live = make()
    assert live.check("hp-a", 89.9) is None
    change = live.check("hp-a", 90.0)
    assert change is not None and change.new is State.DOWN and "never seen" in change.reason


def test_register_brings_it_up_at_once_and_resets_the_silence_clock():
    live = make()
    change = live.registered("hp-a", 10.0)
    assert change is not None and (change.old, change.new) == (State.UNKNOWN, State.UP)
    assert live.check("hp-a", 99.9) is None
    assert live.check("hp-a", 100.0).new is State.DOWN


def test_one_lost_probe_does_not_flap_three_do():
    live = make()
    live.registered("hp-a", 0.0)
    assert live.due(0.0) == ["hp-a"]
    assert live.due(0.0) == []  # not returned twice while the probe is out
    assert live.probe_failed("hp-a", 32.0, "timeout") is None
    assert live.state("hp-a")[0] is State.UP
    live.probe_answered("hp-a", 33.0, 200)
    assert live.probe_failed("hp-a", 70.0, "timeout") is None
    assert live.probe_failed("hp-a", 100.0, "timeout") is None
    change = live.probe_failed("hp-a", 130.0, "timeout")
    assert change is not None and change.new is State.DOWN and "3 probes failed" in change.reason


def test_coming_back_needs_two_good_probes():
    live = make()
    for t in (10.0, 40.0, 70.0):
        live.probe_failed("hp-a", t, "no registered contact")
    assert live.state("hp-a")[0] is State.DOWN
    assert live.probe_answered("hp-a", 100.0, 404) is None  # any answer proves life, but one is not enough
    change = live.probe_answered("hp-a", 130.0, 200)
    assert change is not None and change.new is State.UP and "OPTIONS (200)" in change.reason


def test_next_deadline_is_the_earliest_probe_or_silence_limit():
    live = make()
    assert live.next_deadline() == 0.0
    live.due(0.0)
    assert live.next_deadline() == 90.0


def test_one_lost_probe_at_real_timing_does_not_trip_the_silence_rule():
    # interval 60 s, Timer F 32 s: answered at 0, the probe at 60 is lost (fails at 92), the one at
    # 152 is answered.  The unit was silent 152 s > interval + grace, but one lost UDP packet must
    # not page anybody: only fail_threshold failures in a row, or no probe outcome at all, mean down.
    live = Liveness(grace=60.0, fail_threshold=3, ok_threshold=2)
    live.add("hp-a", 60.0, 0.0)
    live.registered("hp-a", 0.0)
    assert live.due(0.0) == ["hp-a"]
    live.probe_answered("hp-a", 0.1, 200)
    assert live.due(60.1) == ["hp-a"]
    assert live.probe_failed("hp-a", 92.1, "no answer to OPTIONS") is None
    for t in (120.1, 150.0):
        assert live.check_all(t) == []
    assert live.state("hp-a")[0] is State.UP
    assert live.due(152.1) == ["hp-a"]
    assert live.probe_answered("hp-a", 152.2, 200) is None
    assert live.state("hp-a")[0] is State.UP


def test_lost_probes_at_real_timing_still_go_down_at_the_threshold():
    live = Liveness(grace=60.0, fail_threshold=3, ok_threshold=2)
    live.add("hp-a", 60.0, 0.0)
    live.registered("hp-a", 0.0)
    live.due(0.0)
    live.probe_answered("hp-a", 0.1, 200)
    changes = []
    t = 60.1
    for _ in range(3):
        assert live.due(t) == ["hp-a"]
        change = live.probe_failed("hp-a", t + 32.0, "no answer to OPTIONS")
        changes += [c for c in (change, *live.check_all(t + 32.0)) if c is not None]
        t += 32.0 + 60.0
    assert [(c.new, c.reason.split(":")[0]) for c in changes] == [(State.DOWN, "3 probes failed")]


def test_a_prober_that_reports_nothing_still_trips_the_silence_rule():
    live = Liveness(grace=60.0, fail_threshold=3, ok_threshold=2)
    live.add("hp-a", 60.0, 0.0)
    live.registered("hp-a", 0.0)
    assert live.due(0.0) == ["hp-a"]  # sent, but no answer and no timeout ever reported
    assert live.check("hp-a", 119.9) is None
    assert live.check("hp-a", 120.0).new is State.DOWN


def test_options_interval_zero_means_never_probed():
    live = Liveness(grace=60.0)
    live.add("hp-off", 0.0, 0.0)
    live.registered("hp-off", 0.0)
    assert live.due(0.0) == []
    assert live.due(1000.0) == []
    assert live.next_deadline() == 60.0  # only the silence rule is left to wake the shell for


def test_unprobed_unit_stays_up_while_its_registration_lasts():
    live = Liveness(grace=60.0)
    live.add("hp-off", 0.0, 0.0)
    assert live.registered("hp-off", 0.0, expires=600.0).new is State.UP
    assert live.check_all(659.9) == []
    assert live.next_deadline() == 660.0
    assert live.registered("hp-off", 590.0, expires=600.0) is None  # refreshed in time: no flap
    assert live.check_all(1000.0) == []
    change = live.check("hp-off", 1250.0)
    assert change is not None and change.new is State.DOWN
