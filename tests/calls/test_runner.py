"""The call runner's bookkeeping: what counts as active, what an ended call keeps while it lingers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from test_call import make_call  # noqa: I001  (sibling test module)
from test_talkdown import make as make_talkdown

from gateway import metrics
from gateway.calls import events as ce
from gateway.calls.runner import INTERNAL_ERROR_REASON, STALL_DEFER, CallRunner
from gateway.sip import events as ev
from gateway.sip.message import Headers, Request, build_response


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
        self.started = 0.0
        self.ended_at: float | None = None
        self.ended_by: str | None = None
        self.outcome: str | None = None
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
    ended, live = FakeCall("ended"), FakeCall("live")
    runner.add(ended, FakeMedia())  # type: ignore[arg-type]
    assert runner.on_in_dialog(bye_to(ended))  # CallEnded hands its summary on; it lingers
    runner._tear_down(ended)  # type: ignore[arg-type]  # a bug while lingering: the record is closed
    runner.add(live, FakeMedia())  # type: ignore[arg-type]
    runner._tear_down(live)  # type: ignore[arg-type]  # a bug mid-call: its record, marked failed
    assert [s.activation_id for s in summaries] == ["ended", "live"]
    assert not runner.calls and not runner._reported and not runner._wire


# -- a bug inside a real call: what goes on the wire, and the record -------------------------------------


class FakeLoop:
    """The runner's clock and timers, advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> SimpleNamespace:
        return SimpleNamespace(when=lambda: when, cancel=lambda: None)

    def call_later(self, delay: float, callback: Any, *args: Any) -> SimpleNamespace:
        return self.call_at(self.now + delay, callback, *args)


