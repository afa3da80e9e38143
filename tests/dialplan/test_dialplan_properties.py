"""Hypothesis: whatever the far ends do, a validated plan never ends in silence and never stalls.

Invariants checked after every step of a random run:

- the plan is done, or it has a timer armed, or it is waiting for a message it asked to be played;
- ``Done("unanswered")`` only comes right after a *final* message finished playing;
- ``Done("answered", x)`` only comes with ``Bridge(x)``, and ``x`` was being rung;
- after the run, firing timers and finishing messages always reaches either an answer-free safe end or a
  plan still trying (never a stall, never a zero-time loop).
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from dialplan_fixtures import INVENTORY, SUTTON
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dialplan import (
    CAUSES,
    Action,
    Bridge,
    CallerHungUp,
    CancelTargets,
    DialNumber,
    Dialplan,
    DigitReceived,
    Done,
    InvalidDialplanError,
    LegAnswered,
    LegFailed,
    LegProgressed,
    Plan,
    PlayMessage,
    PlayPrompt,
    PromptFinished,
    RingTargets,
    load_dialplan,
    validate_dialplan,
)
from gateway.dialplan.engine import PROMPT_GUARD

WALLS = [
    datetime.datetime(2026, 11, 22, 2, 10, tzinfo=datetime.UTC),  # council closed
    datetime.datetime(2026, 11, 23, 12, 0, tzinfo=datetime.UTC),  # council open
    datetime.datetime(2026, 11, 22, 22, 59, 50, tzinfo=datetime.UTC),  # closes mid-call
]
LEG_CAUSES = [c for c in CAUSES if c != "closed"]

moves = st.lists(
    st.one_of(
        st.tuples(st.just("timer")),
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=40.0)),
        st.tuples(st.just("progress"), st.integers(0, 3)),
        st.tuples(st.just("fail"), st.integers(0, 3), st.sampled_from(LEG_CAUSES)),
        st.tuples(st.just("answer"), st.integers(0, 3)),
        st.tuples(st.just("digit"), st.integers(0, 3), st.sampled_from(["1", "2"])),
        st.tuples(st.just("prompt")),
        st.tuples(st.just("stale"), st.sampled_from(["council-cctv-1", "nobody"])),
        st.tuples(st.just("hangup")),
    ),
    max_size=60,
)


class Run:
    """Drives a plan and checks the invariants on every batch of actions."""

    def __init__(self, plan: Plan, wall: datetime.datetime) -> None:
        self.plan, self.now = plan, 0.0
        self.active: list[str] = []
        self.message: PlayMessage | None = None
        self.message_at = 0.0
        self.playing: list[str] = []  # prompts and messages started and not finished, oldest first
        self.hung_up = False
        self.check(plan.start(self.now, wall), None)

    def check(self, actions: list[Action], cause: object) -> None:
        for action in actions:
            assert not isinstance(action, (RingTargets, DialNumber, PlayMessage)) or not self.plan.done or \
                action is not actions[-1]
            if isinstance(action, RingTargets):
                self.active.extend(action.targets)
            elif isinstance(action, DialNumber):
                self.active.append(action.number)
            elif isinstance(action, CancelTargets):
                assert set(action.targets) <= set(self.active)
                self.active = [t for t in self.active if t not in action.targets]
            elif isinstance(action, PlayMessage):
                self.message, self.message_at = action, self.now
                self.playing.append(action.prompt)
            elif isinstance(action, PlayPrompt):
                self.playing.append(action.prompt)
            elif isinstance(action, Bridge):
                assert action.target in self.active
                self.active = []
            elif isinstance(action, Done):
                assert action is actions[-1]
                if action.outcome == "unanswered":
                    # Only after the final message: it finished, or the media plane never said so and the
                    # plan's guard (PROMPT_GUARD after it started) ended the wait (a timer, no event).
                    assert self.message is not None and self.message.final, "unanswered without a final message"
                    if isinstance(cause, PromptFinished):
                        assert cause.prompt == self.message.prompt
                    else:
                        assert cause is None and self.now >= self.message_at + PROMPT_GUARD, \
                            "unanswered before the final message ended"
                elif action.outcome == "answered":
                    assert len(actions) >= 2 and actions[-2] == Bridge(action.target or "")
                else:
                    assert self.hung_up
        if self.plan.done:
            assert self.plan.get_timer() is None
        else:
            assert self.plan.get_timer() is not None or self.playing, "stalled in silence"

    def feed(self, event: Any) -> None:
        if isinstance(event, LegFailed) and event.target in self.active:
            self.active.remove(event.target)
        if isinstance(event, PromptFinished):
            self.playing.remove(event.prompt)
        self.check(self.plan.handle(event, self.now), event)

    def move(self, move: tuple[Any, ...]) -> None:
        kind = move[0]
        target = self.active[move[1] % len(self.active)] if len(move) > 1 and isinstance(move[1], int) \
            and self.active else None
        if kind == "timer":
            deadline = self.plan.get_timer()
            if deadline is not None:
                self.now = max(self.now, deadline)
                self.check(self.plan.handle_timer(self.now), None)
        elif kind == "wait":
            self.now += move[1]
            self.check(self.plan.handle_timer(self.now), None)
        elif kind == "prompt" and self.playing:
            self.feed(PromptFinished(self.playing[0]))
        elif kind == "stale":
            self.feed(LegFailed(move[1], "busy"))
        elif kind == "hangup":
            self.hung_up = True
            self.feed(CallerHungUp())
        elif target is not None:
            event = {"progress": lambda: LegProgressed(target), "answer": lambda: LegAnswered(target),
                     "fail": lambda: LegFailed(target, move[-1]),
                     "digit": lambda: DigitReceived(target, move[-1])}[kind]()
            self.feed(event)

    def finish(self) -> None:
        """Nobody ever answers again: the plan must keep trying or end after a final message."""
        for _ in range(200):
            if self.plan.done:
                return
            if self.playing:
                self.feed(PromptFinished(self.playing[0]))
            else:
                deadline = self.plan.get_timer()
                assert deadline is not None, "stalled in silence"
                assert deadline >= self.now
                self.now = deadline
                self.check(self.plan.handle_timer(self.now), None)


@settings(max_examples=300, deadline=None)
@given(wall=st.sampled_from(WALLS), script=moves)
def test_demo_never_ends_in_silence(wall: datetime.datetime, script: list[tuple[Any, ...]]) -> None:
    run = Run(Plan(load_dialplan(SUTTON, INVENTORY), "hp-portland-square"), wall)
    for move in script:
        if run.plan.done:
            break
        run.move(move)
    run.finish()
    assert not (run.plan.outcome is not None and run.plan.outcome.outcome == "unanswered")  # police forever


actions = st.one_of(
    st.sampled_from(["next", "retry"]),
    st.builds(lambda n: {"retry": n}, st.sampled_from([1, 2, "forever"])),
    st.builds(lambda i: {"goto": f"s{i}"}, st.integers(0, 5)),
    st.just({"play": "all-rooms-unavailable"}),
)
ring_step = st.builds(
    lambda room, strategy, repeat, on: {"ring": {"room": room, "strategy": strategy, "ring_timeout": 10,
                                                 "connect_timeout": 2, "repeat": repeat, "on": on}},
    st.sampled_from(["council-cctv", "police-control"]),
    st.sampled_from(["parallel", "sequential"]),
    st.sampled_from([0, 1, "forever"]),
    st.dictionaries(st.sampled_from([*CAUSES, "default"]), actions, max_size=3),
)
step = st.one_of(
    ring_step,
    st.just({"message": "all-rooms-unavailable"}),
    st.just({"play": "connecting"}),
    st.just({"play": {"prompt": "call-recorded", "wait": True}}),
    st.builds(lambda i: {"goto": f"s{i}"}, st.integers(0, 5)),
    st.builds(lambda r: {"dial": {"number": "+441623000000", "repeat": r}}, st.sampled_from([0, 2, "forever"])),
)


tail = st.sampled_from([
    [],
    [{"message": "all-rooms-unavailable"}],
    [{"ring": {"room": "police-control", "repeat": "forever"}}],
    [{"dial": {"number": "+441623000000"}}],
])


def build(steps: list[dict[str, Any]]) -> Dialplan | None:
    """Validate a generated dialplan (gotos folded into range); None when the validator rejects it."""
    text = msgspec.json.encode(steps).decode()
    for i in range(6):
        text = text.replace(f'"s{i}"', f'"s{i % len(steps)}"')
    document = {
        "name": "random",
        "serves": {"help_points": ["hp-portland-square"]},
        "rooms": {"council-cctv": {"schedule": {"open": [{"hours": "07:00-23:00"}]}, "confirm": {"digit": 1}}},
        "steps": [dict(s, label=f"s{i}") for i, s in enumerate(msgspec.json.decode(text))],
    }
    try:
        return validate_dialplan(msgspec.convert(document, Dialplan), INVENTORY)
    except (InvalidDialplanError, msgspec.ValidationError):
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=5), end=tail, wall=st.sampled_from(WALLS), script=moves)
def test_any_validated_dialplan_never_ends_in_silence(steps: list[dict[str, Any]], end: list[dict[str, Any]],
                                                      wall: datetime.datetime, script: list[tuple[Any, ...]]) -> None:
    dialplan = build(steps + end)
    if dialplan is None:
        return
    run = Run(Plan(dialplan, "hp-portland-square"), wall)
    for move in script:
        if run.plan.done:
            break
        run.move(move)
    run.finish()


def test_final_message_whose_end_never_comes_ends_unanswered_after_the_guard() -> None:
    """Hypothesis' find: a dial that fails, then the final message, and the media plane never reports the
    message's end: the plan waits PROMPT_GUARD, then ends unanswered (the caller heard the message start)."""
    dialplan = build([{"dial": {"number": "+441623000000", "repeat": 0}}, {"message": "all-rooms-unavailable"}])
    assert dialplan is not None
    run = Run(Plan(dialplan, "hp-portland-square"), WALLS[0])
    run.move(("timer",))  # the dial's connect timer: the message starts
    assert run.message is not None and run.playing == ["all-rooms-unavailable"]
    run.move(("timer",))  # no PromptFinished ever: the guard
    assert run.plan.done and run.plan.outcome is not None and run.plan.outcome.outcome == "unanswered"
    assert run.now == run.message_at + PROMPT_GUARD


def test_generator_produces_enough_valid_dialplans() -> None:
    """Guard against a vacuous property: a fair share of random dialplans must validate."""
    from hypothesis import find

    find(st.lists(step, min_size=2, max_size=6), lambda s: build(s) is not None and
         sum("ring" in x for x in s) >= 2 and any("goto" in str(x) for x in s))
