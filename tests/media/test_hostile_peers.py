"""Third parties on a call's media ports: what they send must not reach the call, its recording or its
RTCP, and the relay sends only where the SDP or the symmetric-RTP latch says.

Plain UDP sockets on loopback play the help point, the operator and the intruder (another loopback
address, 127.0.0.2); the engine's clock is advanced by hand.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from test_media_session import HOST, FakeClock, drain_socket, make_peer, media, until, voice

from gateway.media.rtcp import ReceiverReport, ReportBlock, pack_rtcp
from gateway.media.rtp import RtpPacket
from gateway.media.sdp import NegotiatedMedia
from gateway.media.session import MediaEngine, bridge

INTRUDER = "127.0.0.2"


@pytest.fixture
async def engine():
    clock = FakeClock()
    eng = MediaEngine(HOST, 41600, 41699, clock=clock, start_clock=False, silence_timeout=1.0)
    eng.fake = clock  # type: ignore[attr-defined]
    yield eng
    await eng.close()


def _intruder_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((INTRUDER, port))
    s.setblocking(False)
    return s


async def test_source_port_zero_from_another_host_is_not_relayed_recorded_or_counted(engine: MediaEngine) -> None:
    """A raw-socket sender can put port 0 in the UDP header: that must not get past the latch."""
    hp, op = await make_peer(), await make_peer()
    leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
    leg_a.set_remote(media(hp, "PCMU"))
    leg_b.set_remote(media(op, "PCMU"))
    digits: list[str] = []
    leg_a.on_dtmf = digits.append
    bridge(leg_a, leg_b)
    hp.send(leg_a.local_port, voice(1, "PCMU"), 0)
    assert (await op.get()).payload == voice(1, "PCMU")
    ssrc = leg_a.rx_ssrc
    now = engine.clock()
    injected = bytes(RtpPacket(0, 7, 800, 0x0BADF00D, voice(9, "PCMU")))
    leg_a._receive_rtp(injected, (INTRUDER, 0), now)
    leg_a._receive_rtp(bytes(RtpPacket(101, 8, 960, 0x0BADF00D, b"\x01\x8a\x03\x20")), (INTRUDER, 0), now)
    hp.send(leg_a.local_port, voice(2, "PCMU"), 0)
    assert (await op.get()).payload == voice(2, "PCMU")  # the next relayed packet is the help point's
    assert op.queue.empty() and digits == []
    assert leg_a.rx_ssrc == ssrc and leg_a.stats.packets_in == 2 and leg_a.stats.wrong_source_in == 2


async def test_rtcp_from_a_third_party_does_not_redirect_our_reports(engine: MediaEngine) -> None:
    hp = await make_peer()
    intruder = _intruder_socket()
    try:
        leg = engine.allocate_leg(keepalive=True)
        leg.set_remote(media(hp, "PCMU"))
        rtcp_before = leg.remote_rtcp
        assert rtcp_before == (HOST, hp.port + 1)
        # an empty datagram and a well-formed RR about our own stream, from an address nobody gave us
        intruder.sendto(b"", (HOST, leg.local_port + 1))
        block = ReportBlock(leg.sender.ssrc, 255, 1000, 10, 8000)
        intruder.sendto(pack_rtcp([ReceiverReport(0x1234, (block,))]), (HOST, leg.local_port + 1))
        for _ in range(2):
            await until(lambda: leg.stats.invalid_in + leg.stats.wrong_source_in >= 2)
        assert leg.remote_rtcp == rtcp_before
        assert leg.stats.remote_fraction_lost is None  # its claims about our stream are not taken either
        engine.fake.now += 10.0  # type: ignore[attr-defined]
        engine.tick(engine.clock())
        await asyncio.sleep(0.05)
        assert drain_socket(intruder) == []
    finally:
        intruder.close()


async def test_no_rtcp_to_an_unspecified_address() -> None:
    """c=0.0.0.0 (RFC 3264 §8.4 hold) means send nothing: RTCP sent there reaches this host's own port."""
    local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    local.bind(("0.0.0.0", 0))
    local.setblocking(False)
    rtcp_port = local.getsockname()[1]
    clock = FakeClock()
    eng = MediaEngine(HOST, 41700, 41709, clock=clock, start_clock=False)
    try:
        leg = eng.allocate_leg(keepalive=True)
        leg.set_remote(NegotiatedMedia("0.0.0.0", rtcp_port - 1, "PCMU", 0))
        clock.now += 10.0
        eng.tick(clock.now)
        await asyncio.sleep(0.05)
        assert drain_socket(local) == []
        assert leg.remote_rtcp is None
    finally:
        local.close()
        await eng.close()


