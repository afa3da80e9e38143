"""Several devices answering for one activation: positions with more than one registered contact, rooms
rung in parallel with a confirm digit, stale registrations, and the early dialog ended by BYE.

The pure :class:`Call` with the shipped ``sutton`` dialplan (both rooms confirm with DTMF 1 within 10 s,
council-cctv rings its two positions in parallel) and hand-advanced time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from test_call import (  # noqa: I001  (sibling test module)
    DAY,
    HP,
    INVENTORY,
    INVITE,
    NIGHT,
    ROOMS,
    ROOT,
    FakeNegotiator,
    info,
    make_call,
    of,
    respond,
)

from gateway.calls import events as ce
from gateway.calls.call import Call, CallConfig, LegState
from gateway.calls.metadata import HISTORY_ENTRIES
from gateway.dialplan.engine import Plan
from gateway.dialplan.load import load_dialplan_set
from gateway.media.errors import SdpNegotiationError
from gateway.sip.message import Headers, Request, parse_message


@dataclass(frozen=True)
class OpMedia:
    """An operator's negotiated media: a name tests can follow, and the address its SDP announced."""

    name: str
    remote_address: str
    remote_port: int


class LegMediaNegotiator(FakeNegotiator):
    """Each operator's answer body names its negotiated media, so tests see where media points."""

    def accept_operator_answer(self, answer: bytes):
        name, _, port = answer.decode().partition("@")
        return OpMedia(name, "10.1.0.1", int(port or 7000))


def forked_call(devices: int = 1, wall=DAY) -> Call:
    """A sutton call where every position is registered from ``devices`` contacts (10.0.0.0, 10.0.0.1...)."""
    sets = load_dialplan_set([ROOT / "dialplans" / "sutton.yaml"], INVENTORY)
    counter = itertools.count()

    def locate(position: str):
        return [(f"sip:{position}@10.0.0.{i}", ("UDP", f"10.0.0.{i}", 5060)) for i in range(devices)]

    return Call("act-f", HP, parse_message(INVITE), "stx-1", ("UDP", "127.0.0.1", 5099),
                Plan(sets.for_help_point("hp-portland-square"), "hp-portland-square"), LegMediaNegotiator(),
                locate, ROOMS.get, CallConfig("127.0.0.1:5060", "sip:gateway@127.0.0.1:5060"),
                lambda: f"t{next(counter)}", wall)


def answer(call: Call, leg_id: str, now: float, rtp_port: int = 7000):
    return respond(call, leg_id, 200, now, body=f"media-{leg_id}@{rtp_port}".encode())


def op_media(actions) -> list[str]:
    return [a.negotiated.name for a in of(actions, ce.ConnectMedia) if a.side == "op"]


def switches(actions) -> list[bool]:
    return [a.switch for a in of(actions, ce.ConnectMedia) if a.side == "op"]


def byes(actions) -> list[str]:
    return [a.leg for a in of(actions, ce.SendRequest) if a.request.method == "BYE"]


def test_rtp_confirm_after_two_answers_bridges_the_operator_who_pressed():
    # An auto-answering softphone (or voicemail) answers first; a person at the other position answers
    # later and presses 1.  The operator side's one RTP leg points at the latest answerer, so the RFC 4733
    # digit is theirs: they are bridged and credited, the auto-answerer is hung up.
    call = forked_call()
    call.start(0.0)
    first = answer(call, "council-cctv-1#1", 1.0, rtp_port=7001)
    assert op_media(first) == ["media-council-cctv-1#1"] and switches(first) == [False]
    second = answer(call, "council-cctv-2#2", 2.0, rtp_port=7002)
    # Another phone while the first may still send: the media leg latches only its announced address a moment.
    assert op_media(second) == ["media-council-cctv-2#2"] and switches(second) == [True]
    # The digit came from the address cctv-2's SDP announced (what the RTP leg had latched).
    actions = call.handle(ce.DigitDetected("op", "1", ("10.1.0.1", 7002)), 3.0)
    assert call.bridged is not None and call.bridged.id == "council-cctv-2#2"
    assert byes(actions) == ["council-cctv-1#1"]
    assert op_media(actions) == []  # already pointed at the bridged operator
    assert ce.BridgeMedia() in actions
    assert call.summary().answered_by == "council-cctv-2"


