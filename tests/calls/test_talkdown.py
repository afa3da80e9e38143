"""Talk-down with hand-advanced time: answer, N plays, hang-up; failures; timeouts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from test_call import HP, FakeNegotiator, of  # noqa: I001  (sibling test module)

from gateway.calls import events as ce
from gateway.calls.call import CallConfig
from gateway.calls.talkdown import ANSWER_TIMEOUT, Talkdown
from gateway.media.errors import SdpNegotiationError
from gateway.sip.message import Headers, Request, build_response


def make(times: int = 2) -> Talkdown:
    counter = itertools.count()
    return Talkdown("td-1", HP, "sip:hp-portland-square@127.0.0.1:5099", ("UDP", "127.0.0.1", 5099), 1, times,
                    FakeNegotiator(), CallConfig(host="127.0.0.1:5060", contact="sip:gateway@127.0.0.1:5060"),
                    lambda: f"t{next(counter)}", datetime(2026, 11, 22, 2, 0, tzinfo=UTC))


def answer(td: Talkdown, now: float, status: int = 200):
    headers = (("Contact", "<sip:hp-portland-square@127.0.0.1:5099>"),) if status < 300 else ()
    resp = build_response(td.invite, status, to_tag="hp9", headers=headers, body=b"ANSWER" if status < 300 else b"")
    return td.handle(ce.LegResponded("hp", resp), now)


def test_plays_the_warning_n_times_then_hangs_up():
    td = make(times=2)
    (invite,) = of(td.start(0.0), ce.SendRequest)
    assert invite.request.method == "INVITE" and invite.request.body == b"OFFER-OP"
    assert invite.dest == ("UDP", "127.0.0.1", 5099)
    actions = answer(td, 1.0)
    assert of(actions, ce.SendAck) and ce.PlayPrompt("op", "warning-1", report=True) in actions
    assert td.handle(ce.PromptDone("op", "warning-1"), 5.0) == [ce.PlayPrompt("op", "warning-1", report=True)]
    actions = td.handle(ce.PromptDone("op", "warning-1"), 9.0)
    (bye,) = of(actions, ce.SendRequest)
    assert bye.request.method == "BYE"
    (ended,) = of(actions, ce.CallEnded)
    assert ended.summary.outcome == "talkdown-played" and ended.summary.kind == "talkdown"
    assert [e["event"] for e in ended.summary.timeline] == [
        "talkdown-requested", "talkdown-answered", "warning-played", "warning-played", "ended"]


def test_not_answered_is_cancelled_and_recorded():
    td = make()
    td.start(0.0)
    assert td.get_timer() == pytest.approx(ANSWER_TIMEOUT)
    actions = td.handle_timer(ANSWER_TIMEOUT)
    assert of(actions, ce.SendCancel) and of(actions, ce.CallEnded)[0].summary.outcome == "talkdown-unanswered"


def test_refused_by_the_intercom():
    td = make()
    td.start(0.0)
    actions = answer(td, 0.5, status=486)
    assert of(actions, ce.CallEnded)[0].summary.outcome == "talkdown-failed"


def test_help_point_hangs_up_early_is_interrupted():
    td = make(times=3)
    td.start(0.0)
    answer(td, 1.0)
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("From", "<sip:hp@x>;tag=hp9"), ("To", f"<sip:talkdown@x>;tag={td.local_tag}"),
        ("Call-ID", td.invite.call_id), ("CSeq", "1 BYE")]))
    actions = td.handle(ce.InDialogRequest("hp", bye, "btx"), 3.0)
    assert of(actions, ce.SendResponse)[0].response.status == 200
    assert of(actions, ce.CallEnded)[0].summary.outcome == "talkdown-interrupted"


class RefusingNegotiator(FakeNegotiator):
    """The intercom's answer has no codec in common with our offer."""

    def accept_operator_answer(self, answer: bytes):
        raise SdpNegotiationError("no common codec")


def test_answer_without_a_common_codec_is_failed_not_interrupted():
    td = make()
    td.negotiator = RefusingNegotiator()
    td.start(0.0)
    actions = answer(td, 1.0)
    assert of(actions, ce.SendAck) and [a.request.method for a in of(actions, ce.SendRequest)] == ["BYE"]
    assert not of(actions, ce.PlayPrompt)
    (ended,) = of(actions, ce.CallEnded)
    assert ended.summary.outcome == "talkdown-failed"  # nothing was played: the help point did not hang up
    assert td.get_timer() is None


def test_unusable_2xx_ends_the_talkdown_at_once_as_failed():
    """A 200 without Contact cannot be ACKed or hung up: the attempt is over (failed), not left waiting for
    the answer timer to record it as unanswered and CANCEL an INVITE that was answered."""
    td = make()
    td.start(0.0)
    resp = build_response(td.invite, 200, to_tag="hp9", body=b"ANSWER")  # no Contact
    actions = td.handle(ce.LegResponded("hp", resp), 1.0)
    (ended,) = of(actions, ce.CallEnded)
    assert ended.summary.outcome == "talkdown-failed" and of(actions, ce.StopMedia)
    assert td.get_timer() is None
    assert "talkdown-bad-answer" in [e["event"] for e in ended.summary.timeline]


