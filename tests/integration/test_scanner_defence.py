"""Scanner defence against the real process: an unknown source gets a budget, not a ban.

A flood of OPTIONS from an address that never authenticated (127.0.0.77, like a SIP scanner) is answered
up to its burst, then dropped without a reply and counted; the budget refills by itself, and a different
source is unaffected throughout.  Loops are bounded.
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from sip_harness import GatewayProcess

pytestmark = pytest.mark.integration


def options(src_ip: str, port: int) -> bytes:
    return (
        f"OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {src_ip}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:scan@{src_ip}>;tag=s1\r\nTo: <sip:gw@127.0.0.1>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def blast(gw: GatewayProcess, src_ip: str, count: int) -> int:
    """Send ``count`` OPTIONS from ``src_ip`` as fast as possible; return how many got a 200."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((src_ip, 0))
    port = sock.getsockname()[1]
    try:
        for _ in range(count):
            sock.sendto(options(src_ip, port), gw.sip_addr)
        answered = 0
        sock.settimeout(1.0)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                break
            answered += data.startswith(b"SIP/2.0 200")
        return answered
    finally:
        sock.close()


def test_unknown_source_is_limited_then_recovers(gateway_proc: GatewayProcess) -> None:
    before = gateway_proc.metric("gateway_sip_rate_limited_total")
    answered = blast(gateway_proc, "127.0.0.77", 300)
    # Burst 60 plus what refilled at 20/s while the flood ran: far fewer than 300, never zero.
    assert 40 <= answered < 200, answered
    assert gateway_proc.metric("gateway_sip_rate_limited_total") - before >= 100
    # Another source is unaffected, and the scanner's own budget refills (no ban).
    assert blast(gateway_proc, "127.0.0.78", 5) == 5
    time.sleep(1.0)  # real wall-clock refill of a real process: 20 tokens/s
    assert blast(gateway_proc, "127.0.0.77", 5) == 5
    assert gateway_proc.running


def test_unknown_caller_gets_one_403_not_a_stream_of_retransmissions(gateway_proc: GatewayProcess) -> None:
    """An INVITE from a user the inventory does not know (a scanner, perhaps with a spoofed source) is refused
    with a single 403: no transaction retransmits it while waiting for an ACK that never comes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.79", 0))
    port = sock.getsockname()[1]
    invite = (
        f"INVITE sip:100@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.79:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:100@127.0.0.79>;tag=s1\r\nTo: <sip:100@127.0.0.1>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@127.0.0.79:{port}>\r\n"
        f"User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    try:
        sock.sendto(invite, gateway_proc.sip_addr)
        got: list[bytes] = []
        sock.settimeout(0.5)
        deadline = time.monotonic() + 4.0  # Timer G would have resent at 0.5, 1.5 and 3.5 s
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            got.append(data.split(b"\r\n", 1)[0])
    finally:
        sock.close()
    assert got == [b"SIP/2.0 403 Forbidden"], got