def test_info_confirm_from_the_first_answerer_points_media_back_at_them():
    call = forked_call()
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0)
    answer(call, "council-cctv-2#2", 2.0)  # media now points at cctv-2
    actions = info(call, "council-cctv-1#1", "1", 3.0)  # but cctv-1 confirms, by SIP INFO
    assert call.bridged is not None and call.bridged.id == "council-cctv-1#1"
    assert op_media(actions) == ["media-council-cctv-1#1"] and switches(actions) == [True]
    assert not [a for a in of(actions, ce.PlayPrompt) if a.side == "op"]  # it confirmed: no "press 1" again
    order = [type(a) for a in actions if isinstance(a, ce.ConnectMedia | ce.BridgeMedia)]
    assert order == [ce.ConnectMedia, ce.BridgeMedia]  # pointed back before the bridge
    assert byes(actions) == ["council-cctv-2#2"]


def test_latest_answerer_hanging_up_unconfirmed_hands_media_back_to_the_other():
    call = forked_call()
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0)
    answer(call, "council-cctv-2#2", 2.0)
    leg = call.legs["council-cctv-2#2"]
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("From", "<sip:x@y>;tag=op-council-cctv-2#2"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", "3 BYE")]))
    actions = call.handle(ce.InDialogRequest("council-cctv-2#2", bye, "btx"), 3.0)
    assert op_media(actions) == ["media-council-cctv-1#1"]
    assert ce.PlayPrompt("op", "confirm-operator") in actions  # asked again, now that it can hear
    actions = call.handle(ce.DigitDetected("op", "1"), 4.0)
    assert call.bridged is not None and call.bridged.id == "council-cctv-1#1"


def test_other_devices_of_the_bridged_position_are_cancelled_and_cannot_take_the_audio():
    call = forked_call(devices=2)
    call.start(0.0)
    assert sorted(call.legs) == ["council-cctv-1#1", "council-cctv-1#2", "council-cctv-2#3", "council-cctv-2#4"]
    answer(call, "council-cctv-1#1", 1.0)
    actions = info(call, "council-cctv-1#1", "1", 2.0)
    assert sorted(a.leg for a in of(actions, ce.SendCancel)) == [
        "council-cctv-1#2", "council-cctv-2#3", "council-cctv-2#4"]
    # The CANCEL crossed a 200 from the position's second device: it is ACKed and hung up, and the
    # operator who is talking keeps the audio.
    actions = answer(call, "council-cctv-1#2", 5.0)
    assert op_media(actions) == []
    assert of(actions, ce.SendAck) and byes(actions) == ["council-cctv-1#2"]
    assert call.bridged.id == "council-cctv-1#1" and call.ended_at is None


def test_late_answer_after_bridge_without_a_cancel_is_hung_up():
    # Whatever the leg's state says, once a call is bridged another 200 never re-points the media.
    call = forked_call(devices=2)
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    call.legs["council-cctv-2#3"].cancel_reason = None  # as if the CANCEL had not been decided
    call.legs["council-cctv-2#3"].state = LegState.EARLY
    actions = answer(call, "council-cctv-2#3", 3.0)
    assert op_media(actions) == [] and byes(actions) == ["council-cctv-2#3"]


def test_decline_from_the_live_device_is_not_held_back_by_a_stale_registration():
    # At night only police-control rings.  Its position has a live device and a stale binding that never
    # answers anything.  The live device rings, then declines: failover is immediate and named "decline",
    # and the stale leg is cancelled, instead of waiting 30 s and recording a ring timeout.
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    assert sorted(call.legs) == ["police-control-1#1", "police-control-1#2"]
    respond(call, "police-control-1#1", 180, 0.1)
    actions = respond(call, "police-control-1#1", 603, 2.0)
    assert [a.leg for a in of(actions, ce.SendCancel)] == ["police-control-1#2"]
    assert ("police-control-1", "603 Decline") in call.failures
    ended = [(e["at"], e["result"]) for e in call.summary().routing if e["type"] == "LegEnded"]
    assert ended == [(2.0, "decline")]
    retried = [e for e in call.summary().routing if e["type"] == "Retried"]
    assert retried and retried[0]["at"] == 2.0 and retried[0]["cause"] == "decline"
    assert call.get_timer() == 5.0  # the next attempt, retry_interval after the first: not 30 s of ringing


def test_busy_without_ringing_is_busy_not_unreachable():
    # The live device is busy at once; the other has said nothing.  It may just be slow (one lost INVITE
    # is resent after T1), so the busy is held until 1 s after its INVITE, then it counts as stale.
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    actions = respond(call, "police-control-1#1", 486, 0.1)
    assert of(actions, ce.SendCancel) == [] and call.get_timer() == 1.0
    actions = call.handle_timer(1.0)
    assert [a.leg for a in of(actions, ce.SendCancel)] == ["police-control-1#2"]
    ended = [(e["at"], e["result"]) for e in call.summary().routing if e["type"] == "LegEnded"]
    assert ended == [(1.0, "busy")]
    assert [e["leg"] for e in call.timeline if e["event"] == "leg-stale"] == ["police-control-1#2"]


def test_a_slow_device_that_rings_after_a_sibling_was_busy_gets_its_chance():
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    respond(call, "police-control-1#1", 486, 0.1)  # a do-not-disturb desk phone
    respond(call, "police-control-1#2", 180, 0.6)  # the softphone, its INVITE resent once
    assert call.handle_timer(1.0) == []  # held failure looked at again: the softphone rings, nothing fails
    answer(call, "police-control-1#2", 3.0)
    info(call, "police-control-1#2", "1", 4.0)
    assert call.bridged.id == "police-control-1#2"


def test_a_device_that_rings_still_gets_its_chance_after_a_sibling_is_busy():
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    respond(call, "police-control-1#2", 180, 0.1)  # a second live device, ringing
    actions = respond(call, "police-control-1#1", 486, 0.2)
    assert of(actions, ce.SendCancel) == [] and call.legs["police-control-1#2"].state is LegState.EARLY
    answer(call, "police-control-1#2", 1.0)
    info(call, "police-control-1#2", "1", 2.0)
    assert call.bridged.id == "police-control-1#2"


def test_transport_error_on_one_device_waits_for_a_sibling_that_has_not_answered_yet():
    # A transport error is no answer from anyone: a live device may just not have sent its 180 yet.
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    actions = call.handle(ce.LegTimedOut("police-control-1#2", transport_error=True), 0.01)
    assert of(actions, ce.SendCancel) == [] and call.legs["police-control-1#1"].state is LegState.CALLING


def test_bye_in_the_early_dialog_gets_a_487_for_the_invite():
    # RFC 3261 §15.1.2: the help point may end the early dialog (our 183) with BYE; the INVITE must still
    # get its final response, or its server transaction waits forever.
    call = make_call()
    (ringing,) = of(call.start(0.0), ce.SendResponse)
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("Via", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbye1"), ("From", ringing.response.headers.get("From")),
        ("To", ringing.response.headers.get("To")), ("Call-ID", "hpcall-1"), ("CSeq", "2 BYE")]))
    actions = call.handle(ce.InDialogRequest("hp", bye, "btx"), 5.0)
    statuses = {a.transaction: a.response.status for a in of(actions, ce.SendResponse)}
    assert statuses == {"btx": 200, "stx-1": 487}
    (ended,) = of(actions, ce.CallEnded)
    assert (ended.summary.outcome, ended.summary.ended_by) == ("abandoned", "hp")


