"""The pure B2BUA driven with the demo dialplan, hand-advanced time and a fake SDP negotiator."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.calls import events as ce
from gateway.calls.call import Call, CallConfig
from gateway.calls.media_adapter import _Negotiator
from gateway.calls.metadata import HelpPointInfo
from gateway.dialplan.engine import Plan
from gateway.dialplan.load import load_dialplan_set
from gateway.dialplan.model import Inventory
from gateway.media.errors import SdpNegotiationError
from gateway.sip.message import Headers, Request, build_response, parse_message

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Inventory(
    help_points={"hp-portland-square": ("sutton",), "hp-outram-street": ("sutton",),
                 "hp-old-market-place": ("sutton",)},
    rooms={"council-cctv": ("council-cctv-1", "council-cctv-2"), "police-control": ("police-control-1",)},
    prompts=frozenset({"connecting", "call-recorded", "all-rooms-unavailable", "warning-1", "warning-2",
                       "confirm-operator"}),
)
ROOMS = {"council-cctv-1": "council-cctv", "council-cctv-2": "council-cctv", "police-control-1": "police-control"}
HP = HelpPointInfo("hp-portland-square", "Portland Square", "hp-portland-square", 53.1245, -1.2612,
                   "Portland Square, Sutton-in-Ashfield", "rtsp://cctv.example.invalid/cam/portland-square")
DAY = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 11, 22, 2, 10, tzinfo=UTC)

INVITE = (
    b"INVITE sip:help@127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKhp1;rport=5099;received=127.0.0.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "HP" <sip:hp-portland-square@127.0.0.1>;tag=hp1\r\n'
    b"To: <sip:help@127.0.0.1>\r\n"
    b"Call-ID: hpcall-1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:hp-portland-square@127.0.0.1:5099>\r\n"
    b"Supported: timer\r\n"
    b"Session-Expires: 600\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 5\r\n\r\nOFFER"
)


class FakeNegotiator:
    def answer_help_point(self, offer: bytes):
        if offer != b"OFFER":
            raise SdpNegotiationError("no common codec")
        return b"ANSWER-HP", "hp-media"

    def operator_offer(self) -> bytes:
        return b"OFFER-OP"

    def accept_operator_answer(self, answer: bytes):
        return "op-media"

    def answer_offer(self, side, offer):
        held = b"sendonly" in offer
        return b"REANSWER-" + side.encode(), FakeMedia(side, held)

    def offer_for(self, side, direction):
        return f"OFFER-{side}-{direction}".encode()

    def accept_answer_for(self, side, offer, answer):
        return FakeMedia(side, False)


class FakeMedia:
    def __init__(self, side, on_hold):
        self.side, self.on_hold = side, on_hold

    def __eq__(self, other):
        return isinstance(other, FakeMedia) and (self.side, self.on_hold) == (other.side, other.on_hold)


def make_call(wall=DAY, registered=("council-cctv-1", "council-cctv-2", "police-control-1"), invite=INVITE,
              negotiator=None):
    sets = load_dialplan_set([ROOT / "dialplans" / "sutton.yaml"], INVENTORY)
    dp = sets.for_help_point("hp-portland-square")
    counter = itertools.count()

    def locate(position: str):
        if position not in registered:
            return []
        return [(f"sip:{position}@127.0.0.1:600{len(position) % 10}", ("UDP", "127.0.0.1", 6000))]

    call = Call("act-1", HP, parse_message(invite), "stx-1", ("UDP", "127.0.0.1", 5099),
                Plan(dp, "hp-portland-square", version=sets.version), negotiator or FakeNegotiator(), locate,
                ROOMS.get,
                CallConfig(host="127.0.0.1:5060", contact="sip:gateway@127.0.0.1:5060"),
                lambda: f"tag{next(counter)}", wall, dialplan_version=sets.version)
    return call


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def respond(call, leg_id, status, now, body=b""):
    leg = call.legs[leg_id]
    headers = (("Contact", f"<{leg.invite.uri}>"),) if status < 300 else ()
    resp = build_response(leg.invite, status, to_tag=f"op-{leg_id}", headers=headers, body=body)
    return call.handle(ce.LegResponded(leg_id, resp), now)


def info(call, leg_id, digit, now):
    leg = call.legs[leg_id]
    req = Request("INFO", "sip:gateway@127.0.0.1", Headers([
        ("From", f"<sip:x@y>;tag=op-{leg_id}"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", "2 INFO"), ("Content-Type", "application/dtmf-relay"),
    ]), b"Signal=1\r\nDuration=160\r\n")
    return call.handle(ce.InDialogRequest(leg_id, req, "itx"), now)


def test_council_answers_confirms_and_is_bridged():
    call = make_call()
    actions = call.start(0.0)
    (early,) = of(actions, ce.SendResponse)
    assert early.response.status == 183 and early.response.body == b"ANSWER-HP"
    assert of(actions, ce.PlayPrompt) == [ce.PlayPrompt("hp", "connecting")]
    invites = of(actions, ce.SendRequest)
    assert sorted(i.leg for i in invites) == ["council-cctv-1#1", "council-cctv-2#2"]
    inv = invites[0].request
    assert inv.from_.display == "Portland Square"
    assert "rtsp://cctv.example.invalid/cam/portland-square>;purpose=helppoint.camera" in inv.headers.get("Call-Info")
    assert inv.headers.get("X-Helppoint-Id") == "hp-portland-square"
    assert inv.headers.get("History-Info") is None
    respond(call, "council-cctv-1#1", 180, 0.5)
    actions = respond(call, "council-cctv-1#1", 200, 3.0, body=b"ANSWER-OP")
    assert of(actions, ce.SendAck) and of(actions, ce.ConnectMedia) == [ce.ConnectMedia("op", "op-media")]
    assert ce.PlayPrompt("op", "confirm-operator") in actions
    assert not of(actions, ce.SendResponse)  # the help point is not answered before the confirm
    actions = info(call, "council-cctv-1#1", "1", 4.0)
    final = [a.response.status for a in of(actions, ce.SendResponse)]
    assert 200 in final
    hp200 = next(a.response for a in of(actions, ce.SendResponse) if a.transaction == "stx-1")
    assert hp200.headers.get("Session-Expires") == "600;refresher=uac"
    assert ce.BridgeMedia() in actions
    assert [a.leg for a in of(actions, ce.SendCancel)] == ["council-cctv-2#2"]
    assert call.bridged.target == "council-cctv-1"


def test_unconfirmed_answer_fails_over_to_police_with_history():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 180, 0.2)
    respond(call, "council-cctv-2#2", 486, 0.3)
    respond(call, "council-cctv-1#1", 200, 1.0)
    assert call.get_timer() == pytest.approx(11.0)  # confirm within 10 s
    actions = call.handle_timer(11.0)
    byes = [a for a in of(actions, ce.SendRequest) if a.request.method == "BYE"]
    assert [b.leg for b in byes] == ["council-cctv-1#1"]
    police = [a for a in of(actions, ce.SendRequest) if a.request.method == "INVITE"]
    assert [p.leg for p in police] == ["police-control-1#3"]
    hist = police[0].request.headers.get("History-Info")
    assert "council-cctv-2" in hist and "cause%3D486" in hist
    assert police[0].request.headers.get("Reason").startswith("SIP;cause=")


def test_night_skips_closed_council_room():
    call = make_call(wall=NIGHT)
    actions = call.start(0.0)
    assert [a.leg for a in of(actions, ce.SendRequest)] == ["police-control-1#1"]


def test_caller_cancel_stops_all_legs_and_records_abandoned():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 180, 0.2)
    actions = call.handle(ce.CallerCancelled(), 2.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [487]
    assert sorted(a.leg for a in of(actions, ce.SendCancel)) == ["council-cctv-1#1", "council-cctv-2#2"]
    (ended,) = of(actions, ce.CallEnded)
    assert ended.summary.outcome == "abandoned" and ended.summary.ended_by == "hp"
    assert ended.summary.duration == 2.0


def test_operator_bye_ends_help_point_leg():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    leg = call.legs["council-cctv-1#1"]
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("From", "<sip:x@y>;tag=op-council-cctv-1#1"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", "3 BYE")]))
    actions = call.handle(ce.InDialogRequest("council-cctv-1#1", bye, "btx"), 62.0)
    assert any(a.transaction == "btx" and a.response.status == 200 for a in of(actions, ce.SendResponse))
    hp_bye = [a for a in of(actions, ce.SendRequest) if a.leg == "hp"]
    assert hp_bye and hp_bye[0].request.method == "BYE" and hp_bye[0].request.uri == "sip:hp-portland-square@127.0.0.1:5099"
    (ended,) = of(actions, ce.CallEnded)
    s = ended.summary
    assert (s.outcome, s.ended_by, s.answered_by, s.answered_room) == ("answered", "operator", "council-cctv-1", "council-cctv")
    assert s.talk_time == 60.0


def test_no_registered_operator_anywhere_never_ends_in_silence():
    call = make_call(registered=())
    actions = call.start(0.0)
    # Every room unreachable: the caller hears the message; the plan keeps trying the police room.
    assert ce.PlayPrompt("hp", "all-rooms-unavailable", report=True) in actions or call.plan.get_timer() is not None
    assert not of(actions, ce.CallEnded)


def test_session_timer_clears_a_dead_help_point():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    # Session-Expires 600 with refresher=uac: gone after 600 - min(32, 200) = 568 s without refresh.
    assert call.get_timer() == pytest.approx(2.0 + 568.0)
    actions = call.handle_timer(570.0)
    assert {a.leg for a in of(actions, ce.SendRequest) if a.request.method == "BYE"} == {"hp", "council-cctv-1#1"}
    assert of(actions, ce.CallEnded)[0].summary.ended_by == "gateway"


def test_bad_sdp_gets_488_and_a_record():
    call = make_call(invite=INVITE.replace(b"OFFER", b"XXXXX"))
    actions = call.start(0.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [488]
    assert of(actions, ce.CallEnded)[0].summary.outcome == "failed"


class SdpNegotiator(FakeNegotiator):
    """The help point's offers (INVITE, re-INVITE) go through the media adapter's real offer/answer."""

    def __init__(self):
        self.real = _Negotiator("192.0.2.1", 30000, 30002)

    def answer_help_point(self, offer: bytes):
        return self.real.answer_help_point(offer)

    def answer_offer(self, side, offer):
        return self.real.answer_offer(side, offer)


HP_OFFER = (b"v=0\r\no=hp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
# Offers with a value out of range (each once stopped the media clock of every call, or raised out of the
# negotiator): 488, like an offer with no common codec.
HOSTILE_OFFERS = [
    HP_OFFER.replace(b"RTP/AVP 0 101", b"RTP/AVP 300") + b"a=rtpmap:300 PCMU/8000\r\n",
    HP_OFFER.replace(b"audio 6000", b"audio 70000"),
    HP_OFFER.replace(b"audio 6000", "audio ²".encode()),
    HP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 \xff"),
    HP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 help-point.example.com"),
]
HOSTILE_IDS = ["pt-300", "port-70000", "port-superscript", "address-0xff", "address-hostname"]


def invite_with(body: bytes) -> bytes:
    return INVITE.replace(b"Content-Length: 5\r\n\r\nOFFER",
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.mark.parametrize("offer", HOSTILE_OFFERS, ids=HOSTILE_IDS)
def test_offer_with_values_out_of_range_gets_488(offer):
    call = make_call(invite=invite_with(offer), negotiator=SdpNegotiator())
    actions = call.start(0.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [488]
    assert not of(actions, ce.ConnectMedia)
    assert of(actions, ce.CallEnded)[0].summary.outcome == "failed"


@pytest.mark.parametrize("extra", [b"a=rtcp:70001\r\n", "a=rtcp:²\r\n".encode(), b"a=ptime:inf\r\n",
                                   b"a=ptime:nan\r\n"], ids=["rtcp-70001", "rtcp-superscript", "ptime-inf",
                                                              "ptime-nan"])
def test_offer_with_an_unusable_rtcp_or_ptime_is_answered_without_it(extra):
    call = make_call(invite=invite_with(HP_OFFER + extra), negotiator=SdpNegotiator())
    actions = call.start(0.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [183]
    (connect,) = of(actions, ce.ConnectMedia)
    assert (connect.negotiated.rtcp_port, connect.negotiated.ptime) == (6001, 20)


def _hp_reinvite(body, cseq):
    return Request("INVITE", "sip:gateway@127.0.0.1:5060", Headers([
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKhpre{cseq}"),
        ("From", '"HP" <sip:hp-portland-square@127.0.0.1>;tag=hp1'), ("To", "<sip:help@127.0.0.1>;tag=gw"),
        ("Call-ID", "hpcall-1"), ("CSeq", f"{cseq} INVITE"),
        ("Contact", "<sip:hp-portland-square@127.0.0.1:5099>"),
        ("Content-Type", "application/sdp")]), body)


@pytest.mark.parametrize("offer", HOSTILE_OFFERS, ids=HOSTILE_IDS)
def test_reinvite_with_values_out_of_range_gets_488_and_the_call_goes_on(offer):
    call = make_call(invite=invite_with(HP_OFFER), negotiator=SdpNegotiator())
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    actions = call.handle(ce.InDialogRequest("hp", _hp_reinvite(offer, 2), "rtx"), 10.0)
    assert [(a.transaction, a.response.status) for a in of(actions, ce.SendResponse)] == [("rtx", 488)]
    assert not of(actions, ce.ConnectMedia) and not of(actions, ce.SendRequest)
    assert not of(actions, ce.CallEnded)
    assert call.ended_at is None and call.timeline[-1]["event"] == "reoffer-refused"
    # the next, well-formed offer is answered as usual
    actions = call.handle(ce.InDialogRequest("hp", _hp_reinvite(HP_OFFER, 3), "rtx2"), 11.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [200]
    assert len(of(actions, ce.ConnectMedia)) == 1


def test_operator_star_digit_plays_a_warning_to_the_help_point():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)  # confirm
    assert call.handle(ce.DigitDetected("op", "*"), 10.0) == []
    actions = call.handle(ce.DigitDetected("op", "2"), 10.2)
    assert actions == [ce.PlayPrompt("hp", "warning-2")]
    assert call.timeline[-1] == {"t": 10.2, "event": "warning", "number": 2, "by": "operator-dtmf"}
    assert call.handle(ce.DigitDetected("op", "2"), 11.0) == []  # "2" alone is not a command


def _no_timer_call():
    plain = INVITE.replace(b"Supported: timer\r\n", b"").replace(b"Session-Expires: 600\r\n", b"")
    call = make_call(invite=plain)
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    return call


def test_help_point_without_session_timers_is_refreshed_by_us_and_cleared_when_gone():
    call = _no_timer_call()
    # 1800 s session interval, refreshed every half: a re-INVITE to the help point's source.
    assert call.get_timer() == pytest.approx(2.0 + 900.0)
    actions = call.handle_timer(902.0)
    (refresh,) = of(actions, ce.SendRequest)
    assert refresh.leg == "hp" and refresh.request.method == "INVITE" and refresh.dest == ("UDP", "127.0.0.1", 5099)
    assert refresh.request.body == b"ANSWER-HP" and refresh.request.cseq == (1, "INVITE")
    # The help point is gone: no final response (the transaction times out): BYE both legs (RFC 4028 §10).
    actions = call.handle(ce.LegTimedOut("hp", False, "INVITE"), 934.0)
    assert {a.leg for a in of(actions, ce.SendRequest) if a.request.method == "BYE"} == {"council-cctv-1#1", "hp"}
    assert of(actions, ce.CallEnded)[0].summary.ended_by == "gateway"


def test_a_refresh_answered_keeps_the_call_and_is_acked():
    call = _no_timer_call()
    (refresh,) = of(call.handle_timer(902.0), ce.SendRequest)
    ok = build_response(refresh.request, 200, headers=(("Contact", "<sip:hp@127.0.0.1:5099>"),))
    actions = call.handle(ce.LegResponded("hp", ok), 902.1)
    assert [a.request.method for a in of(actions, ce.SendAck)] == ["ACK"]
    assert call.ended_at is None and call.get_timer() == pytest.approx(902.1 + 900.0)


def test_operator_classifies_by_keypad():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)  # confirm
    call.handle(ce.DigitDetected("op", "#"), 30.0)
    call.handle(ce.DigitDetected("op", "2"), 30.2)
    assert call.classification == "false"
    assert call.timeline[-1] == {"t": 30.2, "event": "classified", "classification": "false", "by": "council-cctv-1"}
    assert call.summary().classification == "false"


def _reinvite(call, leg_id, body, cseq):
    leg = call.legs[leg_id]
    return Request("INVITE", "sip:gateway@127.0.0.1", Headers([
        ("From", f"<sip:x@y>;tag=op-{leg_id}"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", f"{cseq} INVITE"), ("Contact", "<sip:op@127.0.0.1:6000>"),
        ("Content-Type", "application/sdp")]), body)


def _bridged_call():
    """The demo call answered by council-cctv-1 at 1 s and confirmed at 2 s: bridged."""
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    return call


def _operator_reinvite(call, body, cseq, now, transaction="rtx"):
    """The bridged operator (council-cctv-1) sends a re-INVITE offering ``body`` (``a=sendonly``: hold)."""
    request = _reinvite(call, "council-cctv-1#1", body, cseq)
    return call.handle(ce.InDialogRequest("council-cctv-1#1", request, transaction), now)


def test_operator_hold_is_answered_and_passed_on_to_the_help_point():
    call = _bridged_call()
    actions = _operator_reinvite(call, b"a=sendonly", 5, 10.0)
    (ok,) = [a for a in of(actions, ce.SendResponse) if a.transaction == "rtx"]
    assert ok.response.status == 200 and ok.response.body == b"REANSWER-op"
    assert ce.ConnectMedia("op", FakeMedia("op", True)) in actions
    (hold,) = [a for a in of(actions, ce.SendRequest) if a.leg == "hp"]
    assert hold.request.method == "INVITE" and hold.request.body == b"OFFER-hp-sendonly"
    assert [e["event"] for e in call.timeline[-2:]] == ["hold", "refresh"]
    # The help point answers the hold re-INVITE: ACKed with its CSeq, media reconnected.
    ok_hp = build_response(hold.request, 200, headers=(("Contact", "<sip:hp@127.0.0.1:5099>"),), body=b"ANS")
    actions = call.handle(ce.LegResponded("hp", ok_hp), 10.1)
    (ack,) = of(actions, ce.SendAck)
    assert ack.request.cseq == (hold.request.cseq[0], "ACK")
    assert ce.ConnectMedia("hp", FakeMedia("hp", False)) in actions
    # Resume: passed on as sendrecv.
    actions = _operator_reinvite(call, b"a=sendrecv", 6, 20.0, "rtx2")
    (resume,) = [a for a in of(actions, ce.SendRequest) if a.leg == "hp"]
    assert resume.request.body == b"OFFER-hp-sendrecv"


def test_refresh_without_hold_change_is_not_passed_on():
    call = _bridged_call()
    actions = _operator_reinvite(call, b"a=sendrecv", 5, 10.0)
    assert not of(actions, ce.SendRequest)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [200]


def test_unacked_200_ends_the_call_with_bye_both_ways():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 200, 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    actions = call.handle(ce.AckTimedOut(), 34.0)
    byes = {a.leg: a.request for a in of(actions, ce.SendRequest) if a.request.method == "BYE"}
    assert set(byes) == {"hp", "council-cctv-1#1"}
    assert byes["hp"].headers.get("Reason") == 'SIP;cause=408;text="ACK not received"'
    assert of(actions, ce.CallEnded)[0].summary.ended_by == "gateway"


def test_ring_timeout_and_unconfirmed_rooms_are_named_to_the_next_room():
    call = make_call()
    call.start(0.0)
    respond(call, "council-cctv-1#1", 180, 0.2)
    respond(call, "council-cctv-2#2", 180, 0.2)
    actions = call.handle_timer(20.0)  # council ring_timeout
    (police,) = [a for a in of(actions, ce.SendRequest) if a.request.method == "INVITE"]
    history = police.request.headers.get("History-Info")
    assert "council-cctv-1" in history and "council-cctv-2" in history and "cause%3D480" in history
    assert police.request.headers.get("Reason") == 'SIP;cause=480;text="council-cctv: Ring timeout"'


def test_gateway_stopping_ends_a_ringing_press_with_503_and_cancels_the_operators():
    """Drain time over while the rooms still ring: nothing is left open on the wire and the record says the
    press was interrupted by the gateway (not "unanswered": no room failed to answer)."""
    call = make_call()
    call.start(0.0)
    actions = call.handle(ce.GatewayStopping(), 5.0)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [503]
    cancels = of(actions, ce.SendCancel)
    assert cancels and all("Gateway shutting down" in a.reason for a in cancels)
    (ended,) = of(actions, ce.CallEnded)
    assert (ended.summary.outcome, ended.summary.ended_by) == ("interrupted", "gateway")
    assert "gateway-stopping" in [e["event"] for e in call.timeline]
    assert call.handle(ce.GatewayStopping(), 6.0) == []  # once


def test_gateway_stopping_hangs_up_both_sides_of_a_bridged_call():
    call = _bridged_call()
    actions = call.handle(ce.GatewayStopping(), 30.0)
    byes = [a for a in of(actions, ce.SendRequest) if a.request.method == "BYE"]
    assert {a.leg for a in byes} == {"hp", "council-cctv-1#1"}
    assert all("Gateway shutting down" in (a.request.headers.get("Reason") or "") for a in byes)
    (ended,) = of(actions, ce.CallEnded)
    assert (ended.summary.outcome, ended.summary.ended_by) == ("answered", "gateway")


def _dial_call(number: str, locate):
    from gateway.dialplan.load import parse_dialplan, validate_dialplan

    text = ("name: dial-test\nserves: {help_points: [hp-portland-square]}\nsteps:\n"
            "  - ring: {room: police-control, ring_timeout: 20, connect_timeout: 4}\n"
            f'  - dial: {{number: "{number}", ring_timeout: 30, connect_timeout: 4}}\n')
    dp = validate_dialplan(parse_dialplan(text, "dial.yaml"), INVENTORY.__class__(
        help_points=INVENTORY.help_points, rooms=INVENTORY.rooms, prompts=INVENTORY.prompts, trunk=True),
        "dial.yaml")
    counter = itertools.count()
    return Call("act-d", HP, parse_message(INVITE), "stx-1", ("UDP", "127.0.0.1", 5099), Plan(dp, HP.id, version=1),
                FakeNegotiator(), locate, ROOMS.get, CallConfig(host="127.0.0.1:5060", contact="sip:gateway@127.0.0.1:5060"),
                lambda: f"tag{next(counter)}", DAY)


def test_dial_step_rings_the_last_resort_number_and_bridges_it():
    """The police room is unreachable: the plan's last resort, a dial, places a real leg (to the number's URI,
    from ``locate('dial:<number>')``), and its answer is bridged (a number has no confirm step)."""
    asked = []

    def locate(target):
        asked.append(target)
        if target == "dial:+441623000000":
            return [("sip:+441623000000@192.0.2.50:5060", ("UDP", "192.0.2.50", 5060))]
        return []

    call = _dial_call("+441623000000", locate)
    actions = call.start(0.0)
    assert asked == ["police-control-1", "dial:+441623000000"]
    (invite,) = [a for a in of(actions, ce.SendRequest) if a.request.method == "INVITE"]
    assert invite.request.uri == "sip:+441623000000@192.0.2.50:5060"
    assert invite.request.headers.get("To") == "<sip:+441623000000@192.0.2.50:5060>"
    assert invite.dest == ("UDP", "192.0.2.50", 5060)
    (leg_id,) = call.legs
    actions = respond(call, leg_id, 200, 3.0, body=b"ANS")
    assert call.bridged is not None and call.bridged.id == leg_id
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [200]  # the help point is answered
    assert "bridged" in [e["event"] for e in call.timeline]


def test_dial_without_a_route_fails_as_unreachable_and_says_why():
    call = _dial_call("+441623000000", lambda target: [])
    call.start(0.0)
    failed = [e for e in call.timeline if e["event"] == "leg-unreachable"]
    assert failed[-1]["target"] == "+441623000000" and failed[-1]["why"] == "no trunk for this number"
