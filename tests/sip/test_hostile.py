"""Hostile input from unknown sources: never raise, never reflect, never grow without bound.

Every vector here is a whole datagram or stream as a scanner or a broken peer sends it; time is advanced
by hand.  The few wall-clock bounds are generous (the defects they guard against took seconds to minutes).
"""

from __future__ import annotations

import itertools
import time

import pytest

from gateway.sip import events as ev
from gateway.sip.endpoint import EndpointConfig, SipEndpoint
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import StreamFramer, build_response, parse_message

GW = ("UDP", "192.0.2.10", 5060)
SCANNER = ("UDP", "198.51.100.7", 5080)
VICTIM = "203.0.113.99"


def make() -> SipEndpoint:
    counter = itertools.count()
    return SipEndpoint(EndpointConfig(local={"UDP": (GW[1], GW[2])}, token=lambda: f"t{next(counter)}"))


def drain(ep: SipEndpoint) -> list[ev.Event]:
    out = []
    while (e := ep.next_event()) is not None:
        out.append(e)
    return out


def datagram(method: str = "OPTIONS", via: str = "SIP/2.0/UDP 198.51.100.7:5080;branch=z9hG4bKs1;rport",
             extra: str = "", cseq: str = "1", max_forwards: str = "70", length: str = "0",
             uri: str = "sip:gw@192.0.2.10") -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:100@198.51.100.7>;tag=s1\r\n"
        f"To: <sip:gw@192.0.2.10>\r\n"
        f"Call-ID: scan-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


# ----------------------------------------------------------------- numbers Python refuses to convert

HUGE = "9" * 5000  # above int()'s 4300-digit limit: int(HUGE) raises ValueError, not RemoteProtocolError


@pytest.mark.parametrize(
    "data",
    [
        datagram(length=HUGE),
        datagram(length="0" * 4999 + "0"),
        datagram(cseq=HUGE),
        datagram(max_forwards=HUGE),
        datagram(extra=f"Expires: {HUGE}\r\n"),
        datagram(via=f"SIP/2.0/UDP 198.51.100.7:{HUGE};branch=z9hG4bKs1"),
        datagram(uri=f"sip:gw@192.0.2.10:{HUGE}"),
        datagram(method="FOO", via="SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKs1;rport=abc"),
        datagram(method="FOO", via="SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKs1;rport=99999999"),
    ],
    ids=["content-length", "content-length-zeros", "cseq", "max-forwards", "expires", "via-port",
         "uri-port", "rport-letters", "rport-out-of-range"],
)
def test_oversized_or_bad_numbers_are_rejected_not_raised(data: bytes) -> None:
    ep = make()
    ep.receive(data, SCANNER, 0.0)  # must not raise (the sans-IO contract)
    events = drain(ep)
    assert events and isinstance(events[0], ev.MessageRejected), events
    for _, peer in ep.datagrams_to_send(0.0):
        assert peer[1] == SCANNER[1] and 0 < peer[2] < 65536


def test_stream_framer_refuses_a_content_length_int_cannot_convert() -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(datagram(length=HUGE))


def test_unicode_digits_are_not_digits() -> None:
    # RFC 3261 §25.1 DIGIT is ASCII; int() would accept U+0665 ARABIC-INDIC DIGIT FIVE.
    with pytest.raises(RemoteProtocolError):
        parse_message(datagram(length="\u0665") + b"hello")


# ----------------------------------------------------------------- no reflection to a third party

def only_destination(ep: SipEndpoint) -> tuple[str, str, int]:
    (_, peer), = ep.datagrams_to_send(0.0)
    return peer


def test_rejected_request_is_answered_to_its_source_not_to_the_via_host() -> None:
    # A spoofable Via host would turn the gateway into a reflector (501 sent to the victim).
    ep = make()
    ep.receive(datagram(method="FOO", via=f"SIP/2.0/UDP {VICTIM}:5060;branch=z9hG4bKr1"), SCANNER, 0.0)
    (rejected,) = drain(ep)
    assert rejected.status == 501
    assert only_destination(ep) == ("UDP", SCANNER[1], 5060)