def test_history_info_stays_bounded_when_the_police_room_is_rung_for_hours():
    # The last step repeats forever: every ring timeout adds a failure, and each new INVITE names the
    # earlier ones.  It keeps the latest entries, numbered by their place among all attempts.
    call = make_call()
    actions, now, invites = call.start(0.0), 0.0, []
    while now < 3 * 3600:
        for a in of(actions, ce.SendRequest):
            if a.request.method == "INVITE":
                invites.append((a.request, len(call.failures)))
                respond(call, a.leg, 180, now)
        report = [a for a in of(actions, ce.PlayPrompt) if a.report]
        if report:
            actions = call.handle(ce.PromptDone("hp", report[0].prompt), now)
        else:
            now = call.get_timer()
            actions = call.handle_timer(now)
    assert len(call.failures) > 100 and call.ended_at is None
    last, failed_before = invites[-1]
    history = last.headers.get("History-Info").split(", ")
    assert len(history) == HISTORY_ENTRIES
    assert history[-1].endswith("x-room=police-control") and f"index=1.{failed_before};" in history[-1]
    assert f"index=1.{failed_before - HISTORY_ENTRIES + 1};" in history[0]
    sizes = [len(bytes(r)) for r, _ in invites]
    assert max(sizes) < 2000
    assert sizes[-1] <= max(sizes[:20]) + 10  # no growth once capped (index digits aside)


