"""The asyncio media shell on loopback: two legs bridged, plain UDP sockets as the peers.

The engine runs on a hand-advanced clock (``start_clock=False`` + ``engine.tick(now)``) and
the test waits for packets to arrive, never sleeps.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import wave
from pathlib import Path

import pytest

from gateway.media import g711, session
from gateway.media.dtmf import TelephoneEvent
from gateway.media.errors import MediaError, PortsExhaustedError
from gateway.media.ports import WavPlayer
from gateway.media.rtcp import ReceiverReport, SenderReport, pack_rtcp, unpack_rtcp
from gateway.media.rtp import RtpPacket
from gateway.media.sdp import NegotiatedMedia
from gateway.media.session import MediaEngine, RtpResumed, RtpStopped, bridge
from gateway.media.wav import Audio

HOST = "127.0.0.1"


class Peer(asyncio.DatagramProtocol):
    """A phone: sends RTP from one socket, queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[RtpPacket] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.seq = 1000
        self.ts = 50000

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if 192 <= data[1] <= 223:
            return  # RTCP
        self.queue.put_nowait(RtpPacket.unpack(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send(self, port: int, payload: bytes, pt: int, *, ts: int | None = None, marker: bool = False) -> None:
        assert self.transport is not None
        packet = RtpPacket(pt, self.seq, self.ts if ts is None else ts, 0x1111 + self.port, payload, marker)
        self.transport.sendto(bytes(packet), (HOST, port))
        self.seq = (self.seq + 1) & 0xFFFF
        if ts is None:
            self.ts += len(payload)

    async def get(self) -> RtpPacket:
        return await asyncio.wait_for(self.queue.get(), 2.0)


def drain_socket(s: socket.socket) -> list[bytes]:
    """Every datagram waiting on a non-blocking socket (media tests' peers and intruders)."""
    out = []
    while True:
        try:
            out.append(s.recv(4096))
        except BlockingIOError:
            return out


async def make_peer() -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, 0))
    return peer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def voice(i: int, codec: str) -> bytes:
    """A recognisable 20 ms frame: a ramp offset by the packet number (never digital silence)."""
    pcm = struct.pack("<160h", *[(i * 97 + k * 50) % 20000 - 10000 for k in range(160)])
    return g711.encode(pcm, codec)


@pytest.fixture
async def engine(tmp_path: Path):
    clock = FakeClock()
    eng = MediaEngine(HOST, 41000, 41099, clock=clock, start_clock=False, silence_timeout=1.0)
    eng.fake = clock  # type: ignore[attr-defined]
    yield eng
    await eng.close()


async def until(condition, limit: int = 10_000) -> None:
    """Yield to the event loop (no timer) until ``condition()`` holds: packets already in flight land."""
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def media(peer: Peer, codec: str, *, port: int | None = None) -> NegotiatedMedia:
    return NegotiatedMedia(HOST, port or peer.port, codec, 0 if codec == "PCMU" else 8, telephone_event=101)


