"""HeapPolicy: when the service freezes the heap and when it collects in full."""

from __future__ import annotations

from gateway.calls.heap import HeapAction, HeapPolicy


class Frozen:
    """A frozen count that records how often it was asked (counting walks every frozen object)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.asked = 0

    def __call__(self) -> int:
        self.asked += 1
        return self.value


def test_freezes_every_interval_under_load() -> None:
    policy = HeapPolicy(freeze_interval=0.5, check_interval=5.0)
    frozen = Frozen(10)
    actions = [policy.decide(t / 4, calls_started=t, frozen=frozen) for t in range(9)]  # 0 .. 2 s
    assert actions == [HeapAction.FREEZE, HeapAction.NOTHING, HeapAction.FREEZE, HeapAction.NOTHING,
                       HeapAction.FREEZE, HeapAction.NOTHING, HeapAction.FREEZE, HeapAction.NOTHING,
                       HeapAction.FREEZE]
    assert frozen.asked == 1  # only the first load check, not every tick


def test_quiet_moment_collects_once_the_heap_grew() -> None:
    policy = HeapPolicy(quiet_interval=10.0, min_growth=100, quiet_after=0.0)
    assert policy.decide(0.0, calls_started=0, frozen=Frozen(50)) is HeapAction.FREEZE  # too little to collect
    assert policy.decide(5.0, calls_started=0, frozen=Frozen(500)) is not HeapAction.COLLECT  # interval not over
    assert policy.decide(10.0, calls_started=0, frozen=Frozen(500)) is HeapAction.COLLECT
    policy.collected(120)
    # Right after, nothing is due even though the gateway is still quiet.
    assert policy.decide(10.25, calls_started=0, frozen=Frozen(130)) is HeapAction.NOTHING
    # Growth counts from the live heap left by the last collection.
    assert policy.decide(21.0, calls_started=0, frozen=Frozen(200)) is not HeapAction.COLLECT
    assert policy.decide(32.0, calls_started=0, frozen=Frozen(221)) is HeapAction.COLLECT


def test_never_collects_mid_load_below_the_bound() -> None:
    policy = HeapPolicy(max_frozen=1000, min_growth=10)
    for t in range(100):
        assert policy.decide(float(t), calls_started=t, frozen=Frozen(900)) is not HeapAction.COLLECT


def test_collects_mid_load_beyond_the_bound() -> None:
    policy = HeapPolicy(max_frozen=1000, check_interval=5.0)
    assert policy.decide(0.0, calls_started=5, frozen=Frozen(10)) is HeapAction.FREEZE
    frozen = Frozen(5000)
    assert policy.decide(1.0, calls_started=5, frozen=frozen) is not HeapAction.COLLECT  # not checked yet
    assert frozen.asked == 0
    assert policy.decide(5.0, calls_started=5, frozen=frozen) is HeapAction.COLLECT


def test_short_calls_between_two_looks_are_not_quiet() -> None:
    policy = HeapPolicy(quiet_interval=0.0, quiet_after=2.0, min_growth=1)
    frozen = Frozen(10**6)
    for tick in range(40):  # a new call every look, 0.25 s apart: never quiet, never a full collection
        assert policy.decide(tick / 4, calls_started=tick, frozen=frozen) is not HeapAction.COLLECT
    assert policy.decide(10.0 + 2.0, calls_started=39, frozen=frozen) is HeapAction.COLLECT


def test_a_call_in_progress_is_never_paused_for_a_quiet_collection() -> None:
    """One long call and no new ones: not quiet (a full collection would be a gap in its audio)."""
    policy = HeapPolicy(quiet_interval=0.0, quiet_after=2.0, min_growth=1, max_frozen=10**9)
    policy.collected(100)
    up = [1]
    for t in range(60):
        assert policy.decide(float(t), calls_started=1, frozen=Frozen(10**6),
                             in_progress=lambda: up[0]) is not HeapAction.COLLECT
    up[0] = 0  # the call ended: now the gateway is quiet
    assert policy.decide(61.0, calls_started=1, frozen=Frozen(10**6), in_progress=lambda: up[0]) \
        is HeapAction.COLLECT


def test_calls_held_raise_the_bound_under_load() -> None:
    """Growth that the calls held account for is live data: no pause to walk it; beyond it, collect."""
    policy = HeapPolicy(max_frozen=1000, per_call=100, check_interval=5.0)
    policy.collected(0)
    held = [50]  # 50 calls up or lingering: 1000 + 50 * 100 = 6000 allowed
    assert policy.decide(0.0, calls_started=1, frozen=Frozen(5900), held=lambda: held[0]) is not HeapAction.COLLECT
    assert policy.decide(5.0, calls_started=2, frozen=Frozen(5900), held=lambda: held[0]) is not HeapAction.COLLECT
    held[0] = 10  # the calls ended and were forgotten; the memory did not come back: collect
    assert policy.decide(10.0, calls_started=3, frozen=Frozen(5900), held=lambda: held[0]) is HeapAction.COLLECT
    policy.collected(5000)
    held[0] = 50
    assert policy.decide(15.0, calls_started=4, frozen=Frozen(6500), held=lambda: held[0]) is not HeapAction.COLLECT
    assert policy.decide(20.0, calls_started=5, frozen=Frozen(11001), held=lambda: held[0]) is HeapAction.COLLECT
