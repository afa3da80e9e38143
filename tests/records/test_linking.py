"""Repeat-press linking: exact window rules and a Hypothesis model check."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.records import Press, RepeatLinker, link_repeat


def test_window_is_inclusive_and_slides() -> None:
    linker = RepeatLinker(120)
    assert linker.press("hp", "a", 1000.0) is None
    assert linker.press("hp", "b", 1120.0) == "a"  # exactly the window: linked
    assert linker.press("hp", "c", 1240.0) == "a"  # 120 s after b, 240 s after a: still the chain of a
    assert linker.press("hp", "d", 1360.5) is None  # 120.5 s after c: a new chain
    assert linker.press("hp", "e", 1361.0) == "d"


def test_help_points_are_independent_and_clock_steps_back_link() -> None:
    linker = RepeatLinker(120)
    assert linker.press("hp1", "a", 1000.0) is None
    assert linker.press("hp2", "b", 1001.0) is None
    assert linker.press("hp1", "c", 990.0) == "a"


def test_zero_window_never_links_and_seed_keeps_the_newest() -> None:
    assert link_repeat(Press("a", 0.0), 0.0, 0) is None
    linker = RepeatLinker(60)
    linker.seed("hp", Press("new", 500.0, "head"))
    linker.seed("hp", Press("old", 400.0))
    assert linker.press("hp", "x", 550.0) == "head"


@given(st.lists(st.tuples(st.sampled_from(["hp1", "hp2"]), st.floats(0, 50)), max_size=30),
       st.floats(0, 30))
def test_matches_a_model(gaps: list[tuple[str, float]], window: float) -> None:
    """Each press links to the first press of its run, a run being presses no more than window apart."""
    linker = RepeatLinker(window)
    clock = 0.0
    last: dict[str, tuple[float, str]] = {}  # help point -> (time of last press, head of its run)
    for n, (hp, gap) in enumerate(gaps):
        clock += gap
        aid = f"p{n}"
        got = linker.press(hp, aid, clock)
        previous = last.get(hp)
        if previous is not None and window > 0 and clock - previous[0] <= window:
            assert got == previous[1]
            last[hp] = (clock, previous[1])
        else:
            assert got is None
            last[hp] = (clock, aid)