async def test_bridge_relays_50_each_way_transcodes_and_records(engine: MediaEngine, tmp_path: Path) -> None:
    hp, op = await make_peer(), await make_peer()
    leg_a = engine.allocate_leg(name="help-point")
    leg_b = engine.allocate_leg(name="operator")
    assert leg_a.local_port % 2 == 0 and leg_b.local_port % 2 == 0
    # the help point's SDP names a port it does not use (NAT): symmetric RTP must find it
    leg_a.set_remote(media(hp, "PCMU", port=9))
    leg_b.set_remote(media(op, "PCMA"))
    digits: list[str] = []
    leg_b.on_dtmf = digits.append
    rec = engine.recorder(str(tmp_path / "call.wav"))
    bridge(leg_a, leg_b, rec)
    sent_a, sent_b = [], []
    for i in range(50):
        engine.fake.now += 0.02  # type: ignore[attr-defined]
        a = voice(i, "PCMU")
        hp.send(leg_a.local_port, a, 0)
        sent_a.append(a)
        got_b = await op.get()
        b = voice(i + 1000, "PCMA")
        op.send(leg_b.local_port, b, 8)
        sent_b.append(b)
        got_a = await hp.get()
        assert got_b.payload_type == 8 and got_b.payload == g711.transcode(a, "PCMU", "PCMA")
        assert got_a.payload_type == 0 and got_a.payload == g711.transcode(b, "PCMA", "PCMU")
        # decoding both ends gives the same audio up to one quantisation step
        da, db = g711.decode(a, "PCMU"), g711.decode(got_b.payload, "PCMA")
        diffs = [abs(x - y) for x, y in zip(struct.unpack("<160h", da), struct.unpack("<160h", db), strict=True)]
        assert max(diffs) <= max(abs(v) for v in struct.unpack("<160h", da)) // 16 + 16
        engine.tick(engine.clock())
    assert op.queue.empty() and hp.queue.empty()  # no keep-alive while audio flows
    assert leg_a.latched and leg_a.remote == (HOST, hp.port)
    for leg in (leg_a, leg_b):
        s = leg.stats
        assert (s.packets_in, s.relayed_out, s.lost, s.generated_out) == (50, 50, 0, 0)
    # operator presses *1: reported once each, not relayed to the help point
    for digit, ts in (("*", 7000), ("1", 9000)):
        ev = TelephoneEvent.from_digit(digit).event
        for end in (False, True, True, True):
            op.send(leg_b.local_port, bytes(TelephoneEvent(ev, end, 10, 800)), 101, ts=ts)
    rtp_seq_before = hp.seq
    await until(lambda: leg_b.stats.dtmf_in == 8)
    assert digits == ["*", "1"] and hp.queue.empty() and rtp_seq_before == hp.seq
    digest = await rec.seal_async()
    with wave.open(str(tmp_path / "call.wav")) as w:
        frames = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    left, right = bytes(struct.pack(f"<{len(samples) // 2}h", *samples[0::2])), \
        bytes(struct.pack(f"<{len(samples) // 2}h", *samples[1::2]))
    # one tick of prefill, then exactly what each side sent, in order
    assert left[320:320 + 50 * 320] == b"".join(g711.decode(a, "PCMU") for a in sent_a)
    assert right[320:320 + 50 * 320] == b"".join(g711.decode(b, "PCMA") for b in sent_b)
    assert len(digest) == 64


async def test_silent_help_point_keepalive_events_and_continuous_timestamps(engine: MediaEngine) -> None:
    hp, op = await make_peer(), await make_peer()
    leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
    leg_a.set_remote(media(hp, "PCMU"))
    leg_b.set_remote(media(op, "PCMU"))
    events: list[object] = []
    engine.silence_events = events.append
    bridge(leg_a, leg_b)
    clock = engine.fake  # type: ignore[attr-defined]
    received: list[RtpPacket] = []
    for i in range(5):
        clock.now += 0.02
        hp.send(leg_a.local_port, voice(i, "PCMU"), 0)
        received.append(await op.get())
        engine.tick(clock.now)
        await hp.get()  # hp gets keep-alive silence: the operator sends nothing
    # the help point goes quiet (VAD) for 3 s, sending only comfort noise now and then
    for n in range(150):
        clock.now += 0.02
        if n % 25 == 0:
            hp.send(leg_a.local_port, b"\x40", 13)
        engine.tick(clock.now)
        if n == 0:
            continue  # 20 ms after the last relayed packet is not yet a gap (keepalive_after = 35 ms)
        received.append(await op.get())
    hp.ts += 24000  # its RTP clock kept running through the quiet spell
    for i in range(5, 8):
        clock.now += 0.02
        hp.send(leg_a.local_port, voice(i, "PCMU"), 0)
        received.append(await op.get())
        engine.tick(clock.now)
    assert op.queue.empty()
    seqs = [p.sequence_number for p in received]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    steps = [(b.timestamp - a.timestamp) % 2**32 for a, b in zip(received, received[1:], strict=False)]
    # every packet 160 samples after the last, except the one 40 ms wall-clock gap into keep-alive
    assert steps == [160] * 4 + [320] + [160] * 151, "no timestamp jump"
    assert len({p.ssrc for p in received}) == 1
    silence = [p for p in received[5:154] if p.payload == g711.silence("PCMU")]
    assert len(silence) == 149 and received[5].marker
    assert received[154].marker and received[154].payload == voice(5, "PCMU")
    assert leg_b.stats.comfort_noise_in == 0 and leg_a.stats.comfort_noise_in == 6
    stopped = [e for e in events if isinstance(e, RtpStopped)]
    resumed = [e for e in events if isinstance(e, RtpResumed)]
    assert [e.leg for e in stopped] == [leg_b, leg_a]  # the operator never spoke; the help point went quiet
    assert [e.leg for e in resumed] == [leg_a]
    assert resumed[0].silent_for == pytest.approx(3.02, abs=0.001)
    assert leg_a.stats.lost == 0


