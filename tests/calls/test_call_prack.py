"""RFC 3262 on the help point's leg: a Require: 100rel INVITE gets a reliable 183, its 200 waits for the
PRACK, and a PRACK that never comes never loses the activation (the product's safety rule)."""

from __future__ import annotations

from test_call import INVITE, info, make_call, of, respond

from gateway.calls import events as ce
from gateway.sip.message import Headers, Request, build_response

REQUIRING = INVITE.replace(b"Supported: timer\r\n", b"Supported: timer, 100rel\r\nRequire: 100rel\r\n")
SUPPORTING = INVITE.replace(b"Supported: timer\r\n", b"Supported: timer, 100rel\r\n")


def prack(call, rack: str, now: float, transaction: str = "ptx"):
    request = Request("PRACK", "sip:gateway@127.0.0.1:5060", Headers([
        ("From", '"HP" <sip:hp-portland-square@127.0.0.1>;tag=hp1'), ("To", f"<sip:help@127.0.0.1>;tag={call.local_tag}"),
        ("Call-ID", "hpcall-1"), ("CSeq", "2 PRACK"), ("RAck", rack),
    ]))
    return call.handle(ce.InDialogRequest("hp", request, transaction), now)


def hp_responses(actions, transaction: str = "stx-1"):
    return [a.response for a in of(actions, ce.SendResponse) if a.transaction == transaction]


def answer_and_confirm(call, now: float):
    respond(call, "council-cctv-1#1", 180, now)
    answered = respond(call, "council-cctv-1#1", 200, now + 0.1, body=b"ANSWER-OP")
    return answered + info(call, "council-cctv-1#1", "1", now + 0.2)


def start_reliable():
    call = make_call(invite=REQUIRING)
    (progress,) = hp_responses(call.start(0.0))
    assert progress.status == 183 and progress.body == b"ANSWER-HP"
    assert progress.headers.get_all("Require") == ["100rel"]
    rseq = progress.headers.get("RSeq")
    assert rseq is not None and 1 <= int(rseq) <= 2**31 - 1
    return call, progress, rseq


def test_reliable_183_is_retransmitted_until_prack_and_the_200_waits_for_it():
    call, progress, rseq = start_reliable()
    assert call.get_timer() == 0.5
    assert hp_responses(call.handle_timer(0.5)) == [progress]  # T1
    assert call.get_timer() == 1.5  # then 2*T1
    actions = answer_and_confirm(call, 1.0)
    assert of(actions, ce.BridgeMedia) and not hp_responses(actions)  # bridged; the 200 held for the PRACK
    assert "answer-held" in [e["event"] for e in call.timeline]
    assert call.hp_answered_at is None
    actions = prack(call, f"{rseq} 1 INVITE", 1.4)
    (to_prack,) = hp_responses(actions, "ptx")
    assert to_prack.status == 200
    (ok,) = hp_responses(actions)
    assert ok.status == 200 and ok.body == b"ANSWER-HP" and "PRACK" in ok.headers.get("Allow")
    assert call.hp_answered_at == 1.4
    assert not any(hp_responses(call.handle_timer(t)) for t in (1.5, 3.5, 7.5))  # retransmissions stopped


def test_prack_before_the_operator_answers_lets_the_200_go_at_once():
    call, _, rseq = start_reliable()
    assert [r.status for r in hp_responses(prack(call, f"{rseq} 1 INVITE", 0.2), "ptx")] == [200]
    assert call.get_timer() != 0.5  # no retransmission left
    actions = answer_and_confirm(call, 1.0)
    assert [r.status for r in hp_responses(actions)] == [200]


def test_prack_matching_nothing_gets_481_and_releases_nothing():
    call, _, rseq = start_reliable()
    answer_and_confirm(call, 1.0)
    for rack in (f"{int(rseq) + 1} 1 INVITE", f"{rseq} 2 INVITE", "nonsense"):
        actions = prack(call, rack, 1.5)
        assert [r.status for r in hp_responses(actions, "ptx")] == [481]
        assert not hp_responses(actions)