class WireLog:
    """An endpoint that records what the runner puts on the wire, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.requests: dict[str, Request] = {}
        self.responses: list[Any] = []

    def send_request(self, request: Request, dest: Any, now: float) -> str:
        key = f"ctx-{len(self.requests) + 1}"
        self.requests[key] = request
        self.sent.append((request.method, request.call_id, request.cseq[0]))
        return key

    def send_response(self, transaction: str, response: Any, now: float) -> None:
        self.sent.append(("response", transaction, response.status))
        self.responses.append(response)

    def send_cancel(self, transaction: str, now: float, reason: str | None = None) -> None:
        self.sent.append(("CANCEL", transaction, reason))

    def send_stateless(self, message: Request, dest: Any) -> None:
        self.sent.append(("ACK", message.call_id, message.cseq[0]))


class ScriptedMedia:
    """Media that raises on one operation (a bug in the media plane)."""

    negotiator = None

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.closed = 0

    def _op(self, name: str) -> None:
        if name == self.fail_on:
            raise RuntimeError(f"media bug in {name}")

    def connect(self, side: str, negotiated: Any, switch: bool = False) -> None:
        self._op("connect")

    def play(self, side: str, prompt: str, on_done: Any) -> None:
        self._op("play")

    def bridge(self) -> None:
        self._op("bridge")

    def close(self) -> None:
        self.closed += 1


class Harness:
    def __init__(self, call: Any, media: ScriptedMedia | None = None) -> None:
        self.wire = WireLog()
        self.summaries: list[ce.CallSummary] = []
        self.progress: list[dict[str, Any]] = []
        self.errors = 0
        self.runner = CallRunner(self.wire, lambda: None, self.summaries.append,  # type: ignore[arg-type]
                                 count_error=self._count, on_progress=lambda aid, e: self.progress.append(e))
        self.loop = FakeLoop()
        self.runner.loop = self.loop  # type: ignore[assignment]
        self.call = call
        self.media = media or ScriptedMedia()
        self.runner.add(call, self.media)  # type: ignore[arg-type]

    def _count(self) -> None:
        self.errors += 1

    def leg_responds(self, leg_id: str, status: int, now: float) -> None:
        self.loop.now = now
        leg = self.call.legs[leg_id]
        headers = (("Contact", f"<{leg.invite.uri}>"),) if status < 300 else ()
        response = build_response(leg.invite, status, to_tag=f"op-{leg_id}", headers=headers, body=b"ANS")
        assert self.runner.on_response(ev.ResponseReceived(response, leg.invite_tx, leg.dest))

    def operator_confirms(self, leg_id: str, now: float) -> None:
        self.loop.now = now
        leg = self.call.legs[leg_id]
        request = Request("INFO", "sip:gateway@127.0.0.1", Headers([
            ("From", f"<sip:x@y>;tag=op-{leg_id}"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
            ("Call-ID", leg.invite.call_id), ("CSeq", "2 INFO"), ("Content-Type", "application/dtmf-relay"),
        ]), b"Signal=1\r\nDuration=160\r\n")
        assert self.runner.on_in_dialog(ev.RequestReceived(request, leg.dest, "itx"))

    def ringing_council(self) -> None:
        """Both council positions ring (183 to the help point, INVITE to each, 180 from each)."""
        assert self.wire.sent == [("response", "stx-1", 183), ("INVITE", "act-1-1@127.0.0.1:5060", 1),
                                  ("INVITE", "act-1-2@127.0.0.1:5060", 1)]
        self.leg_responds("council-cctv-1#1", 180, 0.5)
        self.leg_responds("council-cctv-2#2", 180, 0.5)
        self.wire.sent.clear()

    def forgotten(self) -> bool:
        runner, cid = self.runner, self.call.id
        return (cid not in runner.calls and cid not in runner._reported and cid not in runner._wire
                and cid not in runner.media and runner.active == 0)

    def only_summary(self) -> ce.CallSummary:
        (summary,) = self.summaries
        # Reported exactly once: each timeline entry went out once, in order; the summary carries them all.
        assert self.progress == summary.timeline == self.call.timeline
        return summary


def ends(t: float) -> list[dict[str, Any]]:
    """The last two timeline entries of a call a bug ended at ``t``."""
    return [{"t": t, "event": "internal-error", "error": "RuntimeError"},
            {"t": t, "event": "ended", "outcome": "failed", "by": "gateway"}]


async def test_a_bug_after_the_help_point_is_answered_byes_it_and_every_leg() -> None:
    h = Harness(make_call(), ScriptedMedia(fail_on="bridge"))
    h.ringing_council()
    h.leg_responds("council-cctv-1#1", 200, 1.0)
    assert h.wire.sent == [("ACK", "act-1-1@127.0.0.1:5060", 1)]
    h.wire.sent.clear()
    h.operator_confirms("council-cctv-1#1", 2.0)  # 200 to the help point, then the media plane raises
    bye_hp, bye_op = (key for key, r in h.wire.requests.items() if r.method == "BYE")
    assert h.wire.sent == [
        ("response", "itx", 200),  # the operator's INFO
        ("CANCEL", "ctx-2", 'SIP;cause=200;text="Call completed elsewhere"'),  # not CANCELled twice
        ("response", "stx-1", 200),  # the help point answered...
        ("BYE", "hpcall-1", h.wire.requests[bye_hp].cseq[0]),  # ...so it gets a BYE, not a 500
        ("BYE", "act-1-1@127.0.0.1:5060", 2),  # the bridged operator
    ]
    assert h.wire.requests[bye_hp].headers.get("Reason") == INTERNAL_ERROR_REASON
    assert h.wire.requests[bye_hp].to.tag == "hp1" and h.wire.requests[bye_op].headers.get("Reason")
    summary = h.only_summary()
    assert (summary.outcome, summary.ended_by, summary.answered_by) == ("failed", "gateway", "council-cctv-1")
    assert summary.timeline[-2:] == ends(2.0)
    assert "abandoned" not in str(summary.timeline) and summary.duration == 2.0
    assert h.errors == 1 and h.media.closed == 1 and h.forgotten()


async def test_a_bug_before_answer_gets_the_help_point_a_500_and_a_failed_record() -> None:
    h = Harness(make_call())
    h.ringing_council()

    def dialplan_bug(*args: Any) -> list[Any]:
        raise RuntimeError("dialplan bug")

    h.call.plan.handle = dialplan_bug
    h.leg_responds("council-cctv-1#1", 486, 3.0)  # the plan raises on LegFailed: nothing of that step ran
    legs = h.call.legs
    assert h.wire.sent == [
        ("response", "stx-1", 500),
        ("CANCEL", legs["council-cctv-1#1"].invite_tx, INTERNAL_ERROR_REASON),  # ignored: it got its 486
        ("CANCEL", legs["council-cctv-2#2"].invite_tx, INTERNAL_ERROR_REASON),
    ]
    final = h.wire.responses[-1]
    assert final.to.tag == h.call.local_tag and final.headers.get("Reason") == INTERNAL_ERROR_REASON
    summary = h.only_summary()
    assert (summary.outcome, summary.ended_by, summary.answered_by) == ("failed", "gateway", None)
    assert summary.timeline[-2:] == ends(3.0)
    assert h.errors == 1 and h.forgotten()


async def test_a_bug_after_the_call_decided_to_answer_but_before_the_200_went_out_sends_a_500() -> None:
    """The wire, not the call's state, decides: the step set hp_answered_at, then raised before any action."""
    h = Harness(make_call())
    h.ringing_council()
    h.leg_responds("council-cctv-1#1", 200, 1.0)
    h.wire.sent.clear()

    def timer_bug(now: float) -> None:
        raise RuntimeError("session timer bug")

    h.call._arm_session_timer = timer_bug  # runs in _bridge, right after the 200 was decided
    h.operator_confirms("council-cctv-1#1", 2.0)
    assert h.call.hp_answered_at == 2.0  # the call believes it answered
    legs = h.call.legs
    assert h.wire.sent == [
        ("response", "stx-1", 500),  # but no 200 went out: the INVITE gets its final response
        ("BYE", "act-1-1@127.0.0.1:5060", 2),
        ("CANCEL", legs["council-cctv-2#2"].invite_tx, INTERNAL_ERROR_REASON),
    ]
    summary = h.only_summary()
    assert (summary.outcome, summary.ended_by) == ("failed", "gateway")
    assert h.forgotten()