async def test_play_replaces_relay_and_resolves(engine: MediaEngine, tmp_path: Path) -> None:
    hp, op = await make_peer(), await make_peer()
    leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
    leg_a.set_remote(media(hp, "PCMA"))
    leg_b.set_remote(media(op, "PCMU"))
    rec = engine.recorder(str(tmp_path / "p.wav"))
    bridge(leg_a, leg_b, rec)
    audio = Audio(struct.pack("<400h", *[3000] * 400))
    done = leg_a.play(WavPlayer(audio))
    clock = engine.fake  # type: ignore[attr-defined]
    got = []
    for _ in range(3):
        clock.now += 0.02
        op.send(leg_b.local_port, voice(1, "PCMU"), 0)  # the operator talks over the prompt
        engine.tick(clock.now)
        got.append(await hp.get())
    assert [p.payload for p in got] == [audio.encoded("PCMA")[i * 160:(i + 1) * 160].ljust(160, b"\xd5")
                                        for i in range(3)]
    clock.now += 0.02
    engine.tick(clock.now)
    assert done.done() and done.result() is True and not leg_a.playing
    op.send(leg_b.local_port, voice(2, "PCMU"), 0)
    assert (await hp.get()).payload == voice(2, "PCMU").translate(g711.ULAW_TO_ALAW)
    stopped = leg_a.play(WavPlayer(audio))
    leg_a.stop_play()
    assert stopped.result() is False
    await rec.seal_async()
    with wave.open(str(tmp_path / "p.wav")) as w:
        frames = w.readframes(w.getnframes())
    left = struct.unpack(f"<{len(frames) // 2}h", frames)[0::2]
    assert left[:320] == (3000,) * 320  # the prompt is on the help point's side, from the first tick


async def test_leg_alone_sends_nothing_unless_keepalive(engine: MediaEngine) -> None:
    peer = await make_peer()
    quiet, chatty = engine.allocate_leg(), engine.allocate_leg(keepalive=True)
    quiet.set_remote(media(peer, "PCMU"))
    chatty.set_remote(media(peer, "PCMA"))
    clock = engine.fake  # type: ignore[attr-defined]
    for _ in range(3):
        clock.now += 0.02
        engine.tick(clock.now)
    packets = [await peer.get() for _ in range(3)]
    assert {p.payload for p in packets} == {g711.silence("PCMA")}
    assert quiet.stats.packets_out == 0


async def test_hold_sends_nothing(engine: MediaEngine) -> None:
    peer = await make_peer()
    leg = engine.allocate_leg(keepalive=True)
    leg.set_remote(NegotiatedMedia("0.0.0.0", peer.port, "PCMU", 0, direction="recvonly"))
    engine.tick(engine.clock() + 1)
    assert leg.stats.packets_out == 0


async def test_wrong_source_ignored_after_latching(engine: MediaEngine) -> None:
    hp, intruder, op = await make_peer(), await make_peer(), await make_peer()
    leg_a, leg_b = engine.allocate_leg(), engine.allocate_leg()
    leg_a.set_remote(media(hp, "PCMU"))
    leg_b.set_remote(media(op, "PCMU"))
    bridge(leg_a, leg_b)
    hp.send(leg_a.local_port, voice(1, "PCMU"), 0)
    await op.get()
    intruder.send(leg_a.local_port, voice(2, "PCMU"), 0)
    hp.send(leg_a.local_port, voice(3, "PCMU"), 0)
    assert (await op.get()).payload == voice(3, "PCMU")
    assert leg_a.stats.wrong_source_in == 1


