"""Garbage, oversized and malformed input over the wire never kills the real gateway process.

Every datagram comes from a plain Python socket on loopback, and every reply the gateway may send goes back to
that socket (the Via sent-by of every routable message below is 127.0.0.1:<our port>). Loops are bounded.
"""

from __future__ import annotations

import os
import random
import socket
import time

import pytest
from sip_harness import GatewayProcess, SipMessage, UdpClient, build_request

pytestmark = pytest.mark.integration

UDP_MAX = 65507  # largest IPv4 UDP payload


def assert_alive(gw: GatewayProcess, client: UdpClient | None = None) -> None:
    """The process runs and still answers OPTIONS with 200."""
    assert gw.running, f"gateway died; log:\n{gw.log_tail()}"
    own = client is None
    client = client or UdpClient(gw.sip_addr)
    try:
        client.drain(0.05)
        resp = client.request("OPTIONS", gw.uri, timeout=5)
        assert resp is not None and resp.status == 200, f"OPTIONS after abuse: {resp and resp.text}"
    finally:
        if own:
            client.close()


def rejected(gw: GatewayProcess) -> float:
    return gw.metric("gateway_sip_messages_rejected_total")


@pytest.fixture
def client(gateway_proc: GatewayProcess):
    c = UdpClient(gateway_proc.sip_addr)
    yield c
    c.close()


GARBAGE = [
    b"\x00",
    b"\r\n\r\n",  # RFC 5626 keep-alive: ignored, not an error
    b"\xff" * 100,
    b"hello world",
    b"INVITE",
    b"INVITE sip:x@127.0.0.1 SIP/2.0\r\n",  # no blank line, no headers
    b"SIP/2.0 200 OK\r\n\r\n",  # a response to nothing, without headers
    b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: \r\n\r\n",
    b"OPTIONS sip:127.0.0.1 SIP/9.9\r\n\r\n",
    b"OPTIONS \x00\x01\x02 SIP/2.0\r\nCall-ID: x\r\n\r\n",
    "OPTIONS sip:ü@127.0.0.1 SIP/2.0\r\nFrom: \udcff\r\n\r\n".encode("utf-8", "surrogateescape"),
    b"A" * 10_000,
    b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + b"X: " + b"\xc3\x28" * 1000 + b"\r\n\r\n",
]


def test_garbage_datagrams_do_not_kill_the_process(gateway_proc: GatewayProcess, client: UdpClient) -> None:
    before = rejected(gateway_proc)
    for data in GARBAGE:
        client.send(data)
    rng = random.Random(4475)
    for _ in range(500):  # bounded: 500 random datagrams of up to 1500 bytes
        client.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1500))))
    time.sleep(0.3)
    client.drain(0.2)  # whatever came back (400s to the few routable ones) is fine
    assert_alive(gateway_proc, client)
    assert rejected(gateway_proc) > before, "gateway_sip_messages_rejected_total must count the garbage"


def test_garbage_flood_is_bounded_and_survived(gateway_proc: GatewayProcess) -> None:
    """10 000 junk datagrams (bounded count and 10 s) from another socket, then an OPTIONS is answered."""
    junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        deadline = time.monotonic() + 10
        payload = os.urandom(200)
        for i in range(10_000):
            if time.monotonic() > deadline:
                break
            try:
                junk.sendto(payload[: 50 + i % 150], gateway_proc.sip_addr)
            except BlockingIOError:
                time.sleep(0.001)
    finally:
        junk.close()
    assert_alive(gateway_proc)


def options_with(
    client: UdpClient, gw: GatewayProcess, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
) -> bytes:
    return build_request("OPTIONS", gw.uri, local_port=client.port, headers=headers, body=body)


def test_oversized_udp_datagram(gateway_proc: GatewayProcess, client: UdpClient) -> None:
    """A request filling a whole UDP datagram (~64 KiB): answered 200 if under the limit, else 513."""
    base = options_with(client, gateway_proc, headers=(("X-Pad", ""),))
    pad = UDP_MAX - len(base)
    data = base.replace(b"X-Pad: \r\n", b"X-Pad: " + b"a" * pad + b"\r\n")
    assert len(data) == UDP_MAX
    client.send(data)
    resp = client.recv_final(5)
    assert resp is not None, "no answer to a 65507-byte OPTIONS"
    assert resp.status in (200, 513), resp.start_line
    assert_alive(gateway_proc, client)


