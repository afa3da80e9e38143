"""The call runner's bookkeeping: what counts as active, what an ended call keeps while it lingers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gateway.calls import events as ce
from gateway.calls.runner import CallRunner
from gateway.sip import events as ev


class FakeMedia:
    negotiator = None

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class FakeCall:
    """Duck-typed call: ends on any in-dialog request, answers every one after that (late BYEs)."""

    def __init__(self, call_id: str) -> None:
        self.id = call_id
        self.transaction = f"tx-{call_id}"
        self.invite = SimpleNamespace(call_id=f"cid-{call_id}")
        self.local_tag = f"tag-{call_id}"
        self.timeline: list[dict[str, Any]] = []
        self.legs: dict[str, Any] = {}
        self.ended_at: float | None = None
        self.hp_answered_at: float | None = 0.0
        self.seen: list[Any] = []

    def start(self, now: float) -> list[ce.CallAction]:
        self.timeline.append({"t": 0.0, "event": "offered"})
        return []

    def get_timer(self) -> float | None:
        return None

    def summary(self) -> ce.CallSummary:
        return ce.CallSummary(self.id, "hp", 0.0, "answered", None, None, "hp", 1.0, 1.0, "dp", 1)

    def handle(self, event: Any, now: float) -> list[ce.CallAction]:
        self.seen.append(event)
        if self.ended_at is not None:
            return []  # a late message: answered from the SIP state alone
        self.ended_at = now
        return [ce.StopMedia(), ce.CallEnded(self.summary())]


def bye_to(call: FakeCall) -> ev.RequestReceived:
    request = SimpleNamespace(to=SimpleNamespace(tag=call.local_tag), call_id=call.invite.call_id)
    return ev.RequestReceived(request, ("UDP", "127.0.0.1", 5060), f"bye-{call.id}")  # type: ignore[arg-type]


async def test_active_counts_calls_until_they_end_not_while_they_linger() -> None:
    summaries: list[ce.CallSummary] = []
    runner = CallRunner(SimpleNamespace(), lambda: None, summaries.append)  # type: ignore[arg-type]
    calls = [FakeCall(str(i)) for i in range(3)]
    media = [FakeMedia() for _ in calls]
    for call, m in zip(calls, media, strict=True):
        runner.add(call, m)  # type: ignore[arg-type]
    assert runner.active == 3

    assert runner.on_in_dialog(bye_to(calls[0]))
    assert runner.active == 2 and [s.activation_id for s in summaries] == ["0"]
    assert media[0].closed == 1 and "0" not in runner.media  # the linger keeps no media
    assert "0" in runner.calls  # ...but still routes late messages to the call

    assert runner.on_in_dialog(bye_to(calls[0]))  # a BYE retransmission while lingering
    assert len(calls[0].seen) == 2 and runner.active == 2 and len(summaries) == 1

    runner._forget(calls[0])  # type: ignore[arg-type]  # the linger is over
    assert runner.active == 2 and not runner.on_in_dialog(bye_to(calls[0]))


async def test_a_call_forgotten_after_a_bug_is_no_longer_active() -> None:
    runner = CallRunner(SimpleNamespace(), lambda: None, lambda summary: None)  # type: ignore[arg-type]
    call = FakeCall("x")
    runner.add(call, FakeMedia())  # type: ignore[arg-type]
    runner._tear_down(call)  # type: ignore[arg-type]
    assert runner.active == 0 and "x" not in runner.calls


async def test_a_call_torn_down_after_a_bug_is_summarised_exactly_once() -> None:
    summaries: list[ce.CallSummary] = []
    runner = CallRunner(SimpleNamespace(), lambda: None, summaries.append)  # type: ignore[arg-type]
    ending, stuck = FakeCall("ends"), FakeCall("stuck")
    runner.add(ending, FakeMedia())  # type: ignore[arg-type]
    runner._tear_down(ending)  # type: ignore[arg-type]  # its cancel ends it: CallEnded hands the summary on
    stuck.handle = lambda event, now: []  # type: ignore[method-assign]  # a call that cannot end itself
    runner.add(stuck, FakeMedia())  # type: ignore[arg-type]
    runner._tear_down(stuck)  # type: ignore[arg-type]  # ...still gets its record
    assert [s.activation_id for s in summaries] == ["ends", "stuck"]