async def test_a_bug_while_an_ended_call_lingers_sends_nothing_and_keeps_its_record() -> None:
    h = Harness(make_call())
    h.ringing_council()
    h.leg_responds("council-cctv-1#1", 200, 1.0)
    h.operator_confirms("council-cctv-1#1", 2.0)
    h.loop.now = 60.0
    bye = Request("BYE", "sip:gateway@127.0.0.1:5060", Headers([
        ("From", '"HP" <sip:hp-portland-square@127.0.0.1>;tag=hp1'),
        ("To", f"<sip:help@127.0.0.1>;tag={h.call.local_tag}"), ("Call-ID", "hpcall-1"), ("CSeq", "2 BYE")]))
    assert h.runner.on_in_dialog(ev.RequestReceived(bye, ("UDP", "127.0.0.1", 5099), "btx"))
    (summary,) = h.summaries
    assert (summary.outcome, summary.ended_by) == ("answered", "hp")
    written, h.wire.sent[:] = list(h.progress), []

    def late_bug(event: Any, now: float) -> list[Any]:
        raise RuntimeError("bug on a late message")

    h.call.handle = late_bug
    h.loop.now = 61.0
    h.runner.deliver(h.call.id, ce.MediaSilence("hp", True))
    assert h.wire.sent == []  # the help point hung up; the legs were BYEd and CANCELled on the wire
    assert h.summaries == [summary] and h.progress == written and h.errors == 1 and h.forgotten()


async def test_a_failing_summary_still_leaves_a_record() -> None:
    h = Harness(make_call(), ScriptedMedia(fail_on="bridge"))
    h.ringing_council()
    h.leg_responds("council-cctv-1#1", 200, 1.0)

    def summary_bug() -> ce.CallSummary:
        raise RuntimeError("summary bug")

    h.call.summary = summary_bug
    h.operator_confirms("council-cctv-1#1", 2.0)
    (summary,) = h.summaries
    assert (summary.activation_id, summary.help_point, summary.outcome, summary.ended_by) == (
        "act-1", "hp-portland-square", "failed", "gateway")
    assert summary.timeline == h.progress and summary.timeline[-2:] == ends(2.0)
    assert h.forgotten()