def test_no_prack_ever_the_retransmissions_stop_after_64_t1_and_the_call_is_answered_anyway():
    call, progress, _ = start_reliable()
    answer_and_confirm(call, 1.0)
    sent_at, ok = [], None
    now = call.get_timer()
    while now is not None and now <= 40.0 and ok is None:
        for response in hp_responses(call.handle_timer(now)):
            if response.status == 183:
                sent_at.append(now)
            else:
                ok = (now, response)
        now = call.get_timer()
    assert sent_at == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert ok is not None and ok[0] == 32.0 and ok[1].status == 200, "the press must never be lost"
    assert "prack-missing" in [e["event"] for e in call.timeline]
    assert call.ended_at is None and call.hp_answered_at == 32.0


def test_caller_cancel_while_the_200_is_held_gets_487_and_ends_the_retransmissions():
    call, _, _ = start_reliable()
    answer_and_confirm(call, 1.0)
    actions = call.handle(ce.CallerCancelled(), 2.0)
    assert [r.status for r in hp_responses(actions)] == [487]
    assert call.get_timer() is None


def test_an_invite_that_only_supports_100rel_gets_the_plain_183_and_a_prack_gets_481():
    call = make_call(invite=SUPPORTING)
    (progress,) = hp_responses(call.start(0.0))
    assert progress.status == 183 and progress.headers.get("RSeq") is None
    assert "100rel" not in (progress.headers.get("Require") or "")
    assert [r.status for r in hp_responses(prack(call, "1 1 INVITE", 0.1), "ptx")] == [481]
    assert [r.status for r in hp_responses(answer_and_confirm(call, 1.0))] == [200]


def reliable_1xx(call, leg_id, status, rseq, now):
    leg = call.legs[leg_id]
    resp = build_response(leg.invite, status, to_tag=f"op-{leg_id}", headers=(
        ("Contact", f"<{leg.invite.uri}>"), ("Require", "100rel"), ("RSeq", str(rseq))))
    return call.handle(ce.LegResponded(leg_id, resp), now)


def test_operator_invites_support_100rel_and_a_reliable_180_is_pracked_then_cseq_goes_on():
    call = make_call()
    invites = of(call.start(0.0), ce.SendRequest)
    assert all("100rel" in i.request.headers.get("Supported") for i in invites)  # else a 421 from such phones
    actions = reliable_1xx(call, "council-cctv-1#1", 180, 5, 0.2)
    (prack,) = [a for a in of(actions, ce.SendRequest) if a.request.method == "PRACK"]
    assert prack.leg == "council-cctv-1#1" and prack.request.headers.get("RAck") == "5 1 INVITE"
    assert prack.request.cseq == (2, "PRACK") and prack.request.to.tag == "op-council-cctv-1#1"
    assert "leg-ringing" in [e["event"] for e in call.timeline]
    assert not [a for a in of(reliable_1xx(call, "council-cctv-1#1", 180, 5, 0.7), ce.SendRequest)
                if a.request.method == "PRACK"]  # a retransmission: no second PRACK
    # The PRACK's own answer and timeout are not the leg's fate.
    leg = call.legs["council-cctv-1#1"]
    assert call.handle(ce.LegTimedOut("council-cctv-1#1", False, method="PRACK"), 0.8) == []
    assert leg.state.value == "early"
    respond(call, "council-cctv-1#1", 200, 1.0, body=b"ANSWER-OP")
    assert leg.dialog is not None and leg.dialog.local_cseq == 2  # the next in-dialog request is CSeq 3
    actions = call.handle(ce.CallerCancelled(), 2.0)
    byes = [a.request for a in of(actions, ce.SendRequest) if a.request.method == "BYE"]
    assert [b.cseq for b in byes if b.call_id == leg.invite.call_id] == [(3, "BYE")]


def test_a_cancelled_leg_gets_no_prack():
    call = make_call()
    call.start(0.0)
    call.handle(ce.CallerCancelled(), 0.1)
    assert not of(reliable_1xx(call, "council-cctv-1#1", 183, 9, 0.2), ce.SendRequest)