def test_a_retransmitted_200_of_a_leg_already_hung_up_is_acked_not_byed_again():
    call = forked_call(devices=2)
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0)
    info(call, "council-cctv-1#1", "1", 2.0)
    first = answer(call, "council-cctv-1#2", 3.0)  # crossed our CANCEL: ACK + BYE
    assert len(of(first, ce.SendAck)) == 1 and byes(first) == ["council-cctv-1#2"]
    again = answer(call, "council-cctv-1#2", 3.5)  # the phone had not seen our ACK yet
    assert len(of(again, ce.SendAck)) == 1 and byes(again) == []


def op_bye(call: Call, leg_id: str, now: float):
    leg = call.legs[leg_id]
    bye = Request("BYE", "sip:gateway@127.0.0.1", Headers([
        ("From", f"<sip:x@y>;tag=op-{leg_id}"), ("To", f"<sip:a@b>;tag={leg.invite.from_.tag}"),
        ("Call-ID", leg.invite.call_id), ("CSeq", "9 BYE")]))
    return call.handle(ce.InDialogRequest(leg_id, bye, "btx"), now)


def test_a_6xx_from_one_device_spares_the_device_that_answered():
    # RFC 3261 §16.7 cancels pending branches only: the operator who answered on the desk phone and is
    # about to confirm is not cut off because the softphone still ringing beside it was declined.
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    respond(call, "police-control-1#1", 180, 0.1)
    respond(call, "police-control-1#2", 180, 0.1)
    answer(call, "police-control-1#1", 2.0)
    actions = respond(call, "police-control-1#2", 603, 3.0)
    assert byes(actions) == [] and of(actions, ce.SendCancel) == []
    assert not [e for e in call.summary().routing if e["type"] == "LegEnded"]  # the position is alive
    info(call, "police-control-1#1", "1", 4.0)
    assert call.bridged.id == "police-control-1#1"


def test_a_second_device_with_unusable_sdp_leaves_the_answered_one_to_confirm():
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    answer(call, "police-control-1#1", 1.0)

    def refuse(_body):
        raise SdpNegotiationError("c= is not an IP4 address")

    call.negotiator.accept_operator_answer = refuse  # type: ignore[method-assign]
    actions = respond(call, "police-control-1#2", 200, 2.0, body=b"v=0")
    assert byes(actions) == ["police-control-1#2"]
    assert not [e for e in call.summary().routing if e["type"] == "LegEnded"]
    assert call.legs["police-control-1#1"].state is LegState.ANSWERED
    info(call, "police-control-1#1", "1", 3.0)
    assert call.bridged is not None and call.bridged.id == "police-control-1#1"


def test_a_second_device_of_the_same_position_is_asked_to_confirm_too():
    call = forked_call(devices=2, wall=NIGHT)
    call.start(0.0)
    assert ce.PlayPrompt("op", "confirm-operator") in answer(call, "police-control-1#1", 1.0)
    second = answer(call, "police-control-1#2", 2.0)
    assert op_media(second) == ["media-police-control-1#2"]
    assert second.count(ce.PlayPrompt("op", "confirm-operator")) == 1