async def test_switching_operator_latches_only_the_new_phones_announced_address_for_a_moment(
        engine: MediaEngine) -> None:
    # The operator side moves from phone 1 (still sending, e.g. a voicemail greeting) to phone 2: for
    # ``announced_only`` seconds only phone 2's SDP address may latch, whichever sends first.
    old, new, hp = await make_peer(), await make_peer(), await make_peer()
    leg_op, leg_hp = engine.allocate_leg(), engine.allocate_leg()
    leg_hp.set_remote(media(hp, "PCMU"))
    leg_op.set_remote(media(old, "PCMU"))
    bridge(leg_hp, leg_op)
    clock = engine.fake  # type: ignore[attr-defined]
    old.send(leg_op.local_port, voice(1, "PCMU"), 0)
    await hp.get()
    leg_op.set_remote(media(new, "PCMU"), announced_only=1.0)
    old.send(leg_op.local_port, voice(2, "PCMU"), 0)  # the old phone is first again: refused
    await until(lambda: leg_op.stats.wrong_source_in == 1)
    assert not leg_op.latched and leg_op.remote == (HOST, new.port)
    new.send(leg_op.local_port, voice(3, "PCMU"), 0)
    assert (await hp.get()).payload == voice(3, "PCMU")
    assert leg_op.latched and leg_op.remote == (HOST, new.port)
    # Without the window (an ordinary re-INVITE), or once it is over, the first source latches as before
    # (a phone behind NAT sends from an address its SDP does not name).
    leg_op.set_remote(media(new, "PCMU", port=9), announced_only=1.0)
    clock.now += 1.5
    old.send(leg_op.local_port, voice(4, "PCMU"), 0)
    assert (await hp.get()).payload == voice(4, "PCMU")
    assert leg_op.latched and leg_op.remote == (HOST, old.port)


async def test_rtcp_reports_both_ways(engine: MediaEngine) -> None:
    loop = asyncio.get_running_loop()
    hp = await make_peer()
    rtcp_in: asyncio.Queue[bytes] = asyncio.Queue()

    class Rtcp(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple) -> None:
            rtcp_in.put_nowait(data)

    rtcp_transport, _ = await loop.create_datagram_endpoint(Rtcp, local_addr=(HOST, hp.port + 1))
    try:
        leg = engine.allocate_leg(keepalive=True)
        leg.set_remote(media(hp, "PCMU"))
        clock = engine.fake  # type: ignore[attr-defined]
        for i in range(10):
            clock.now += 0.02
            hp.send(leg.local_port, voice(i, "PCMU"), 0)
            await until(lambda n=i: leg.stats.packets_in == n + 1)
        clock.now += 6.0
        engine.tick(clock.now)
        report = unpack_rtcp(await asyncio.wait_for(rtcp_in.get(), 2))
        assert isinstance(report[0], SenderReport)
        block = report[0].reports[0]
        assert block.ssrc == 0x1111 + hp.port and block.cumulative_lost == 0
        # the peer's RR about our stream is kept as the remote view of loss
        rr = ReceiverReport(0x1111 + hp.port, (report[0].reports[0].__class__(leg.sender.ssrc, 64, 3, 10, 80),))
        rtcp_transport.sendto(pack_rtcp([rr]), (HOST, leg.local_port + 1))
        await until(lambda: leg.stats.remote_fraction_lost is not None)
        assert leg.stats.remote_fraction_lost == 0.25 and leg.stats.remote_jitter == 0.01
    finally:
        rtcp_transport.close()


async def test_port_range_exhaustion_and_reuse() -> None:
    eng = MediaEngine(HOST, 41200, 41203, start_clock=False)
    try:
        a, b = eng.allocate_leg(), eng.allocate_leg()
        assert {a.local_port, b.local_port} == {41200, 41202}
        with pytest.raises(PortsExhaustedError):
            eng.allocate_leg()
        a.close()
        assert eng.allocate_leg().local_port == 41200
        with pytest.raises(MediaError):
            bridge(b, b)
    finally:
        await eng.close()


