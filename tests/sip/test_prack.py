"""RFC 3262 reliable provisional responses, UAS side: the pure sender, with hand-advanced time."""

from __future__ import annotations

import pytest

from gateway.sip.message import build_response, parse_message
from gateway.sip.prack import ReliableProvisionals, parse_rack, requires_100rel

INVITE = parse_message(
    b"INVITE sip:help@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKa\r\n"
    b"From: <sip:hp@127.0.0.1>;tag=1\r\nTo: <sip:help@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n"
    b"Require: timer , 100REL\r\nContent-Length: 0\r\n\r\n"
)


def progress(body: bytes = b"SDP"):
    return build_response(INVITE, 183, to_tag="gw", body=body)


@pytest.mark.parametrize(("require", "expected"), [
    ((), False), (("timer",), False), (("100rel",), True), (("timer, 100rel",), True), (("timer", "100rel"), True),
    (("100relx",), False),
])
def test_requires_100rel_reads_every_require_header_and_list(require, expected):
    request = INVITE.with_headers(INVITE.headers.remove("Require"))
    for value in require:
        request = request.with_headers(request.headers.add("Require", value))
    assert requires_100rel(request) is expected
    assert requires_100rel(INVITE)  # "timer , 100REL": option tags compare case-insensitively


@pytest.mark.parametrize(("value", "parsed"), [
    ("776656 1 INVITE", (776656, 1, "INVITE")), ("  5   7 INVITE ", (5, 7, "INVITE")),
    (None, None), ("", None), ("5 INVITE", None), ("x 7 INVITE", None), ("5 7 INVITE extra", None),
])
def test_parse_rack(value, parsed):
    assert parse_rack(value) == parsed


def test_reliable_183_carries_require_and_rseq_and_is_retransmitted_doubling_until_64_t1():
    rel = ReliableProvisionals(INVITE, first_rseq=42, t1=0.5)
    sent = rel.send(progress(), 10.0)
    assert sent.headers.get_all("Require") == ["100rel"] and sent.headers.get("RSeq") == "42"
    assert sent.body == b"SDP" and rel.unacknowledged and rel.holds_answer
    times = []
    now = rel.get_timer()
    while now is not None:
        again = rel.handle_timer(now)
        if again is not None:
            assert again == sent
            times.append(now - 10.0)
        now = rel.get_timer()
    # T1, then doubling with no T2 cap: sent at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; given up at 64*T1 = 32 s.
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert rel.gave_up and not rel.unacknowledged and not rel.holds_answer


def test_matching_prack_stops_retransmissions_and_releases_the_answer():
    rel = ReliableProvisionals(INVITE, first_rseq=42)
    rel.send(progress(), 0.0)
    assert rel.handle_timer(0.5) is not None
    assert not rel.receive_prack("42 8 INVITE")  # wrong CSeq
    assert not rel.receive_prack("43 7 INVITE")  # wrong RSeq
    assert not rel.receive_prack("42 7 BYE")  # wrong method
    assert not rel.receive_prack("garbage")
    assert rel.holds_answer
    assert rel.receive_prack("42 7 INVITE")
    assert not rel.holds_answer and rel.get_timer() is None and not rel.gave_up
    assert rel.receive_prack("42 7 INVITE")  # a retransmitted PRACK: still matches what we sent


def test_a_183_without_sdp_does_not_hold_the_answer():
    rel = ReliableProvisionals(INVITE, first_rseq=1)
    rel.send(progress(b""), 0.0)
    assert rel.unacknowledged and not rel.holds_answer


def test_stop_ends_retransmissions_but_a_late_prack_is_still_answered():
    rel = ReliableProvisionals(INVITE, first_rseq=9)
    rel.send(progress(), 0.0)
    rel.stop()
    assert rel.get_timer() is None and rel.handle_timer(100.0) is None and not rel.gave_up
    assert rel.receive_prack("9 7 INVITE")


def test_one_unacknowledged_at_a_time_and_rseq_increments():
    rel = ReliableProvisionals(INVITE, first_rseq=2**31 - 1)
    rel.send(progress(), 0.0)
    with pytest.raises(ValueError):
        rel.send(progress(), 0.1)
    assert rel.receive_prack(f"{2**31 - 1} 7 INVITE")
    assert rel.send(progress(), 0.2).headers.get("RSeq") == str(2**31)


@pytest.mark.parametrize("rseq", [0, 2**31])
def test_first_rseq_range(rseq):
    with pytest.raises(ValueError):
        ReliableProvisionals(INVITE, first_rseq=rseq)


def test_only_101_to_199_are_sent_reliably():
    rel = ReliableProvisionals(INVITE, first_rseq=1)
    with pytest.raises(ValueError):
        rel.send(build_response(INVITE, 200, to_tag="gw"), 0.0)
