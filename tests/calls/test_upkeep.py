"""Session upkeep: the 2xx to our own re-INVITEs (refresh, hold passed on) is ACKed again when retransmitted.

RFC 3261 §13.3.1.4: the UAS retransmits its 2xx until the ACK arrives and ends the call after 64*T1 without
one; our ACK can be lost on UDP, so each retransmission must get the same ACK again.  Hand-advanced time.
"""

from __future__ import annotations

import pytest
from test_call import FakeMedia, _bridged_call, _no_timer_call, _operator_reinvite, of  # noqa: I001  (sibling)

from gateway.calls import events as ce
from gateway.sip.message import Headers, Request, build_response

HP_SOURCE = ("UDP", "127.0.0.1", 5099)


def ok(request, body=b""):
    """The help point's 200 to one of our re-INVITEs (sent again unchanged when it is retransmitted)."""
    return build_response(request, 200, headers=(("Contact", "<sip:hp@127.0.0.1:5099>"),), body=body)


def test_a_retransmitted_2xx_to_our_refresh_gets_the_same_ack_again():
    call = _no_timer_call()
    (refresh,) = of(call.handle_timer(902.0), ce.SendRequest)
    answer = ok(refresh.request)
    (ack,) = call.handle(ce.LegResponded("hp", answer), 902.1)
    assert isinstance(ack, ce.SendAck) and ack.dest == HP_SOURCE
    assert ack.request.method == "ACK" and ack.request.cseq == (refresh.request.cseq[0], "ACK")
    # Our ACK was lost: the help point retransmits its 200 at T1, 2*T1, 4*T1 ... (§13.3.1.4).
    for now in (902.6, 903.6, 905.6, 909.6):
        assert call.handle(ce.LegResponded("hp", answer), now) == [ack]
    # Nothing else moved: the call lives on and the next refresh is still half an interval after the first 2xx.
    assert call.ended_at is None and call.get_timer() == pytest.approx(902.1 + 900.0)
    assert [e["event"] for e in call.timeline].count("refresh-sent") == 1


def test_a_retransmitted_2xx_to_the_hold_reinvite_is_acked_again_and_not_reapplied():
    call = _bridged_call()
    actions = _operator_reinvite(call, b"a=sendonly", 5, 10.0)
    (hold,) = [a for a in of(actions, ce.SendRequest) if a.leg == "hp"]
    answer = ok(hold.request, body=b"ANS")
    first = call.handle(ce.LegResponded("hp", answer), 10.1)
    (ack,) = of(first, ce.SendAck)
    assert ack.request.cseq == (hold.request.cseq[0], "ACK") and ack.dest == HP_SOURCE
    assert ce.ConnectMedia("hp", FakeMedia("hp", False)) in first
    # The retransmission is only ACKed: the answer was applied once.
    assert call.handle(ce.LegResponded("hp", answer), 10.6) == [ack]
    assert call.handle(ce.LegResponded("hp", answer), 11.6) == [ack]


def test_an_older_2xx_is_acked_with_its_own_cseq_and_never_taken_for_the_pending_answer():
    call = _no_timer_call()
    (refresh,) = of(call.handle_timer(902.0), ce.SendRequest)
    old = ok(refresh.request)
    call.handle(ce.LegResponded("hp", old), 902.1)
    # The operator holds: a re-INVITE (the next CSeq) goes to the help point and waits for its answer.
    actions = _operator_reinvite(call, b"a=sendonly", 5, 902.3)
    (hold,) = [a for a in of(actions, ce.SendRequest) if a.leg == "hp"]
    assert hold.request.cseq[0] == refresh.request.cseq[0] + 1
    # A late retransmission of the refresh's 2xx: ACKed with the refresh's CSeq, the hold still pending.
    (again,) = call.handle(ce.LegResponded("hp", old), 902.6)
    assert isinstance(again, ce.SendAck) and again.request.cseq == (refresh.request.cseq[0], "ACK")
    assert "hp" in call._pending_offer
    # The hold's own 2xx is then taken as its answer, and becomes the ACK that is kept.
    actions = call.handle(ce.LegResponded("hp", ok(hold.request, body=b"ANS")), 902.7)
    (ack,) = of(actions, ce.SendAck)
    assert ack.request.cseq == (hold.request.cseq[0], "ACK") and of(actions, ce.ConnectMedia)
    assert call.handle(ce.LegResponded("hp", ok(hold.request, body=b"ANS")), 903.2) == [ack]
    # Only the latest ACK is remembered (bounded), whatever the number of re-INVITEs.
    assert call._hp_reinvite_ack is ack.request


def test_a_2xx_retransmitted_after_the_call_ended_is_still_acked():
    call = _no_timer_call()
    (refresh,) = of(call.handle_timer(902.0), ce.SendRequest)
    answer = ok(refresh.request)
    (ack,) = call.handle(ce.LegResponded("hp", answer), 902.1)
    leg = call.legs["council-cctv-1#1"]
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("From", f"<sip:x@y>;tag=op-{leg.id}"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", "7 BYE")]))
    assert of(call.handle(ce.InDialogRequest(leg.id, bye, "btx"), 902.2), ce.CallEnded)
    # The linger routes the help point's retransmission here: still ACKed, nothing else.
    assert call.handle(ce.LegResponded("hp", answer), 902.6) == [ack]


def test_a_retransmitted_2xx_to_our_reinvite_of_the_operator_is_acked_again():
    """The help point holds: passed on to the operator with a re-INVITE, whose 2xx may be retransmitted."""
    call = _bridged_call()
    hp_hold = Request("INVITE", "sip:gateway@127.0.0.1:5060", Headers([
        ("From", '"HP" <sip:hp-portland-square@127.0.0.1>;tag=hp1'),
        ("To", f"<sip:help@127.0.0.1>;tag={call.local_tag}"), ("Call-ID", "hpcall-1"), ("CSeq", "2 INVITE"), ("Contact", "<sip:hp-portland-square@127.0.0.1:5099>"),
        ("Content-Type", "application/sdp")]), b"a=sendonly")
    actions = call.handle(ce.InDialogRequest("hp", hp_hold, "htx"), 10.0)
    (reinvite,) = [a for a in of(actions, ce.SendRequest) if a.leg == "council-cctv-1#1"]
    assert reinvite.request.method == "INVITE" and reinvite.request.body == b"OFFER-op-sendonly"
    leg = call.legs["council-cctv-1#1"]
    answer = build_response(reinvite.request, 200, headers=(("Contact", f"<{leg.invite.uri}>"),), body=b"ANS")
    first = call.handle(ce.LegResponded(leg.id, answer), 10.1)
    (ack,) = of(first, ce.SendAck)
    assert ack.request.cseq == (reinvite.request.cseq[0], "ACK") and ack.dest == leg.dest
    assert of(first, ce.ConnectMedia)
    for now in (10.6, 11.6):
        assert call.handle(ce.LegResponded(leg.id, answer), now) == [ack]
