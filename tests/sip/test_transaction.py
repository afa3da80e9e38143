"""Transactions and the endpoint, driven by hand-advanced time (no sleeps).

Two endpoints are joined by ``transfer`` (aioquic tests style); every timer is
asserted at its exact RFC 3261 instant.
"""

from __future__ import annotations

import itertools

import pytest

from gateway.sip import events as ev
from gateway.sip.endpoint import EndpointConfig, SipEndpoint
from gateway.sip.message import Headers, Request, build_response, parse_message
from gateway.sip.transaction import T1, T2, T4

A = ("UDP", "127.0.0.1", 5060)
B = ("UDP", "127.0.0.2", 5070)


def make(local: tuple[str, str, int]) -> SipEndpoint:
    counter = itertools.count()
    return SipEndpoint(
        EndpointConfig(local={"UDP": (local[1], local[2]), "TCP": (local[1], local[2])},
                       token=lambda: f"t{next(counter)}")
    )


def request(method: str, cseq: int = 1, call_id: str = "call-1") -> Request:
    return Request(
        method,
        "sip:bob@127.0.0.2:5070",
        Headers([
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@127.0.0.1>;tag=a1"),
            ("To", "<sip:bob@127.0.0.2>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:alice@127.0.0.1:5060>"),
        ]),
    )


def drain(ep: SipEndpoint) -> list[ev.Event]:
    out = []
    while (e := ep.next_event()) is not None:
        out.append(e)
    return out


def transfer(src: SipEndpoint, src_addr, dst: SipEndpoint, now: float) -> int:
    """Deliver everything *src* wants to send to *dst*; return the count."""
    sent = src.datagrams_to_send(now)
    for data, _peer in sent:
        dst.receive(data, src_addr, now)
    return len(sent)


def sent_times(ep: SipEndpoint, until: float) -> list[float]:
    """Advance time by timers only, recording when *ep* sends something."""
    times = []
    while (t := ep.get_timer()) is not None and t <= until:
        ep.handle_timer(t)
        if ep.datagrams_to_send(t):
            times.append(round(t, 6))
    return times


def test_invite_client_timer_a_doubles_and_timer_b_times_out_at_64_t1():
    a = make(A)
    key = a.send_request(request("INVITE"), B, 0.0)
    assert len(a.datagrams_to_send(0.0)) == 1
    times = sent_times(a, 100.0)
    # Timer A: T1, 2T1, 4T1 ... until Timer B at 64*T1 = 32 s (§17.1.1.2).
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = drain(a)
    assert events == [ev.TransactionTimedOut(key, events[0].request, False)]
    assert a.transaction_count == 0


def test_non_invite_client_timer_e_caps_at_t2_and_f_fires_at_32s():
    a = make(A)
    a.send_request(request("OPTIONS"), B, 0.0)
    a.datagrams_to_send(0.0)
    times = sent_times(a, 100.0)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert isinstance(drain(a)[0], ev.TransactionTimedOut)


def test_non_invite_round_trip_and_server_absorbs_retransmission():
    a, b = make(A), make(B)
    a.send_request(request("OPTIONS"), B, 0.0)
    transfer(a, A, b, 0.0)
    (received,) = drain(b)
    assert isinstance(received, ev.RequestReceived)
    # The client retransmits before the server answers: absorbed, no new event.
    a.handle_timer(T1)
    transfer(a, A, b, T1)
    assert drain(b) == []
    b.send_response(received.transaction, build_response(received.request, 200), T1)
    transfer(b, B, a, T1)
    (resp,) = drain(a)
    assert isinstance(resp, ev.ResponseReceived) and resp.response.status == 200
    # A late retransmission of the request gets the same 200 again (§17.2.2).
    a_retx = received.request
    b.receive(bytes(a_retx), A, 2.0)
    (data, peer), = b.datagrams_to_send(2.0)
    assert parse_message(data).status == 200 and peer == A
    # Timer K (T4) on the client, Timer J (64*T1) on the server.
    assert a.get_timer() == pytest.approx(T1 + T4)
    a.handle_timer(T1 + T4)
    assert a.transaction_count == 0
    assert b.get_timer() == pytest.approx(T1 + 64 * T1)


