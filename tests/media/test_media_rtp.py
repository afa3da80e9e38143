"""RTP/RTCP wire vectors, RFC 3550 receive statistics and the RtpSender's continuity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.media.errors import RtpError
from gateway.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpUnknown,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    pack_rtcp,
    unpack_rtcp,
)
from gateway.media.rtp import ReceiveStats, RtpPacket, RtpSender, is_rtcp

H = bytes.fromhex

RTP_VECTORS = [
    ("plain-pcmu", RtpPacket(0, 0x1234, 0x11223344, 0xDEADBEEF, b"\xff" * 4),
     H("80001234112233 44deadbeef ffffffff".replace(" ", ""))),
    ("marker-pcma", RtpPacket(8, 65535, 0xFFFFFFFF, 1, b"\xd5\xd5", marker=True),
     H("8088ffffffffffff00000001d5d5")),
    ("csrc", RtpPacket(0, 1, 160, 2, b"\x01", csrc=(0xAAAAAAAA, 0xBBBBBBBB)),
     H("82000001000000a000000002aaaaaaaabbbbbbbb01")),
    ("extension", RtpPacket(96, 2, 320, 3, b"\x02\x03", extension=(0xBEDE, H("10ff0000"))),
     H("906000020000014000000003bede000110ff00000203")),
    ("padding", RtpPacket(0, 3, 480, 4, b"\x05", padding=4),
     H("a00000030000 01e00000000405000000 04".replace(" ", ""))),
    ("everything", RtpPacket(101, 9, 9, 9, b"\x01\x0a\x01\x40", marker=True, csrc=(7,),
                             extension=(1, b""), padding=2),
     H("b1e5000900000009000000090000000700010000010a01400002")),
]


@pytest.mark.parametrize(("packet", "data"), [v[1:] for v in RTP_VECTORS], ids=[v[0] for v in RTP_VECTORS])
def test_rtp_vectors_both_ways(packet: RtpPacket, data: bytes) -> None:
    assert bytes(packet) == data
    assert RtpPacket.unpack(data) == packet


@pytest.mark.parametrize("data", [b"", H("8000"), H("400000010000000000000000"), H("83000001000000000000000000"),
                                  H("900000010000000000000000bede0005"), H("a0000001000000000000000000"),
                                  H("a000000100000000000000000009")],
                         ids=["empty", "short", "version1", "csrc-past-end", "ext-past-end", "padding-zero",
                              "padding-too-long"])
def test_rtp_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.unpack(data)


def test_is_rtcp() -> None:
    assert is_rtcp(H("80c80006")) and not is_rtcp(H("80000001")) and not is_rtcp(H("80"))


def test_sender_report_vector() -> None:
    block = ReportBlock(0x01020304, 25, -3, 0x00010005, 40, 0x11112222, 0x00018000)
    sr = SenderReport(0xCAFEBABE, 0xE1234567_80000000, 160000, 1000, 160000, (block,))
    data = H("81c8000c" "cafebabe" "e123456780000000" "00027100" "000003e8" "00027100"
             "01020304" "19fffffd" "00010005" "00000028" "11112222" "00018000")
    assert bytes(sr) == data
    assert unpack_rtcp(data) == [sr]


def test_compound_rr_sdes_bye_unknown_round_trip() -> None:
    packets = [ReceiverReport(5, (ReportBlock(6, 0, 0, 100, 3),)),
               SourceDescription(((5, "gateway@192.0.2.1"),)),
               Bye((5,), "call ended"),
               RtcpUnknown(1, 207, H("00000005deadbeef"))]
    data = pack_rtcp(packets)
    assert unpack_rtcp(data) == packets
    assert data[:8] == H("81c9000700000005")  # RR with one block: 8 words -> length 7
    assert len(data) % 4 == 0


@pytest.mark.parametrize("data", [H("81c9"), H("81c90007000000"), H("41c9000100000005"),
                                  H("81c8000100000005")],
                         ids=["short-header", "length-past-end", "version1", "sr-truncated"])
def test_rtcp_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        unpack_rtcp(data)


def test_ntp_timestamp() -> None:
    ntp = ntp_timestamp(1.5)
    assert ntp == (2208988801 << 32) | 0x80000000
    assert ntp_middle(ntp) == ((2208988801 & 0xFFFF) << 16) | 0x8000


# -- receive statistics ------------------------------------------------------------------------

def feed(stats: ReceiveStats, seqs: list[int], start: float = 0.0) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, start + i * 0.02)


def test_no_loss_in_order() -> None:
    s = ReceiveStats()
    feed(s, list(range(100, 150)))
    assert (s.received, s.expected, s.lost) == (49, 49, 0)  # first packet is RFC 3550 probation
    assert s.jitter == 0.0


def test_sequence_wrap_extends_highest_seq() -> None:
    s = ReceiveStats()
    feed(s, list(range(65530, 65546)))
    assert s.cycles == 1 << 16
    assert s.extended_max_seq == (1 << 16) + 9
    assert s.lost == 0 and s.received == 15


def test_loss_and_fraction_over_interval() -> None:
    s = ReceiveStats()
    seqs = [n for n in range(1000, 1101) if n % 10 != 5]  # lose every tenth
    feed(s, seqs)
    assert s.lost == 10
    fraction, cumulative, ext, jitter, lsr, dlsr = s.report(now=10.0)
    assert cumulative == 10 and ext == 1100
    assert fraction == (10 << 8) // 100
    assert s.report(now=11.0)[0] == 0  # new interval, nothing lost since


def test_reordering_counts_no_loss() -> None:
    s = ReceiveStats()
    feed(s, [1, 2, 3, 5, 4, 6, 8, 7, 9, 10])
    assert s.lost == 0 and s.max_seq == 10 and s.duplicates_or_late == 2


def test_reordering_across_wrap() -> None:
    s = ReceiveStats()
    feed(s, [65533, 65534, 0, 65535, 1, 2])
    assert s.lost == 0 and s.extended_max_seq == (1 << 16) + 2


def test_duplicates_give_negative_loss() -> None:
    s = ReceiveStats()
    feed(s, [1, 2, 3, 3, 4])
    assert s.lost == -1


def test_jitter_rfc3550_a8() -> None:
    s = ReceiveStats()
    # timestamps every 160 samples (20 ms); arrivals alternate 30 ms and 10 ms apart
    arrival = 0.0
    for i in range(200):
        s.update(i, i * 160, arrival)
        arrival += 0.01 if i % 2 else 0.03
    # D alternates +80 and -80 samples; |D| = 80 every packet, J converges to 80
    assert s.jitter == pytest.approx(80, abs=0.5)
    assert s.jitter_seconds == pytest.approx(0.01, abs=1e-4)


def test_source_restart_after_big_jump() -> None:
    s = ReceiveStats()
    feed(s, list(range(10, 20)))
    assert s.update(40000, 0, 1.0) is False  # big jump: probation of the new sequence
    assert s.update(40001, 160, 1.02) is True
    assert s.base_seq == 40001 and s.lost == 0


def test_dlsr_from_last_sr() -> None:
    s = ReceiveStats()
    feed(s, [1, 2, 3])
    s.receive_sr(0x12345678, now=5.0)
    *_, lsr, dlsr = s.report(now=6.5)
    assert lsr == 0x12345678 and dlsr == int(1.5 * 65536)


# -- RtpSender -----------------------------------------------------------------------------------

def header(data: bytes) -> tuple[bool, int, int, int]:
    p = RtpPacket.unpack(data)
    assert p.ssrc == 0x5EED
    return p.marker, p.sequence_number, p.timestamp, p.payload_type


def test_sender_relay_then_silence_then_relay_is_continuous() -> None:
    tx = RtpSender(0x5EED, 0, initial_seq=65534, initial_ts=1000)
    out = []
    now = 0.0
    # 3 relayed packets from a source with its own numbering
    for i in range(3):
        out.append(header(tx.relay(0xAB, 500 + i, 90000 + 160 * i, b"\x00" * 160, now)))
        now += 0.02
    # source goes quiet: 3 generated silence frames on the 20 ms clock
    for _ in range(3):
        out.append(header(tx.generate(b"\xff" * 160, now)))
        now += 0.02
    # source resumes with a timestamp far ahead (its clock ran during VAD)
    for i in range(2):
        out.append(header(tx.relay(0xAB, 503 + i, 500000 + 160 * i, b"\x00" * 160, now)))
        now += 0.02
    assert [o[1] for o in out] == [65534, 65535, 0, 1, 2, 3, 4, 5]
    assert [o[2] for o in out] == [1000 + 160 * i for i in range(8)]
    assert [o[0] for o in out] == [True, False, False, True, False, False, True, False]


def test_sender_keeps_wall_clock_spacing_over_a_real_gap() -> None:
    tx = RtpSender(0x5EED, 8, initial_seq=0, initial_ts=0)
    tx.generate(b"\xd5" * 160, 0.0)
    later = header(tx.generate(b"\xd5" * 160, 1.0))  # nothing sent for a second
    assert later[2] == 8000 and later[3] == 8


def test_sender_relay_preserves_source_gaps_and_reordering() -> None:
    tx = RtpSender(0x5EED, 0, initial_seq=10, initial_ts=0)
    seqs = []
    for seq, t in [(100, 0.0), (101, 0.02), (103, 0.06), (102, 0.061), (104, 0.08)]:
        seqs.append(header(tx.relay(7, seq, seq * 160, b"\x00" * 160, t))[1:3])
    assert seqs == [(10, 0), (11, 160), (13, 480), (12, 320), (14, 640)]
    assert tx.next_seq == 15 and tx.last_ts == 640


def test_sender_new_source_ssrc_resyncs() -> None:
    tx = RtpSender(0x5EED, 0, initial_seq=0, initial_ts=0)
    tx.relay(1, 50, 1234, b"\x00" * 160, 0.0)
    marker, seq, ts, _ = header(tx.relay(2, 9000, 777, b"\x00" * 160, 0.02))
    assert (marker, seq, ts) == (True, 1, 160)


def test_sender_counts_for_sr() -> None:
    tx = RtpSender(0x5EED, 0)
    for i in range(5):
        tx.generate(b"\xff" * 160, i * 0.02)
    assert (tx.packets, tx.octets) == (5, 800)


def test_generated_timestamps_never_run_ahead_after_late_ticks() -> None:
    """Issue 6: a clock that catches up after late ticks must not push the RTP clock ahead of wall time."""
    sender = RtpSender(0x1234, 0, initial_seq=1, initial_ts=1000)
    silence = bytes(160)
    times = [0.0, 0.02, 0.04]
    # 20 late ticks: each one 15 ms late, the next on schedule 5 ms later (a busy event loop).
    t = 0.04
    for _ in range(20):
        times += [t + 0.035, t + 0.04, t + 0.06]
        t += 0.06
    stamps = [RtpPacket.unpack(sender.generate(silence, now)).timestamp for now in times]
    first = stamps[0]
    for now, ts in zip(times, stamps, strict=True):
        drift = ((ts - first) % 2**32) - round(now * 8000)
        assert abs(drift) <= 80, f"{drift} samples off the wall clock at {now:.3f} s"
    assert all(0 < (b - a) % 2**32 <= 320 for a, b in zip(stamps, stamps[1:], strict=False))


# -- the fast paths give exactly what the general code gives -----------------------------------------

_packets = st.lists(
    st.tuples(st.sampled_from([1, 1, 1, 1, 2, 0, -1, 5, 3000, -200, 40000]),  # sequence step
              st.sampled_from([160, 160, 160, 0, 320, 8000, 9000, -160, 200000]),  # timestamp step
              st.floats(0.0, 0.2),  # arrival gap (s)
              st.booleans(),  # jitter counted (audio) or not (telephone-event)
              st.sampled_from([7, 7, 7, 7, 8])),  # source SSRC
    max_size=120)


def _slow_update(stats: ReceiveStats, seq: int, ts: int, now: float, jitter: bool) -> bool:
    """ReceiveStats.update without its fast path (the RFC 3550 A.1 code for every packet)."""
    return stats._update(seq, ts, now, jitter)


@settings(max_examples=300, deadline=None)
@given(start_seq=st.integers(0, 0xFFFF), start_ts=st.integers(0, 0xFFFFFFFF), steps=_packets)
def test_receive_stats_fast_path_matches_rfc3550_code(start_seq: int, start_ts: int,
                                                      steps: list[tuple[int, int, float, bool, int]]) -> None:
    fast, slow = ReceiveStats(), ReceiveStats()
    seq, ts, now = start_seq, start_ts, 100.0
    for dseq, dts, gap, jitter, _ssrc in steps:
        seq, ts, now = (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF, now + gap
        assert fast.update(seq, ts, now, jitter=jitter) == _slow_update(slow, seq, ts, now, jitter)
        assert (fast.received, fast.max_seq, fast.cycles, fast.lost, fast.expected, fast.probation) == \
               (slow.received, slow.max_seq, slow.cycles, slow.lost, slow.expected, slow.probation)
        assert fast.jitter == pytest.approx(slow.jitter, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(start_seq=st.integers(0, 0xFFFF), start_ts=st.integers(0, 0xFFFFFFFF), steps=_packets)
def test_sender_relay_fast_path_matches_general_mapping(start_seq: int, start_ts: int,
                                                        steps: list[tuple[int, int, float, bool, int]]) -> None:
    fast = RtpSender(0xABCD, 8, initial_seq=321, initial_ts=999)
    slow = RtpSender(0xABCD, 8, initial_seq=321, initial_ts=999)
    seq, ts, now = start_seq, start_ts, 50.0
    payload = bytes(160)
    for dseq, dts, gap, marker, ssrc in steps:
        seq, ts, now = (seq + dseq) & 0xFFFF, (ts + dts) & 0xFFFFFFFF, now + gap
        # samples= given explicitly takes the general path; the result must be the same datagram
        assert fast.relay(ssrc, seq, ts, payload, now, marker=marker) == \
               slow.relay(ssrc, seq, ts, payload, now, marker=marker, samples=len(payload))
        assert (fast.next_seq, fast.last_ts, fast.packets, fast.octets) == \
               (slow.next_seq, slow.last_ts, slow.packets, slow.octets)
