"""Hostile and truncated RTCP: every malformed compound packet is an RtpError, never another exception
and never a packet made of bytes that are not there."""

from __future__ import annotations

import random
import struct

import pytest

from gateway.media.errors import RtpError
from gateway.media.rtcp import ReceiverReport, ReportBlock, SenderReport, pack_rtcp, unpack_rtcp


def _hdr(b0: int, pt: int, words: int) -> bytes:
    return struct.pack("!BBH", b0, pt, words)


RR = bytes(ReceiverReport(1, (ReportBlock(2, 10, -5, 70000, 80),)))


@pytest.mark.parametrize("data", [
    b"\x80",                                          # header truncated
    _hdr(0x80, 201, 5),                               # length past the end
    _hdr(0x9F, 201, 1) + bytes(4),                    # 31 report blocks announced, none there
    _hdr(0x81, 200, 6) + bytes(24),                   # SR with one block announced, none there
    _hdr(0x82, 203, 1) + bytes(4),                    # BYE with two sources, one there
    _hdr(0x41, 201, 7) + bytes(28),                   # version 1
    RR + b"\x80",                                     # a valid packet, then a truncated one
    _hdr(0xA0, 203, 1) + b"\x00\x00\x00\xff",         # padding count larger than the packet
    _hdr(0xA0, 204, 1) + b"\x00\x00\x00\x08",         # the same, unknown packet type
], ids=range(9))
def test_malformed_compound_packets_raise_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        unpack_rtcp(data)


def test_report_block_fields_round_trip_at_their_limits() -> None:
    block = ReportBlock(0xFFFFFFFF, 255, -0x800000, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    sr = SenderReport(1, 2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, (block,) * 31)
    assert unpack_rtcp(pack_rtcp([sr, ReceiverReport(3)])) == [sr, ReceiverReport(3)]


def test_random_datagrams_raise_only_rtp_error() -> None:
    rng = random.Random(3550)
    for _ in range(20000):
        data = bytearray(rng.getrandbits(8) for _ in range(rng.choice([4, 8, 12, 28, 52, 60])))
        data[0] = (data[0] & 0x3F) | 0x80
        data[1] = rng.choice([200, 201, 202, 203, 204])
        struct.pack_into("!H", data, 2, rng.choice([0, 1, len(data) // 4 - 1, 65535]))
        try:
            unpack_rtcp(bytes(data))
        except RtpError:
            pass