async def test_a_session_refresh_with_the_same_sdp_keeps_the_latch(engine: MediaEngine) -> None:
    """A help point behind NAT (its SDP names a port it does not use) is latched; a re-INVITE or UPDATE
    that changes nothing (session timer refresh, RFC 4028) must not hand the call to whoever sprays the
    port at that moment."""
    hp, op = await make_peer(), await make_peer()
    intruder = _intruder_socket()
    try:
        leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
        hp_media = media(hp, "PCMU", port=9)
        leg_a.set_remote(hp_media)
        leg_b.set_remote(media(op, "PCMU"))
        bridge(leg_a, leg_b)
        hp.send(leg_a.local_port, voice(1, "PCMU"), 0)
        assert (await op.get()).payload == voice(1, "PCMU")
        assert leg_a.latched and leg_a.remote == (HOST, hp.port)
        leg_a.set_remote(hp_media)  # the refresh
        intruder.sendto(bytes(RtpPacket(0, 5, 5, 0x666, voice(66, "PCMU"))), (HOST, leg_a.local_port))
        await until(lambda: leg_a.stats.wrong_source_in == 1)
        hp.send(leg_a.local_port, voice(2, "PCMU"), 0)
        assert (await op.get()).payload == voice(2, "PCMU")
        assert leg_a.remote == (HOST, hp.port)
        # what the operator says still goes to the help point, not to the intruder
        op.send(leg_b.local_port, voice(3, "PCMU"), 0)
        assert (await hp.get()).payload == voice(3, "PCMU")
        assert drain_socket(intruder) == []
    finally:
        intruder.close()


async def test_the_announced_address_takes_over_from_a_source_that_latched_first(engine: MediaEngine) -> None:
    """An intruder that sends to the port before the peer (its SDP is public with the INVITE's path) is
    latched first; the peer sending from the very address its SDP announced takes the call back."""
    hp, op = await make_peer(), await make_peer()
    intruder = _intruder_socket()
    try:
        leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
        leg_a.set_remote(media(hp, "PCMU"))
        leg_b.set_remote(media(op, "PCMU"))
        bridge(leg_a, leg_b)
        intruder.sendto(bytes(RtpPacket(0, 5, 5, 0x666, voice(66, "PCMU"))), (HOST, leg_a.local_port))
        await op.get()
        assert leg_a.remote == (INTRUDER, intruder.getsockname()[1])
        hp.send(leg_a.local_port, voice(1, "PCMU"), 0)
        assert (await op.get()).payload == voice(1, "PCMU")
        assert leg_a.remote == (HOST, hp.port)
        intruder.sendto(bytes(RtpPacket(0, 6, 165, 0x666, voice(67, "PCMU"))), (HOST, leg_a.local_port))
        await until(lambda: leg_a.stats.wrong_source_in == 1)
        hp.send(leg_a.local_port, voice(2, "PCMU"), 0)
        assert (await op.get()).payload == voice(2, "PCMU")
        op.send(leg_b.local_port, voice(3, "PCMU"), 0)
        assert (await hp.get()).payload == voice(3, "PCMU")
    finally:
        intruder.close()


async def test_a_malformed_packet_from_a_new_source_does_not_take_the_latch(engine: MediaEngine) -> None:
    """Before the help point's first packet (behind NAT: the latch is still open), a v2 packet whose CSRC
    count points past its end is refused as invalid before any latching: the help point, sending next from
    its real source, gets the call's audio."""
    hp, op = await make_peer(), await make_peer()
    leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
    leg_a.set_remote(media(hp, "PCMU"))
    leg_b.set_remote(media(op, "PCMU"))
    bridge(leg_a, leg_b)
    broken = bytes([0x8F]) + bytes(RtpPacket(0, 7, 800, 0x0BADF00D, b""))[1:]  # 15 CSRCs announced, none there
    leg_a._receive_rtp(broken, (INTRUDER, 40000), engine.clock())
    assert not leg_a.latched and leg_a.stats.invalid_in == 1
    hp.send(leg_a.local_port, voice(1, "PCMU"), 0)
    assert (await op.get()).payload == voice(1, "PCMU")
    assert leg_a.latched and leg_a.remote == (HOST, hp.port)