async def test_real_clock_paces_keepalive_every_20ms() -> None:
    eng = MediaEngine(HOST, 41300, 41309)
    try:
        peer = await make_peer()
        leg = eng.allocate_leg(keepalive=True)
        leg.set_remote(media(peer, "PCMU"))
        loop = asyncio.get_running_loop()
        arrivals, stamps = [], []
        for _ in range(10):
            p = await peer.get()
            arrivals.append(loop.time())
            stamps.append(p.timestamp)
        assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:], strict=False))
        span = arrivals[-1] - arrivals[0]
        assert 0.15 < span < 0.3  # nine 20 ms intervals, loosely (shared CI machines)
        sched = eng.schedule
        assert sched is not None and sched.skipped == 0
    finally:
        await eng.close()


async def test_source_port_zero_is_relayed_but_never_latched(engine: MediaEngine) -> None:
    """RFC 768: source port 0 means no reply is expected; RTP keeps going to the SDP address."""
    peer = await make_peer()
    leg = engine.allocate_leg()
    leg.set_remote(media(peer, "PCMU"))
    packet = bytes(RtpPacket(0, 1, 160, 0x4242, voice(1, "PCMU")))
    leg._receive_rtp(packet, (HOST, 0), engine.clock())
    assert leg.remote == (HOST, peer.port) and not leg.latched
    assert leg.stats.packets_in == 1


@pytest.mark.parametrize("fast_path", [True, False], ids=["C-drain", "python-drain"])
async def test_released_ports_are_pooled_and_reused_only_after_a_quiet_spell(fast_path: bool) -> None:
    clock = FakeClock()
    eng = MediaEngine(HOST, 41400, 41409, clock=clock, start_clock=False, reuse_quiet=2.0, fast_path=fast_path)
    assert (eng._drain_fd is not None) == (fast_path and session._FAST is not None)
    peer = await make_peer()
    try:
        first = eng.allocate_leg()
        port = first.local_port
        first.close()
        # too soon: a fresh port is bound rather than the one whose call just ended
        second = eng.allocate_leg()
        assert second.local_port != port
        # late RTP of the ended call keeps arriving: dropped, and the quiet spell restarts
        clock.now += 1.5
        peer.send(port, voice(1, "PCMU"), 0)
        await until(lambda: eng._idle[0].strays == 1)
        clock.now += 1.0  # 2.5 s since the release, but only 1.0 s since the last stray packet
        third = eng.allocate_leg()
        assert third.local_port not in (port, second.local_port)
        clock.now += 2.0  # now quiet for 3.0 s: the pooled pair is taken again, socket and reader as they were
        # queued, never read (half frames, to tell them apart): the new leg must not see them
        peer.send(port, voice(2, "PCMU")[:80], 0)
        peer.send(port, voice(2, "PCMU")[:80], 0)
        reused = eng.allocate_leg()
        assert reused.local_port == port and reused._rtp is first._rtp
        assert reused.stats.packets_in == 0
        reused.set_remote(NegotiatedMedia(HOST, peer.port, "PCMU", 0))
        peer.send(port, voice(3, "PCMU"), 0)
        await until(lambda: reused.stats.packets_in >= 1)
        assert (reused.stats.packets_in, reused.stats.octets_in) == (1, 12 + 160)  # the new packet only
        assert first.stats.packets_in == 0  # the old leg object never hears of it
    finally:
        peer.transport.close()
        await eng.close()


async def test_a_full_pool_hands_out_its_oldest_quiet_pair_instead_of_binding_a_new_one() -> None:
    """Calls ending faster than ``reuse_quiet`` keep the pool at least half full: its oldest pair, the one a
    coming release would close, is reused (quiet a quarter of ``reuse_quiet`` at least) rather than closed
    while a new pair is bound."""
    clock = FakeClock()
    peer = await make_peer()
    eng = MediaEngine(HOST, 41600, 41619, clock=clock, start_clock=False, reuse_quiet=2.0, idle_max=2)
    try:
        legs = [eng.allocate_leg() for _ in range(3)]
        ports = [leg.local_port for leg in legs]
        for leg in legs[:2]:
            leg.close()
        assert [e.port for e in eng._idle] == ports[:2]  # full: two pairs, neither quiet for 2 s yet
        clock.now += 0.3  # under a quarter of reuse_quiet: a new pair is bound
        fresh = eng.allocate_leg()
        assert fresh.local_port not in ports and len(eng._idle) == 2
        clock.now += 0.3  # 0.6 s: the oldest pair is taken (drained as any pooled pair), nothing is bound
        reused = eng.allocate_leg()
        assert reused.local_port == ports[0] and reused._rtp is legs[0]._rtp
        assert [e.port for e in eng._idle] == ports[1:2]
        # A pooled pair that just received a stray is not quiet: with the pool full again, a new pair.
        legs[2].close()
        assert [e.port for e in eng._idle] == [ports[1], ports[2]]
        peer.send(ports[1], voice(2, "PCMU"), 0)
        await until(lambda: eng._idle[0].strays == 1)
        other = eng.allocate_leg()
        assert other.local_port not in ports
    finally:
        peer.transport.close()
        await eng.close()