def test_rejected_request_with_a_filled_rport_goes_back_to_the_source_port() -> None:
    ep = make()
    ep.receive(datagram(method="FOO", via=f"SIP/2.0/UDP {VICTIM};branch=z9hG4bKr2;rport=7"), SCANNER, 0.0)
    drain(ep)
    assert only_destination(ep) == SCANNER


def test_unparseable_request_is_answered_to_its_source_not_to_the_via_host() -> None:
    data = datagram(via=f"SIP/2.0/UDP {VICTIM}:5060;branch=z9hG4bKr3").replace(b"\r\n\r\n", b"\r\nBroken\r\n\r\n")
    ep = make()
    ep.receive(data, SCANNER, 0.0)
    (rejected,) = drain(ep)
    assert rejected.status == 400
    assert only_destination(ep) == ("UDP", SCANNER[1], 5060)


def test_a_received_parameter_from_the_peer_does_not_redirect_the_response() -> None:
    # The Via host is the real source, so nothing is stamped; the peer's own received= must not count.
    ep = make()
    via = f"SIP/2.0/UDP {SCANNER[1]}:{SCANNER[2]};received={VICTIM};rport=7;branch=z9hG4bKr4"
    ep.receive(datagram(via=via), SCANNER, 0.0)
    (got,) = drain(ep)
    ep.send_response(got.transaction, build_response(got.request, 200), 0.0)
    assert only_destination(ep) == SCANNER


# ----------------------------------------------------------------- Via lines below the top one

def test_stamping_the_top_via_keeps_the_other_via_header_lines() -> None:
    # A request through a proxy: the proxy's Via, then the phone's, on separate lines (§7.3.1).
    proxy = ("UDP", "198.51.100.20", 5060)
    data = datagram(via="SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1\r\n"
                        "Via: SIP/2.0/UDP 10.0.0.5:5060;received=198.51.100.30;branch=z9hG4bKu1")
    ep = make()
    ep.receive(data, proxy, 0.0)
    (got,) = drain(ep)
    assert got.request.headers.values("Via") == [
        "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp1;received=198.51.100.20",
        "SIP/2.0/UDP 10.0.0.5:5060;received=198.51.100.30;branch=z9hG4bKu1",
    ]
    ep.send_response(got.transaction, build_response(got.request, 200), 0.0)
    (out, peer), = ep.datagrams_to_send(0.0)
    assert peer == proxy
    assert len(parse_message(out).vias) == 2  # the proxy can forward the response to the phone