def test_invite_failure_is_acked_by_transaction_and_timer_d_is_32s():
    a, b = make(A), make(B)
    ikey = a.send_request(request("INVITE"), B, 0.0)
    transfer(a, A, b, 0.0)
    (inv,) = drain(b)
    transfer(b, B, a, 0.0)  # the automatic 100 Trying
    assert drain(a)[0].response.status == 100
    b.send_response(inv.transaction, build_response(inv.request, 486, to_tag="b1"), 1.0)
    transfer(b, B, a, 1.0)
    (busy,) = drain(a)
    assert busy.response.status == 486 and busy.transaction == ikey
    # The ACK goes out from the client transaction itself and confirms the server's.
    ack = a.datagrams_to_send(1.0)
    assert parse_message(ack[0][0]).method == "ACK"
    b.receive(ack[0][0], A, 1.0)
    assert drain(b) == []  # ACK for a non-2xx is absorbed by the transaction
    assert a.get_timer() == pytest.approx(1.0 + 32.0)  # Timer D
    assert b.get_timer() == pytest.approx(1.0 + T4)  # Timer I


def test_invite_server_timer_g_and_h_without_ack():
    a, b = make(A), make(B)
    a.send_request(request("INVITE"), B, 0.0)
    transfer(a, A, b, 0.0)
    (inv,) = drain(b)
    b.datagrams_to_send(0.0)
    b.send_response(inv.transaction, build_response(inv.request, 480, to_tag="b1"), 0.0)
    b.datagrams_to_send(0.0)
    times = sent_times(b, 100.0)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    (timeout,) = drain(b)
    assert isinstance(timeout, ev.TransactionTimedOut)


def test_2xx_is_retransmitted_until_the_ack_arrives():
    a, b = make(A), make(B)
    ikey = a.send_request(request("INVITE"), B, 0.0)
    transfer(a, A, b, 0.0)
    (inv,) = drain(b)
    b.datagrams_to_send(0.0)
    b.send_response(inv.transaction, build_response(inv.request, 200, to_tag="b1"), 0.0)
    b.datagrams_to_send(0.0)
    b.handle_timer(T1)
    assert len(b.datagrams_to_send(T1)) == 1  # 2xx retransmitted by Timer G pacing
    ack = Request("ACK", "sip:bob@127.0.0.2:5070", inv.request.headers.remove("Via").replace("CSeq", "1 ACK"))
    a.send_stateless(ack, B)
    transfer(a, A, b, 0.6)
    (got_ack,) = drain(b)
    assert isinstance(got_ack, ev.RequestReceived) and got_ack.transaction is None
    assert sent_times(b, 40.0) == []  # no more retransmissions after the ACK
    assert ikey.startswith("c|")


def test_the_ack_sent_again_for_a_retransmitted_2xx_is_the_same_ack():
    """RFC 3261 §13.2.2.4: the ACK is passed to the transport again for each retransmission of its 2xx.

    It is the same request each time (its branch too): a peer sees copies of one ACK, never a second one
    (SIPp aborts the call on such an "unexpected" ACK).  Another INVITE's 2xx (CSeq) or another fork's
    (To tag) gets an ACK of its own.
    """
    a = make(A)

    def ack(cseq: int = 1, to_tag: str = "b1") -> bytes:
        message = request("ACK", cseq)
        message = message.with_headers(message.headers.replace("To", f"<sip:bob@127.0.0.2>;tag={to_tag}"))
        a.send_stateless(message, B)
        (datagram,) = a.datagrams_to_send(0.0)
        return datagram[0]

    first = ack()
    assert ack() == first  # the 2xx came again: the same ACK, byte for byte
    branches = {parse_message(data).top_via.branch for data in (first, ack(2), ack(1, "b2"))}
    assert len(branches) == 3 and all(b.startswith("z9hG4bK") for b in branches)


def test_cancel_waits_for_provisional_then_487():
    a, b = make(A), make(B)
    ikey = a.send_request(request("INVITE"), B, 0.0)
    a.send_cancel(ikey, 0.0, reason='SIP;cause=200;text="Call completed elsewhere"')
    assert len(a.datagrams_to_send(0.0)) == 1  # only the INVITE: CANCEL waits (§9.1)
    a.handle_timer(T1)
    a.datagrams_to_send(T1)
    # Re-deliver: b gets the INVITE, answers 100, a then sends the CANCEL.
    a2 = request("INVITE")
    del a2
    b.receive(bytes(a._txs[ikey].request), A, 0.6)
    (inv,) = drain(b)
    transfer(b, B, a, 0.6)
    drain(a)
    (cancel_data, _), = a.datagrams_to_send(0.6)
    cancel = parse_message(cancel_data)
    assert cancel.method == "CANCEL" and cancel.headers.get("Reason").startswith("SIP;cause=200")
    assert cancel.top_via.branch == inv.request.top_via.branch
    b.receive(cancel_data, A, 0.6)
    (cancelled,) = drain(b)
    assert isinstance(cancelled, ev.CancelReceived) and cancelled.invite_transaction == inv.transaction
    b.send_response(inv.transaction, build_response(inv.request, 487, to_tag="b1"), 0.6)
    transfer(b, B, a, 0.6)
    statuses = sorted(e.response.status for e in drain(a))
    assert statuses == [200, 487]