def test_an_operator_bye_crossing_ours_does_not_cancel_the_retry():
    call = forked_call(devices=1, wall=NIGHT)
    call.start(0.0)
    answer(call, "police-control-1#1", 1.0)
    assert byes(call.handle_timer(11.0)) == ["police-control-1#1"]  # not confirmed within 10 s
    assert "police-control-1#2" in call.legs  # the retry rings at once
    actions = op_bye(call, "police-control-1#1", 11.05)
    assert [a.response.status for a in of(actions, ce.SendResponse)] == [200]
    assert of(actions, ce.SendCancel) == [] and call.legs["police-control-1#2"].cancel_reason is None


def test_an_rfc4733_digit_with_two_phones_answered_counts_only_from_a_known_address():
    call = forked_call()
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0, rtp_port=7001)  # a person
    answer(call, "council-cctv-2#2", 2.0, rtp_port=7002)  # an auto-answering phone, silent
    # The RTP leg latched back onto cctv-1 (the auto-answerer sends nothing): its digit is cctv-1's.
    call.handle(ce.DigitDetected("op", "1", ("10.1.0.1", 7001)), 3.5)
    assert call.bridged is not None and call.bridged.id == "council-cctv-1#1"


def test_an_rfc4733_digit_from_an_unknown_address_is_ignored_when_two_phones_answered():
    call = forked_call()
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0, rtp_port=7001)
    answer(call, "council-cctv-2#2", 2.0, rtp_port=7002)
    actions = call.handle(ce.DigitDetected("op", "1", ("203.0.113.9", 40000)), 3.0)  # behind NAT: whose?
    assert call.bridged is None and byes(actions) == []
    assert [e["event"] for e in call.timeline][-1] == "digit-ignored"
    info(call, "council-cctv-2#2", "1", 3.5)  # SIP INFO always says who pressed
    assert call.bridged.id == "council-cctv-2#2"


def test_with_one_phone_answered_an_rfc4733_digit_is_its_own_whatever_the_source():
    call = forked_call()
    call.start(0.0)
    answer(call, "council-cctv-1#1", 1.0, rtp_port=7001)
    call.handle(ce.DigitDetected("op", "1", ("203.0.113.9", 40000)), 2.0)  # a softphone behind NAT
    assert call.bridged is not None and call.bridged.id == "council-cctv-1#1"


def test_a_held_failure_does_not_outlive_its_ring(tmp_path):
    # Step 1's busy is held (its sibling is young); the plan's connect timeout ends that ring and step 2 rings
    # the same position again.  The old busy must not fail the new ring, nor cancel its phones as stale.
    (tmp_path / "dp.yaml").write_text(
        "name: fast-then-again\n"
        "serves: {help_points: [hp-portland-square]}\n"
        "rooms:\n"
        "  police-control: {confirm: {digit: 1, within: 10}}\n"
        "steps:\n"
        "  - ring: {room: police-control, ring_timeout: 20, connect_timeout: 0.5}\n"
        "  - ring: {room: police-control, ring_timeout: 30, connect_timeout: 4}\n"
        "  - message: all-rooms-unavailable\n")
    sets = load_dialplan_set([tmp_path / "dp.yaml"], INVENTORY)
    counter = itertools.count()
    call = Call("act-r", HP, parse_message(INVITE), "stx-1", ("UDP", "127.0.0.1", 5099),
                Plan(sets.for_help_point("hp-portland-square"), "hp-portland-square"), LegMediaNegotiator(),
                lambda p: [(f"sip:{p}@10.0.0.{i}", ("UDP", f"10.0.0.{i}", 5060)) for i in range(2)],
                ROOMS.get, CallConfig("127.0.0.1:5060", "sip:gateway@127.0.0.1:5060"),
                lambda: f"t{next(counter)}", NIGHT)
    call.start(0.0)
    respond(call, "police-control-1#1", 486, 0.1)  # held: #2 young and silent
    call.handle_timer(0.5)  # connect timeout: step 2 rings #3 and #4
    assert sorted(call.legs)[-2:] == ["police-control-1#3", "police-control-1#4"]
    while (t := call.get_timer()) is not None and t <= 1.6:
        call.handle_timer(t)
    respond(call, "police-control-1#3", 180, 1.6)  # 1.6 s into a 4 s connect timeout
    assert [e for e in call.timeline if e["event"] == "leg-stale"] == []
    assert call.legs["police-control-1#3"].cancel_reason is None
    assert call.ended_at is None