def test_stamping_keeps_the_other_values_of_a_combined_via_line() -> None:
    proxy = ("UDP", "198.51.100.20", 5060)
    data = datagram(via='SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp2;x="a,b", '
                        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKu2")
    ep = make()
    ep.receive(data, proxy, 0.0)
    (got,) = drain(ep)
    assert [str(v) for v in got.request.vias] == [
        'SIP/2.0/UDP proxy.example.net;branch=z9hG4bKp2;x="a,b";received=198.51.100.20',
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKu2",
    ]


# ----------------------------------------------------------------- TCP framing cost

def test_stream_framer_long_blank_run_in_a_header_is_linear() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nX: a" + b" " * 60000 + b"b\r\nContent-Length: 0\r\n\r\n"
    start = time.perf_counter()
    (frame,) = StreamFramer().feed(data)
    assert frame == data
    assert time.perf_counter() - start < 1.0  # was about 16 s: a backtracking regex per line


def test_stream_framer_body_dripped_byte_by_byte_reads_the_head_once() -> None:
    head = (b"OPTIONS sip:a@b SIP/2.0\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(3000))
            + b"Content-Length: 20000\r\n\r\n")
    framer = StreamFramer()
    start = time.perf_counter()
    assert framer.feed(head) == []
    for _ in range(19999):
        assert framer.feed(b"x") == []
    (frame,) = framer.feed(b"x")
    assert frame == head + b"x" * 20000
    assert time.perf_counter() - start < 2.0  # was about 50 s: the head was re-read on every byte


# ----------------------------------------------------------------- bounded timer heap

def test_retransmission_flood_does_not_grow_the_timer_heap() -> None:
    ep = make()
    data = datagram()
    ep.receive(data, SCANNER, 0.0)
    (got,) = drain(ep)
    ep.send_response(got.transaction, build_response(got.request, 200), 0.0)  # Completed, Timer J 32 s
    ep.datagrams_to_send(0.0)
    for i in range(10000):
        ep.receive(data, SCANNER, i / 1000)  # absorbed: the last response is sent again (§17.2.2)
    assert len(ep.datagrams_to_send(10.0)) == 10000
    assert len(ep._heap) <= 2
    ep.handle_timer(32.0)
    assert ep.transaction_count == 0


# ----------------------------------------------------------------- dropped means unanswered

def test_a_dropped_invite_gets_no_100_trying() -> None:
    # The TU drops an over-budget request while handling its event, before the shell transmits.
    ep = make()
    ep.receive(datagram(method="INVITE"), SCANNER, 0.0)
    (got,) = drain(ep)
    ep.drop(got.transaction)
    assert ep.datagrams_to_send(0.0) == []
    assert ep.transaction_count == 0


def test_an_unparseable_ack_gets_no_response() -> None:
    # §17: an ACK is never answered, not even when it cannot be parsed.
    ep = make()
    ep.receive(datagram(method="ACK").replace(b"\r\n\r\n", b"\r\nBroken\r\n\r\n"), SCANNER, 0.0)
    (rejected,) = drain(ep)
    assert isinstance(rejected, ev.MessageRejected) and rejected.status == 0
    assert ep.datagrams_to_send(0.0) == []


@pytest.mark.parametrize("data", [b"\r\n\r\n", b"\r\n", b"\n"])
def test_a_crlf_keep_alive_datagram_is_ignored_not_rejected(data: bytes) -> None:
    # Softphones and intercoms behind NAT send these over UDP every few seconds: not garbage to count.
    ep = make()
    ep.receive(data, SCANNER, 0.0)
    assert drain(ep) == [] and ep.datagrams_to_send(0.0) == []


# ----------------------------------------------------------------- refusals that do not amplify


def test_a_quiet_refusal_is_one_packet_per_invite_and_still_completes_its_transaction() -> None:
    """``send_response(..., retransmit=False)``: the INVITE's refusal goes out once, without the automatic
    100 Trying and without Timer G retransmissions towards a source that may be spoofed; a retransmitted
    INVITE gets it again from the transaction (one for one), and a real caller's ACK still completes it."""
    ep = make()
    invite = datagram("INVITE")
    ep.receive(invite, SCANNER, 0.0)
    (request,) = drain(ep)
    assert isinstance(request, ev.RequestReceived)
    assert request.transaction is not None
    ep.send_response(request.transaction, build_response(request.request, 403, to_tag="gw1"), 0.0,
                     retransmit=False)
    sent = [data.split(b"\r\n", 1)[0] for data, _ in ep.datagrams_to_send(0.0)]
    assert sent == [b"SIP/2.0 403 Forbidden"]
    for now in (0.6, 1.6, 3.6, 7.6, 15.6):  # where Timer G would have fired
        ep.handle_timer(now)
        assert ep.datagrams_to_send(now) == []
    ep.receive(invite, SCANNER, 16.0)  # the caller never saw it: it retransmits
    assert [data.split(b"\r\n", 1)[0] for data, _ in ep.datagrams_to_send(16.0)] == [b"SIP/2.0 403 Forbidden"]
    assert drain(ep) == []  # absorbed by the transaction: the TU does no work for it
    ack = datagram("ACK", extra="").replace(b"To: <sip:gw@192.0.2.10>", b"To: <sip:gw@192.0.2.10>;tag=gw1")
    ep.receive(ack, SCANNER, 16.1)
    assert ep.datagrams_to_send(16.1) == [] and drain(ep) == []
