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
