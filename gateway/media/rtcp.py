"""RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME, BYE.

Pure.  :func:`unpack_rtcp` splits a compound packet into typed packets
(unknown types are kept as :class:`RtcpUnknown`); ``bytes(packet)`` packs
one, and :func:`pack_rtcp` joins several into a compound packet.  NTP time
is passed in by the shell (seconds since 1970 as a float); this module never
reads a clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import RtpError

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_BLOCK = struct.Struct("!IB3sIIII")


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4) for a Unix time in seconds."""
    seconds = int(unix_time) + _NTP_EPOCH_OFFSET
    fraction = int((unix_time % 1.0) * (1 << 32)) & 0xFFFFFFFF
    return (seconds & 0xFFFFFFFF) << 32 | fraction


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as used in LSR (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    extended_max_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def __bytes__(self) -> bytes:
        lost = self.cumulative_lost & 0xFFFFFF
        return _BLOCK.pack(self.ssrc, self.fraction_lost, lost.to_bytes(3, "big"), self.extended_max_seq,
                           self.jitter, self.lsr, self.dlsr)

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> ReportBlock:
        """Parse the 24-octet block at ``offset``."""
        ssrc, fraction, lost, ext, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        cumulative = int.from_bytes(lost, "big", signed=True)
        return cls(ssrc, fraction, cumulative, ext, jitter, lsr, dlsr)


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise RtpError("RTCP packet body must be a multiple of 4 octets")
    # length field: packet length in 32-bit words minus one (the header word)
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (PT 200)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack("!IQIII", self.ssrc, self.ntp_timestamp, self.rtp_timestamp & 0xFFFFFFFF,
                           self.packet_count & 0xFFFFFFFF, self.octet_count & 0xFFFFFFFF)
        return _header(len(self.reports), RTCP_SR, body + b"".join(bytes(r) for r in self.reports))


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (PT 201)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports)
        return _header(len(self.reports), RTCP_RR, body)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """RTCP SDES (PT 202) carrying one CNAME per source (all RFC 3550 §6.5 requires)."""

    chunks: tuple[tuple[int, str], ...]

    def __bytes__(self) -> bytes:
        body = b""
        for ssrc, cname in self.chunks:
            text = cname.encode()[:255]
            chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
            body += chunk + bytes(-len(chunk) % 4)
        return _header(len(self.chunks), RTCP_SDES, body)


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (PT 203)."""

    sources: tuple[int, ...]
    reason: str = ""

    def __bytes__(self) -> bytes:
        body = b"".join(struct.pack("!I", s) for s in self.sources)
        if self.reason:
            text = self.reason.encode()[:255]
            tail = bytes((len(text),)) + text
            body += tail + bytes(-len(tail) % 4)
        return _header(len(self.sources), RTCP_BYE, body)


@dataclass(frozen=True, slots=True)
class RtcpUnknown:
    """Any other RTCP packet, kept raw (count field, type, body after the 4-octet header)."""

    count: int
    packet_type: int
    body: bytes

    def __bytes__(self) -> bytes:
        return _header(self.count, self.packet_type, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown


def pack_rtcp(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Join packets into one compound RTCP datagram."""
    return b"".join(bytes(p) for p in packets)


def _sdes(count: int, body: bytes) -> SourceDescription:
    chunks = []
    pos = 0
    for _ in range(count):
        if pos + 4 > len(body):
            raise RtpError("SDES chunk truncated")
        (ssrc,) = struct.unpack_from("!I", body, pos)
        pos += 4
        cname = ""
        while pos < len(body) and body[pos] != 0:
            if pos + 2 > len(body):
                raise RtpError("SDES item truncated")
            item, length = body[pos], body[pos + 1]
            value = body[pos + 2:pos + 2 + length]
            if item == 1:
                cname = value.decode("utf-8", "replace")
            pos += 2 + length
        pos += 1
        pos += -pos % 4
        chunks.append((ssrc, cname))
    return SourceDescription(tuple(chunks))


def unpack_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram; raises :class:`RtpError` when malformed."""
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtpError("RTCP header truncated")
        b0, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != 2:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 * (words + 1)
        if end > len(data):
            raise RtpError("RTCP length runs past the end of the datagram")
        body = bytes(data[pos + 4:end])
        if b0 & 0x20 and body:
            if body[-1] > len(body):
                raise RtpError(f"RTCP padding count {body[-1]} larger than the packet")
            body = body[:len(body) - body[-1]]
        count = b0 & 0x1F
        if packet_type == RTCP_SR:
            if len(body) < 24 + 24 * count:
                raise RtpError("SR truncated")
            ssrc, ntp, rtp_ts, pkts, octets = struct.unpack_from("!IQIII", body)
            blocks = tuple(ReportBlock.unpack(body, 24 + 24 * i) for i in range(count))
            packets.append(SenderReport(ssrc, ntp, rtp_ts, pkts, octets, blocks))
        elif packet_type == RTCP_RR:
            if len(body) < 4 + 24 * count:
                raise RtpError("RR truncated")
            (ssrc,) = struct.unpack_from("!I", body)
            packets.append(ReceiverReport(ssrc, tuple(ReportBlock.unpack(body, 4 + 24 * i) for i in range(count))))
        elif packet_type == RTCP_SDES:
            packets.append(_sdes(count, body))
        elif packet_type == RTCP_BYE:
            if len(body) < 4 * count:
                raise RtpError("BYE truncated")
            sources = struct.unpack_from(f"!{count}I", body)
            reason = ""
            if len(body) > 4 * count:
                n = body[4 * count]
                reason = body[4 * count + 1:4 * count + 1 + n].decode("utf-8", "replace")
            packets.append(Bye(sources, reason))
        else:
            packets.append(RtcpUnknown(count, packet_type, body))
        pos = end
    return packets