async def test_a_bug_in_an_answered_talkdown_byes_the_help_point() -> None:
    td = make_talkdown(times=1)
    h = Harness(td, ScriptedMedia(fail_on="play"))
    h.loop.now = 1.0
    response = build_response(td.invite, 200, to_tag="hp9",
                              headers=(("Contact", "<sip:hp-portland-square@127.0.0.1:5099>"),), body=b"A")
    assert h.runner.on_response(ev.ResponseReceived(response, td.leg.invite_tx, td.leg.dest))
    assert h.wire.sent == [("INVITE", "td-1@127.0.0.1:5060", 1), ("ACK", "td-1@127.0.0.1:5060", 1),
                           ("BYE", "td-1@127.0.0.1:5060", 2)]
    (summary,) = h.summaries
    assert (summary.outcome, summary.ended_by, summary.kind) == ("talkdown-failed", "gateway", "talkdown")
    assert h.forgotten()


async def test_a_bug_in_a_ringing_talkdown_cancels_it() -> None:
    td = make_talkdown()
    h = Harness(td)
    h.loop.now = 0.4

    def talkdown_bug(event: Any, now: float) -> list[Any]:
        raise RuntimeError("talk-down bug")

    td.handle = talkdown_bug
    h.runner.deliver(td.id, ce.MediaSilence("hp", True))
    assert h.wire.sent == [("INVITE", "td-1@127.0.0.1:5060", 1),
                           ("CANCEL", td.leg.invite_tx, INTERNAL_ERROR_REASON)]
    assert h.summaries[0].outcome == "talkdown-failed" and h.forgotten()


async def test_forgetting_a_lingering_call_leaves_a_new_call_on_the_same_server_transaction_routed() -> None:
    """A press refused at once (488) lingers 32 s, but its INVITE server transaction ends about 5 s after the
    ACK.  An INVITE that reuses its transaction key (same branch and sent-by: a buggy or RFC 2543 intercom)
    then starts a new call under that key.  When the old call's linger ends, forgetting it must not take the
    new call's index with it: the help point's CANCEL must still reach the new call (its INVITE gets the 487,
    the operators stop ringing) instead of leaving the operators ringing for a caller who gave up."""
    runner = CallRunner(SimpleNamespace(), lambda: None, lambda summary: None)  # type: ignore[arg-type]
    old, new = FakeCall("old"), FakeCall("new")
    new.transaction = old.transaction
    runner.add(old, FakeMedia())  # type: ignore[arg-type]
    assert runner.on_in_dialog(bye_to(old))  # it ended; it lingers
    runner.add(new, FakeMedia())  # type: ignore[arg-type]
    runner._forget(old)  # type: ignore[arg-type]  # the old call's linger is over
    cancel = ev.CancelReceived(None, ("UDP", "127.0.0.1", 5060), new.transaction)  # type: ignore[arg-type]
    assert runner.on_cancel(cancel)
    assert isinstance(new.seen[-1], ce.CallerCancelled)


async def test_a_bug_in_the_calls_timer_is_caught_like_any_other_bug_of_the_call() -> None:
    """``get_timer`` is the call's code too.  It used to run after the catch-all: its exception escaped to the
    transport (logged there), the call was neither torn down nor re-armed, so its ring and failover timers
    never fired, the help point was left on its 183 and the operators ringing, and the call stayed active."""
    h = Harness(make_call())
    h.ringing_council()

    def timer_bug() -> float | None:
        raise RuntimeError("timer bug")

    h.call.get_timer = timer_bug
    h.leg_responds("council-cctv-1#1", 486, 3.0)
    legs = h.call.legs
    assert h.wire.sent[0] == ("response", "stx-1", 500)
    assert ("CANCEL", legs["council-cctv-2#2"].invite_tx, INTERNAL_ERROR_REASON) in h.wire.sent
    summary = h.only_summary()
    assert (summary.outcome, summary.ended_by) == ("failed", "gateway")
    assert h.errors == 1 and h.forgotten()


