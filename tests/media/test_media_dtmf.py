"""RFC 4733 telephone-events: payload vectors, the detector, and SIPp's captured digits."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gateway.media.dtmf import DtmfDetector, TelephoneEvent
from gateway.media.errors import RtpError
from gateway.media.rtp import RtpPacket

PCAP_DIR = Path("/usr/share/sip-tester")


@pytest.mark.parametrize(("event", "data"), [
    (TelephoneEvent(1, False, 10, 0), bytes.fromhex("010a0000")),
    (TelephoneEvent(11, True, 10, 800), bytes.fromhex("0b8a0320")),
    (TelephoneEvent(10, False, 63, 65535), bytes.fromhex("0a3fffff")),
])
def test_payload_vectors(event: TelephoneEvent, data: bytes) -> None:
    assert bytes(event) == data
    assert TelephoneEvent.unpack(data) == event


def test_digits() -> None:
    assert [TelephoneEvent(i).digit for i in range(17)] == list("0123456789*#ABCD!")
    assert TelephoneEvent(40).digit is None
    assert TelephoneEvent.from_digit("*").event == 10
    with pytest.raises(RtpError):
        TelephoneEvent.from_digit("x")
    with pytest.raises(RtpError):
        TelephoneEvent.unpack(b"\x01")


def packets_for(digit: str, ts: int, *, ends: int = 3) -> list[tuple[int, bytes]]:
    ev = TelephoneEvent.from_digit(digit)
    out = [(ts, bytes(TelephoneEvent(ev.event, False, 10, d))) for d in (160, 320, 480)]
    out += [(ts, bytes(TelephoneEvent(ev.event, True, 10, 640)))] * ends
    return out


def test_each_digit_reported_once_with_retransmitted_ends() -> None:
    det = DtmfDetector()
    got = []
    for ts, payload in packets_for("*", 1000) + packets_for("1", 5000) + packets_for("1", 9000):
        got += det.receive(ts, payload)
    assert got == ["*", "1", "1"]


def test_lost_end_packets_reported_on_next_event_or_flush() -> None:
    det = DtmfDetector()
    got = []
    for ts, payload in packets_for("*", 1000, ends=0) + packets_for("2", 5000, ends=0):
        got += det.receive(ts, payload)
    assert got == ["*"]
    assert det.flush() == ["2"]
    assert det.flush() == []


def test_end_retransmission_after_flush_not_reported_again() -> None:
    det = DtmfDetector()
    assert det.receive(1, bytes(TelephoneEvent(5, True))) == ["5"]
    assert det.flush() == []
    assert det.receive(1, bytes(TelephoneEvent(5, True))) == []


def read_pcap_udp(path: Path) -> list[bytes]:
    """UDP payloads of an Ethernet/IPv4 libpcap file (a tiny reader, enough for SIPp's samples)."""
    data = path.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    assert linktype == 1, "Ethernet captures only"
    pos, out = 24, []
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl:]
        length = struct.unpack_from("!H", udp, 4)[0]
        out.append(udp[8:length])
    return out


PCAPS = sorted(PCAP_DIR.glob("dtmf_2833_*.pcap"))


@pytest.mark.skipif(not PCAPS, reason="sip-tester sample pcaps not installed")
@pytest.mark.parametrize("path", PCAPS, ids=[p.stem for p in PCAPS])
def test_sipp_dtmf_pcaps(path: Path) -> None:
    expected = {"star": "*", "pound": "#"}.get(path.stem.rsplit("_", 1)[1], path.stem.rsplit("_", 1)[1])
    det = DtmfDetector()
    digits = []
    for payload in read_pcap_udp(path):
        packet = RtpPacket.unpack(payload)
        assert packet.payload_type == 101
        digits += det.receive(packet.timestamp, packet.payload)
    digits += det.flush()
    assert digits == [expected]


def test_late_end_of_a_reported_digit_after_the_next_one_started_is_not_reported_again() -> None:
    """A retransmitted End (RFC 4733 §2.5.1.4) overtaken by the next event's first packets (4G
    reordering): the digit was reported once already, and the next digit is not cut short."""
    det = DtmfDetector()
    one, two = packets_for("1", 1000), packets_for("2", 5000)
    got = []
    for ts, payload in one[:4] + two[:2] + one[4:] + two[2:]:
        got += det.receive(ts, payload)
    assert got == ["1", "2"]


def test_late_packet_of_a_flushed_digit_is_not_reported_again() -> None:
    det = DtmfDetector()
    one, two = packets_for("1", 1000, ends=0), packets_for("2", 5000)
    got = []
    for ts, payload in one + two[:1] + one[1:2] + two[1:]:
        got += det.receive(ts, payload)
    assert got == ["1", "2"]


def test_events_across_the_timestamp_wrap() -> None:
    det = DtmfDetector()
    got = []
    for ts, payload in packets_for("3", 0xFFFFFF60) + packets_for("4", 0x00000040) + packets_for("4", 0x1000):
        got += det.receive(ts, payload)
    assert got == ["3", "4", "4"]


def test_hostile_event_codes_report_nothing() -> None:
    det = DtmfDetector()
    got = []
    for event in (17, 100, 255):
        got += det.receive(event * 1000, bytes(TelephoneEvent(event, True, 63, 0xFFFF)))
    got += det.receive(1, b"\xff\xff\xff")  # truncated
    assert got == [] and det.flush() == []


def long_event_segments(digit: str, ts: int, segments: int, *, last_segment_lost_tail: bool = False,
                        ) -> list[tuple[int, bytes]]:
    """A key held longer than 0xFFFF timestamp units (8.2 s): RFC 4733 §2.5.1.3 sends it as segments,
    each new one at the previous timestamp plus 0xFFFF, End bits only on the last segment."""
    ev = TelephoneEvent.from_digit(digit).event
    out: list[tuple[int, bytes]] = []
    for n in range(segments):
        seg_ts = (ts + n * 0xFFFF) & 0xFFFFFFFF
        last = n == segments - 1
        durations = (160, 32000, 0xFFFF) if not last else (160, 320)
        if not last and last_segment_lost_tail and n == 0:
            durations = (160, 32000)  # the segment's closing 0xFFFF packet was lost
        out += [(seg_ts, bytes(TelephoneEvent(ev, False, 10, d))) for d in durations]
        if last:
            out += [(seg_ts, bytes(TelephoneEvent(ev, True, 10, 480)))] * 3
    return out


@pytest.mark.parametrize("lost_tail", [False, True])
def test_long_event_in_segments_is_one_digit(lost_tail: bool) -> None:
    """An operator holding a key for 20 s is one digit, not one per 8.2 s segment."""
    det = DtmfDetector()
    got = []
    for ts, payload in long_event_segments("5", 0xFFFF0000, 3, last_segment_lost_tail=lost_tail) + packets_for(
        "5", 0x30000
    ):
        got += det.receive(ts, payload)
    got += det.flush()
    assert got == ["5", "5"]


def test_same_digit_again_after_a_normal_end_is_a_new_digit() -> None:
    det = DtmfDetector()
    got = []
    for ts, payload in packets_for("7", 1000) + packets_for("7", 1000 + 0xFFFF):
        got += det.receive(ts, payload)
    assert got == ["7", "7"]


def test_late_packet_of_an_earlier_segment_is_not_a_new_digit() -> None:
    det = DtmfDetector()
    seg = long_event_segments("9", 5000, 2)
    first, second = seg[:3], seg[3:]
    got = []
    for ts, payload in first[:2] + second[:1] + first[2:] + second[1:]:
        got += det.receive(ts, payload)
    got += det.flush()
    assert got == ["9"]