async def test_pool_is_bounded_and_closed_with_the_engine() -> None:
    import socket

    clock = FakeClock()
    eng = MediaEngine(HOST, 41500, 41509, clock=clock, start_clock=False, idle_max=1)
    legs = [eng.allocate_leg() for _ in range(3)]
    ports = [leg.local_port for leg in legs]
    for leg in legs:
        leg.close()
    assert [e.port for e in eng._idle] == ports[-1:]  # the oldest were closed, not hoarded
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((HOST, ports[0]))  # closed: free for anyone
    probe.close()
    clock.now += 61  # idle longer than idle_ttl: closed at the next allocation
    eng.allocate_leg().close()
    assert ports[-1] not in eng._idle_ports
    await eng.close()
    assert not eng._idle
    for port in ports:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((HOST, port))
        probe.close()


# -- a leg that misbehaves must not stop the clock every other call shares -----------------------------
# NegotiatedMedia built by hand, past sdp.answer()'s checks: what used to raise out of the clock task
# (OverflowError from sendto, struct.error from packing the RTP header) and end prompts, keep-alives and
# recorder frames for every call on the gateway.
HOSTILE = [NegotiatedMedia(HOST, 70000, "PCMU", 0), NegotiatedMedia(HOST, 9, "PCMU", 300)]
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["C-tick", "python-tick"])