async def test_a_records_failure_when_a_call_starts_does_not_stop_the_call() -> None:
    """``on_started`` (the records layer writing the in-progress row) raising used to leave the call added to
    every index and counted active but never started: no 183, no operator rung, the INVITE unanswered."""
    def records_bug(call: Any) -> None:
        raise RuntimeError("records bug")

    wire = WireLog()
    runner = CallRunner(wire, lambda: None, lambda summary: None, on_started=records_bug)  # type: ignore[arg-type]
    runner.loop = FakeLoop()  # type: ignore[assignment]
    runner.add(make_call(), ScriptedMedia())  # type: ignore[arg-type]
    assert wire.sent[0] == ("response", "stx-1", 183) and wire.sent[1][0] == "INVITE"
    assert runner.active == 1


async def test_a_timer_that_fires_after_a_stall_lets_the_answer_that_arrived_meanwhile_decide_the_call() -> None:
    """The event loop stalled (a VM pause) across the council's ring timeout while the operator answered: the
    200 waits in the socket, and the loop runs its due timers before it reads sockets.  The ring timeout used
    to fail over from the room that had answered (CANCEL, then ACK and BYE to the operator who picked up);
    now the stalled timer waits for one pass over the sockets and the answer decides the call."""
    h = Harness(make_call())
    h.ringing_council()
    call_id = h.call.id
    assert h.runner._timers[call_id].when() == 20.0  # the council's ring timeout
    counted = metrics.CALL_TIMERS_STALLED._value.get()
    h.loop.now = 21.5  # the loop comes back 1.5 s late: the timer first
    h.runner._fire(call_id)
    assert h.wire.sent == [] and h.runner.stalled_timers == 1
    assert metrics.CALL_TIMERS_STALLED._value.get() == counted + 1
    assert h.runner._timers[call_id].when() == pytest.approx(21.5 + STALL_DEFER)
    h.leg_responds("council-cctv-1#1", 200, 21.5)  # then what waited in the socket
    legs = h.call.legs
    assert ("ACK", legs["council-cctv-1#1"].invite.call_id, 1) in h.wire.sent
    assert not [s for s in h.wire.sent if s[0] in ("CANCEL", "BYE") and s[1] == legs["council-cctv-1#1"].invite_tx]
    assert not any(s[0] == "INVITE" for s in h.wire.sent)  # no failover to the police room
    assert [e["event"] for e in h.call.timeline[-2:]] == ["leg-answered", "confirm-requested"]
    # The other council phone still rings past its ring timeout: the re-armed timer, after the sockets, ends
    # only that ringing (not a second deferral), and the answered phone goes on to its confirm digit.
    h.wire.sent.clear()
    h.loop.now = 21.5 + STALL_DEFER
    h.runner._fire(call_id)
    assert h.wire.sent == [("CANCEL", legs["council-cctv-2#2"].invite_tx, 'SIP;cause=480;text="Ring timeout"')]
    assert h.runner.stalled_timers == 1 and call_id not in h.runner._deferred
    assert h.runner._timers[call_id].when() == 31.5  # confirm within 10 s of the answer
    h.operator_confirms("council-cctv-1#1", 22.0)
    assert h.wire.sent[-1] == ("response", "stx-1", 200)


async def test_a_stalled_timer_is_deferred_once_then_fires_and_an_on_time_one_is_not_deferred() -> None:
    h = Harness(make_call())
    h.ringing_council()
    call_id = h.call.id
    h.loop.now = 20.2  # late, but within STALL_GRACE: fires at once
    h.runner._fire(call_id)
    assert h.runner.stalled_timers == 0
    assert [s[0] for s in h.wire.sent].count("CANCEL") == 2  # the ring timeout: both council phones

    h = Harness(make_call())
    h.ringing_council()
    call_id = h.call.id
    h.loop.now = 23.0
    h.runner._fire(call_id)  # stalled: deferred
    assert h.wire.sent == [] and h.runner.stalled_timers == 1
    h.loop.now = 23.0 + STALL_DEFER
    h.runner._fire(call_id)  # nothing arrived meanwhile: the ring timeout now decides, without a second wait
    assert h.runner.stalled_timers == 1
    assert [s[0] for s in h.wire.sent].count("CANCEL") == 2 and call_id not in h.runner._deferred