def test_header_flood_gets_400(gateway_proc: GatewayProcess, client: UdpClient) -> None:
    """More header fields than sip.max_headers (256): a header flood, refused with 400 (or 513)."""
    flood = tuple((f"X-Flood-{i}", "x") for i in range(1000))
    data = options_with(client, gateway_proc, headers=flood)
    assert len(data) < UDP_MAX
    before = rejected(gateway_proc)
    client.send(data)
    resp = client.recv_final(5)
    assert resp is not None, "no answer to a header flood"
    assert resp.status in (400, 513), resp.start_line
    assert rejected(gateway_proc) > before
    assert_alive(gateway_proc, client)


MALFORMED = {
    # RFC 4475 3.1.2.x style defects in otherwise routable requests (Via, From, To, Call-ID, CSeq present).
    "cseq-method-mismatch": lambda raw: raw.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"),
    "cseq-not-a-number": lambda raw: raw.replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS"),
    "max-forwards-not-a-number": lambda raw: raw.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"),
    "content-length-beyond-datagram": lambda raw: raw.replace(b"Content-Length: 0", b"Content-Length: 9999"),
    "bad-from-uri": lambda raw: raw.replace(b"From: <sip:probe@127.0.0.1>", b"From: <sip:probe@127.0.0.1"),
    "header-line-without-colon": lambda raw: raw.replace(b"Max-Forwards: 70", b"Max-Forwards 70"),
}


@pytest.mark.parametrize("defect", sorted(MALFORMED))
def test_malformed_routable_request_gets_400(
    gateway_proc: GatewayProcess, client: UdpClient, defect: str
) -> None:
    good = options_with(client, gateway_proc)
    bad = MALFORMED[defect](good)
    assert bad != good
    client.send(bad)
    resp = client.recv_final(5)
    assert resp is not None, f"no answer to a malformed request ({defect}):\n{bad.decode(errors='replace')}"
    assert resp.status == 400, f"{defect}: {resp.start_line}"
    sent = SipMessage(bad)
    assert resp.call_id == sent.call_id, "the 400 must be routed back as a response to our request"
    assert_alive(gateway_proc, client)


def test_tcp_garbage_and_oversize(gateway_proc: GatewayProcess) -> None:
    """TCP: junk without framing, a message above max_message_size, abrupt closes; the process survives."""
    for payload in (
        b"\x16\x03\x01\x02\x00" + os.urandom(512),  # a TLS ClientHello-ish start
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n",
    ):
        with socket.create_connection(gateway_proc.sip_addr, timeout=5) as s:
            s.sendall(payload)
            s.settimeout(2)
            try:
                s.recv(65536)
            except (TimeoutError, ConnectionError):
                pass
    # A complete message larger than 64 KiB, properly framed: 513 (Message Too Large) or the connection closed.
    with socket.create_connection(gateway_proc.sip_addr, timeout=5) as s:
        body = b"v=0\r\n" * 16000  # 80 000 bytes
        msg = build_request(
            "OPTIONS",
            gateway_proc.uri,
            local_port=s.getsockname()[1],
            transport="TCP",
            headers=(("Content-Type", "application/sdp"),),
            body=body,
        )
        try:
            s.sendall(msg)
            s.settimeout(5)
            data = s.recv(65536)
        except (TimeoutError, ConnectionError):
            data = b""
        if data:
            assert SipMessage(data).status in (400, 513), data[:200]
    # A well-formed OPTIONS over a fresh TCP connection is still answered.
    with socket.create_connection(gateway_proc.sip_addr, timeout=5) as s:
        s.sendall(build_request("OPTIONS", gateway_proc.uri, local_port=s.getsockname()[1], transport="TCP"))
        s.settimeout(5)
        data = s.recv(65536)
        assert SipMessage(data).status == 200, data[:300]
    assert_alive(gateway_proc)