@PATHS
@pytest.mark.parametrize("hostile", HOSTILE, ids=["port-70000", "pt-300"])
async def test_clock_survives_a_leg_whose_tick_raises(
        fast_path: bool, hostile: NegotiatedMedia, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng = MediaEngine(HOST, 41600, 41609, fast_path=fast_path)  # the real clock task
    assert (eng._tick_legs is not None) == (fast_path and session._FAST is not None)
    peer = await make_peer()
    try:
        bad = eng.allocate_leg(keepalive=True, name="hostile")  # first in the slice: ticked first
        bad.set_remote(hostile)
        good = eng.allocate_leg(keepalive=True, name="good")
        good.set_remote(media(peer, "PCMU"))
        rec = eng.recorder(str(tmp_path / "good.wav"))
        bad.record(rec, 0)
        good.record(rec, 1)
        for _ in range(10):  # 200 ms of keep-alives after the hostile leg first raised
            await peer.get()
        assert eng._clock_task is not None and not eng._clock_task.done()
        assert bad.stats.tick_errors >= 5 and good.stats.tick_errors == 0 and eng.tick_errors == 0
        assert eng.leg_tick_errors == bad.stats.tick_errors  # what gateway_media_tick_errors_total adds up
        assert good.stats.generated_out >= 10 and rec.frames_queued >= 9
        logged = [r for r in caplog.records if "media clock tick failed" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None  # once per leg, with the traceback
        await rec.seal_async()
    finally:
        peer.transport.close()
        await eng.close()


class _ClosedRaises:
    """An entry of ``engine.legs`` whose ``closed`` raises: a failure outside any leg's own tick (the C
    tick_legs then stops the slice, the Python loop too)."""

    @property
    def closed(self) -> bool:
        raise RuntimeError("not a leg")


@PATHS
async def test_a_slice_that_raises_still_ticks_its_recorders_and_is_logged_once_a_minute(
        fast_path: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    eng = MediaEngine(HOST, 41610, 41619, clock=clock, start_clock=False, fast_path=fast_path)
    try:
        leg = eng.allocate_leg()
        rec = eng.recorder(str(tmp_path / "r.wav"))
        leg.record(rec, 0)
        eng.legs[1] = _ClosedRaises()  # type: ignore[assignment]
        for _ in range(3):
            clock.now += 0.02
            eng.tick(clock.now)
        assert (eng.tick_errors, rec.frames_queued) == (3, 3)
        clock.now += 60
        eng.tick(clock.now)
        logged = [r for r in caplog.records if "ticking legs failed" in r.getMessage()]
        assert len(logged) == 2 and rec.frames_queued == 4
        del eng.legs[1]
        await rec.seal_async()
    finally:
        await eng.close()


class _BrokenPlayer(WavPlayer):
    def read(self, codec: str) -> tuple[bytes, bytes] | None:
        raise RuntimeError("prompt decoder bug")


@PATHS
async def test_prompt_that_raises_ends_with_false_and_the_leg_goes_on(fast_path: bool) -> None:
    clock = FakeClock()
    eng = MediaEngine(HOST, 41620, 41629, clock=clock, start_clock=False, fast_path=fast_path)
    peer = await make_peer()
    try:
        leg = eng.allocate_leg(keepalive=True)
        leg.set_remote(media(peer, "PCMU"))
        done = leg.play(_BrokenPlayer(Audio(b"\0\0" * 1600)))
        clock.now += 0.02
        eng.tick(clock.now)
        assert done.done() and done.result() is False and leg.stats.tick_errors == 1
        clock.now += 0.02
        eng.tick(clock.now)  # no prompt now: keep-alive silence
        assert (await peer.get()).payload == g711.silence("PCMU")
    finally:
        peer.transport.close()
        await eng.close()


async def test_no_rtcp_where_there_is_no_rtcp_port(engine: MediaEngine) -> None:
    leg = engine.allocate_leg()
    leg.set_remote(NegotiatedMedia(HOST, 65535, "PCMU", 0))  # RTCP would go to 65536
    assert leg.remote == (HOST, 65535) and leg.remote_rtcp is None
    leg.set_remote(NegotiatedMedia(HOST, 4000, "PCMU", 0, remote_rtcp_port=70001))  # built by hand
    assert leg.remote_rtcp is None
    leg.set_remote(NegotiatedMedia(HOST, 4000, "PCMU", 0))
    assert leg.remote_rtcp == (HOST, 4001)
    # symmetric RTP from source port 65535: latched, but no RTCP port to go with it
    leg._receive_rtp(bytes(RtpPacket(0, 1, 160, 0x4242, voice(1, "PCMU"))), (HOST, 65535), engine.clock())
    assert leg.remote == (HOST, 65535) and leg.latched and leg.remote_rtcp is None
    engine.tick(engine.clock() + 10)  # an RTCP report is due: nothing to send it to, nothing raised
    assert leg.stats.tick_errors == 0


async def test_ipv6_leg_keeps_its_latched_source_and_relays() -> None:
    """recvfrom gives IPv6 sources as (host, port, flowinfo, scope_id); latching compares host and port."""
    import socket

    loop = asyncio.get_running_loop()
    socks = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            socks.append(s)
            s.setblocking(False)
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    hp, op = socks
    eng = MediaEngine("::1", 41700, 41709, clock=FakeClock(), start_clock=False)
    try:
        leg_a, leg_b = eng.allocate_leg(), eng.allocate_leg()
        leg_a.set_remote(NegotiatedMedia("::1", hp.getsockname()[1], "PCMU", 0))
        leg_b.set_remote(NegotiatedMedia("::1", op.getsockname()[1], "PCMU", 0))
        bridge(leg_a, leg_b)
        for i in range(5):
            hp.sendto(bytes(RtpPacket(0, i, 160 * i, 7, voice(i, "PCMU"))), ("::1", leg_a.local_port))
        c = leg_a.stats_counters
        await until(lambda: c.packets_in + c.wrong_source_in + c.invalid_in >= 5)
        assert (c.packets_in, c.wrong_source_in) == (5, 0)
        assert leg_a.latched and leg_a.remote == ("::1", hp.getsockname()[1])
        relayed = [RtpPacket.unpack(await asyncio.wait_for(loop.sock_recv(op, 2048), 2)) for _ in range(5)]
        assert [p.payload for p in relayed] == [voice(i, "PCMU") for i in range(5)]
        assert leg_b.stats.relayed_out == 5
    finally:
        for s in socks:
            s.close()
        await eng.close()