def test_cancel_for_unknown_invite_gets_481():
    b = make(B)
    cancel = request("CANCEL").with_headers(
        request("CANCEL").headers.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnone", first=True))
    b.receive(bytes(cancel), A, 0.0)
    (data, _), = b.datagrams_to_send(0.0)
    assert parse_message(data).status == 481


def test_tcp_has_no_retransmissions_and_zero_linger():
    a = make(A)
    tcp_b = ("TCP", "127.0.0.2", 5070)
    a.send_request(request("OPTIONS"), tcp_b, 0.0)
    (data, peer), = a.datagrams_to_send(0.0)
    assert peer == tcp_b and b"SIP/2.0/TCP" in data
    assert a.get_timer() == pytest.approx(64 * T1)  # Timer F only


def test_received_and_rport_are_stamped_and_used_for_the_response():
    b = make(B)
    req = request("OPTIONS").with_headers(
        request("OPTIONS").headers.add("Via", "SIP/2.0/UDP 10.0.0.9:5099;branch=z9hG4bKx;rport", first=True))
    b.receive(bytes(req), ("UDP", "203.0.113.7", 40000), 0.0)
    (got,) = drain(b)
    assert got.request.top_via.received == "203.0.113.7"
    assert got.request.top_via.rport == "40000"
    b.send_response(got.transaction, build_response(got.request, 200), 0.0)
    (data, peer), = b.datagrams_to_send(0.0)
    assert peer == ("UDP", "203.0.113.7", 40000)
    assert "received=203.0.113.7" in parse_message(data).headers.get("Via")


def test_garbage_never_raises_and_routable_bad_request_gets_400():
    b = make(B)
    b.receive(b"\x00\xffnot sip at all", A, 0.0)
    (rej,) = drain(b)
    assert isinstance(rej, ev.MessageRejected) and rej.status == 0
    bad = request("OPTIONS").with_headers(
        request("OPTIONS").headers.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKy", first=True)
        .replace("CSeq", "1 INVITE"))
    b.receive(bytes(bad), A, 0.0)
    (rej,) = drain(b)
    assert rej.status == 400
    (data, _), = b.datagrams_to_send(0.0)
    assert parse_message(data).status == 400


def test_timer_t2_constant():
    assert (T1, T2, T4) == (0.5, 4.0, 5.0)


@pytest.mark.parametrize(
    ("defect", "status"),
    [
        (b"Max-Forwards 70\r\n", 400),  # a header line without a colon
        (b"Content-Length: 9999\r\n", 400),  # body shorter than Content-Length (§18.3)
        (b"".join(b"X-Flood-%d: x\r\n" % i for i in range(300)), 400),  # header flood
    ],
)
def test_unparseable_but_routable_request_gets_an_error_response(defect, status):
    b = make(B)
    data = (
        b"OPTIONS sip:gw@127.0.0.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbad;rport\r\n"
        b"From: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:gw@127.0.0.2>\r\nCall-ID: bad-1\r\nCSeq: 1 OPTIONS\r\n"
        + defect + b"\r\n"
    )
    b.receive(data, A, 0.0)
    (rej,) = drain(b)
    assert isinstance(rej, ev.MessageRejected) and rej.status == status
    (out, peer), = b.datagrams_to_send(0.0)
    resp = parse_message(out)
    assert resp.status == status and resp.call_id == "bad-1" and peer == ("UDP", "127.0.0.1", 5060)


def test_unroutable_garbage_gets_no_response():
    b = make(B)
    b.receive(b"OPTIONS sip:gw SIP/2.0\r\nMax-Forwards 70\r\n\r\n", A, 0.0)
    assert drain(b)[0].status == 0
    assert b.datagrams_to_send(0.0) == []


def test_configured_t1_scales_every_timer():
    counter = itertools.count()
    a = SipEndpoint(EndpointConfig(local={"UDP": ("127.0.0.1", 5060)}, timers=(1.0, 4.0, 5.0),
                                   token=lambda: f"t{next(counter)}"))
    a.send_request(request("INVITE"), B, 0.0)
    a.datagrams_to_send(0.0)
    # Timer A starts at T1 = 1 s and doubles; Timer B = 64*T1 = 64 s.
    assert sent_times(a, 100.0) == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]