def test_2xx_retransmissions_after_giving_up_get_one_bye():
    """The intercom answers just after the answer timeout: one BYE, and its 200 retransmissions (our ACK
    was lost) are ACKed again, not answered with a new BYE each."""
    td = make()
    td.start(0.0)
    td.handle_timer(ANSWER_TIMEOUT)
    first = answer(td, ANSWER_TIMEOUT + 0.1)
    assert [a.request.method for a in of(first, ce.SendRequest)] == ["BYE"]
    for t in (0.6, 1.1, 2.1):
        again = answer(td, ANSWER_TIMEOUT + t)
        assert of(again, ce.SendAck) and not of(again, ce.SendRequest)


def test_gateway_stopping_cancels_a_ringing_talkdown_and_hangs_up_a_playing_one():
    ringing = make()
    ringing.start(0.0)
    actions = ringing.handle(ce.GatewayStopping(), 2.0)
    (cancel,) = of(actions, ce.SendCancel)
    assert "Gateway shutting down" in cancel.reason
    assert of(actions, ce.CallEnded)[0].summary.outcome == "talkdown-interrupted"

    playing = make(times=3)
    playing.start(0.0)
    answer(playing, 1.0)
    actions = playing.handle(ce.GatewayStopping(), 3.0)
    (bye,) = of(actions, ce.SendRequest)
    assert bye.request.method == "BYE" and "Gateway shutting down" in bye.request.headers.get("Reason")
    summary = of(actions, ce.CallEnded)[0].summary
    assert (summary.outcome, summary.ended_by) == ("talkdown-interrupted", "gateway")
    assert playing.handle(ce.GatewayStopping(), 4.0) == []


def reliable(td: Talkdown, status: int, rseq: int | str, now: float, to_tag: str = "hp9"):
    resp = build_response(td.invite, status, to_tag=to_tag, headers=(
        ("Contact", "<sip:hp-portland-square@127.0.0.1:5099>"), ("Require", "100rel"), ("RSeq", str(rseq))))
    return td.handle(ce.LegResponded("hp", resp), now)


def test_invite_supports_100rel_and_a_reliable_180_is_pracked_once_in_its_early_dialog():
    td = make(times=1)
    (invite,) = of(td.start(0.0), ce.SendRequest)
    assert invite.request.headers.get("Supported") == "100rel"  # a unit requiring 100rel would send 421
    (prack,) = of(reliable(td, 180, 77, 0.1), ce.SendRequest)
    request = prack.request
    assert request.method == "PRACK" and request.headers.get("RAck") == "77 1 INVITE"
    assert request.cseq == (2, "PRACK") and request.to.tag == "hp9" and request.uri.startswith("sip:hp-portland")
    assert prack.dest == ("UDP", "127.0.0.1", 5099)
    assert not of(reliable(td, 180, 77, 0.6), ce.SendRequest)  # retransmitted 180: no second PRACK
    (second,) = of(reliable(td, 183, 78, 0.7), ce.SendRequest)  # the next reliable 1xx: PRACKed too
    assert second.request.headers.get("RAck") == "78 1 INVITE" and second.request.cseq == (3, "PRACK")
    actions = answer(td, 1.0)
    (ack,) = of(actions, ce.SendAck)
    assert ack.request.cseq == (1, "ACK")
    actions = td.handle(ce.PromptDone("op", "warning-1"), 6.0)
    (bye,) = of(actions, ce.SendRequest)
    assert bye.request.method == "BYE" and bye.request.cseq == (4, "BYE")  # CSeq goes on rising after PRACKs
    assert of(actions, ce.CallEnded)[0].summary.outcome == "talkdown-played"


def test_unreliable_1xx_and_a_1xx_without_a_usable_rseq_get_no_prack():
    td = make()
    td.start(0.0)
    plain = build_response(td.invite, 180, to_tag="hp9", headers=(("Contact", "<sip:hp@127.0.0.1:5099>"),))
    assert not of(td.handle(ce.LegResponded("hp", plain), 0.1), ce.SendRequest)
    assert not of(reliable(td, 183, "x", 0.2), ce.SendRequest)
    assert "talkdown-bad-1xx" in [e["event"] for e in td.timeline]
    # PRACK answers (and their timeouts) never end the talk-down.
    prack_ok = build_response(td.invite, 200, to_tag="hp9")
    assert td.handle(ce.LegResponded("hp", prack_ok, method="PRACK"), 0.3) == []
    assert td.handle(ce.LegTimedOut("hp", False, method="PRACK"), 0.4) == []
    assert td.ended_at is None