def test_drain_waits_for_byes_owed_responses_and_invites_being_settled():
    """What a graceful drain waits for (SipEndpoint.in_progress), with hand-advanced time."""
    a, b = make(A), make(B)
    # Our BYE waiting for its response: counted until the 200 arrives.
    a.send_request(request("BYE"), B, 0.0)
    transfer(a, A, b, 0.0)
    assert a.in_progress(0.0) == 1
    # The peer owes a final response to the BYE it received: counted on its side until it answers.
    (received,) = [e for e in drain(b) if isinstance(e, ev.RequestReceived)]
    assert b.in_progress(0.0) == 1
    b.send_response(received.transaction, build_response(received.request, 200), 0.1)
    assert b.in_progress(0.1) == 0  # Completed (Timer J) is not in progress
    transfer(b, B, a, 0.1)
    assert a.in_progress(0.1) == 0 and a.transaction_count == 1  # BYE in Completed (Timer K)


def test_drain_stops_waiting_for_an_invite_nothing_answers_after_8_t1():
    """A forked leg to a dead softphone's stale binding: Calling until Timer B (32 s), yet after 4 s with
    no response at all it no longer holds a restart (its call has ended; presses would be turned away)."""
    a = make(A)
    a.send_request(request("INVITE"), B, 0.0)
    a.datagrams_to_send(0.0)
    assert a.in_progress(0.0) == 1
    a.handle_timer(3.5)  # retransmitted at 0.5, 1.5 and 3.5 s: still young
    assert a.in_progress(3.9) == 1
    assert a.in_progress(8 * T1) == 0
    assert a.transaction_count == 1  # still retransmitting until Timer B: only the drain stops waiting


def test_drain_waits_for_a_cancelled_invite_until_its_487():
    """A CANCEL held back for a provisional response, then the CANCEL's 200 with the 487 still due: a drain
    that exited there would leave a phone ringing, or answered across the CANCEL with nobody to ACK."""
    a, b = make(A), make(B)
    ikey = a.send_request(request("INVITE"), B, 0.0)
    a.send_cancel(ikey, 0.0)
    assert len(a.datagrams_to_send(0.0)) == 1  # the INVITE only: the CANCEL waits (§9.1)
    assert a.in_progress(0.0) == 1
    b.receive(bytes(a._txs[ikey].request), A, 0.6)  # the peer is alive: 100 Trying, then the CANCEL goes
    (inv,) = drain(b)
    transfer(b, B, a, 0.6)
    drain(a)
    transfer(a, A, b, 0.6)
    assert a.in_progress(0.6) == 2  # INVITE Proceeding, CANCEL Trying
    (cancelled,) = drain(b)
    assert isinstance(cancelled, ev.CancelReceived)
    transfer(b, B, a, 0.6)  # the CANCEL's 200
    drain(a)
    assert a.in_progress(10.0) == 1  # the INVITE waits for its 487, however long: it is not unanswered
    b.send_response(inv.transaction, build_response(inv.request, 487, to_tag="b1"), 10.0)
    transfer(b, B, a, 10.0)
    assert [e.response.status for e in drain(a)] == [487]
    assert a.in_progress(10.0) == 0


def ringing_invite(a: SipEndpoint, b: SipEndpoint, now: float) -> tuple[str, ev.RequestReceived]:
    """An INVITE from *a* that *b* has answered with 100 Trying (and 180 Ringing): a is Proceeding."""
    ikey = a.send_request(request("INVITE"), B, now)
    transfer(a, A, b, now)
    (inv,) = drain(b)
    b.send_response(inv.transaction, build_response(inv.request, 180, to_tag="b1"), now)
    transfer(b, B, a, now)
    assert [e.response.status for e in drain(a)] == [100, 180]
    return ikey, inv


def test_a_ringing_invite_is_not_ended_by_timer_b():
    """§17.1.1.2: Timer B runs in Calling only; a control-room phone may ring for minutes."""
    a, b = make(A), make(B)
    ikey, _ = ringing_invite(a, b, 0.0)
    a.handle_timer(600.0)
    assert drain(a) == [] and ikey in a._txs


def test_a_cancelled_invite_whose_487_never_comes_ends_64_t1_after_the_cancel():
    """§9.1: no final response 64*T1 after the CANCEL: the INVITE transaction is destroyed (it held a drain)."""
    a, b = make(A), make(B)
    ikey, _ = ringing_invite(a, b, 0.0)
    a.send_cancel(ikey, 100.0)
    transfer(a, A, b, 100.0)
    drain(b)
    transfer(b, B, a, 100.0)  # the CANCEL's 200; the peer then dies before its 487
    assert [e.response.status for e in drain(a)] == [200]
    while (t := a.get_timer()) is not None and t < 100.0 + 64 * T1:
        a.handle_timer(t)
    assert drain(a) == [] and a.in_progress(131.0) == 1
    assert a.get_timer() == pytest.approx(100.0 + 64 * T1)
    a.handle_timer(100.0 + 64 * T1)
    (timed_out,) = drain(a)
    assert isinstance(timed_out, ev.TransactionTimedOut) and timed_out.transaction == ikey
    assert a.in_progress(132.0) == 0 and ikey not in a._txs


def test_cancel_after_the_final_response_gets_200_not_481():
    """§9.2: a CANCEL that matches a transaction is answered 200 even when it can no longer act."""
    a, b = make(A), make(B)
    ikey, inv = ringing_invite(a, b, 0.0)
    b.send_response(inv.transaction, build_response(inv.request, 486, to_tag="b1"), 1.0)
    b.datagrams_to_send(1.0)  # the 486 crosses the CANCEL on the wire
    a.send_cancel(ikey, 1.0)
    transfer(a, A, b, 1.0)
    assert drain(b) == []  # nothing for the TU: the INVITE is already answered
    (data, _), = b.datagrams_to_send(1.0)
    assert parse_message(data).status == 200


def forked(branch: str) -> bytes:
    """The same INVITE (Call-ID, From tag, CSeq) as a forking proxy delivers it twice, one branch per path."""
    return bytes(request("INVITE").with_headers(
        request("INVITE").headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:5060;branch={branch}", first=True)))


def test_a_merged_request_gets_482_and_makes_no_second_call():
    """§8.2.2.2: a request without To tag matching a pending transaction by Call-ID, From tag and CSeq
    but not by branch arrived by two paths; one press must not ring the control room twice."""
    b = make(B)
    b.receive(forked("z9hG4bKpath1"), A, 0.0)
    (first,) = drain(b)
    b.datagrams_to_send(0.0)
    b.receive(forked("z9hG4bKpath2"), A, 0.1)
    (rejected,) = drain(b)
    assert isinstance(rejected, ev.MessageRejected) and rejected.status == 482
    (data, _), = b.datagrams_to_send(0.1)
    assert parse_message(data).status == 482
    b.receive(forked("z9hG4bKpath1"), A, 0.2)  # a retransmission of the first is still absorbed
    assert drain(b) == []


def test_the_same_cseq_after_a_final_response_is_a_new_request_not_a_merge():
    """Units that resend a challenged INVITE without raising CSeq (against §22.2) must still get through."""
    b = make(B)
    b.receive(forked("z9hG4bKfirst"), A, 0.0)
    (first,) = drain(b)
    b.send_response(first.transaction, build_response(first.request, 401, to_tag="b1"), 0.0)
    b.receive(forked("z9hG4bKsecond"), A, 0.1)
    (second,) = drain(b)
    assert isinstance(second, ev.RequestReceived) and second.transaction != first.transaction


def test_a_response_with_more_than_one_via_is_discarded():
    """§18.1.2: we send requests with a single Via, so a response with more than one is not for us (it is
    discarded, and the transaction goes on waiting for the real one)."""
    a, b = make(A), make(B)
    a.send_request(request("OPTIONS"), B, 0.0)
    transfer(a, A, b, 0.0)
    (received,) = drain(b)
    ok = build_response(received.request, 200)
    top = ok.headers.get("Via")
    two_lines = ok.with_headers(ok.headers.add("Via", "SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKx"))
    a.receive(bytes(two_lines), B, 0.1)
    assert drain(a) == []
    one_line = ok.with_headers(ok.headers.replace("Via", f"{top}, SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKx"))
    a.receive(bytes(one_line), B, 0.2)
    assert drain(a) == []
    a.receive(bytes(ok), B, 0.3)
    (answered,) = drain(a)
    assert isinstance(answered, ev.ResponseReceived) and answered.response.status == 200
