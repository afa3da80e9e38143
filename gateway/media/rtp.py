"""RTP (RFC 3550): packets, per-source receive statistics, and our send state.

Pure: no sockets, no clocks.  Times are ``now`` floats in seconds from the
caller's monotonic clock.

* :class:`RtpPacket` packs and unpacks the fixed header, CSRC list, header
  extension and padding (RFC 3550 §5.1, §5.3.1).
* :class:`ReceiveStats` keeps the per-source state of RFC 3550 Appendix A.1
  (sequence validation with wrap), A.3 (expected/lost counts) and A.8
  (interarrival jitter), and produces the numbers a report block needs.
* :class:`RtpSender` owns the SSRC, sequence number and timestamp of one
  outgoing stream.  It either relays another source's packets (rewriting SSRC,
  sequence and timestamp by constant offsets) or generates frames itself
  (silence, comfort noise, prompts).  Switching between the two never makes
  the timestamp jump back or run ahead of wall-clock time (issue 6).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import RtpError

RTP_VERSION = 2
#: Payload type of comfort noise (RFC 3389).
PT_CN = 13
#: Static payload types of RFC 3551 §6 the gateway knows by number.
STATIC_PAYLOAD_TYPES = {0: ("PCMU", 8000), 3: ("GSM", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000),
                        13: ("CN", 8000), 18: ("G729", 8000)}

_HEADER = struct.Struct("!BBHII")
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
# RFC 3550 A.1 constants
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100
_MIN_SEQUENTIAL = 2


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).  ``bytes(packet)`` packs it; :meth:`unpack` parses."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    #: ``(profile-defined 16 bits, extension data)``; data length is a multiple of 4.
    extension: tuple[int, bytes] | None = None
    #: Number of padding octets (0 = no P bit); the last octet of the packet holds the count.
    padding: int = 0

    def __bytes__(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError("at most 15 CSRC identifiers")
        if not 0 <= self.payload_type < 128:
            raise RtpError(f"payload type {self.payload_type} out of range")
        b0 = RTP_VERSION << 6 | (0x20 if self.padding else 0) | (0x10 if self.extension else 0) | len(self.csrc)
        parts = [_HEADER.pack(b0, (0x80 if self.marker else 0) | self.payload_type,
                              self.sequence_number & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)]
        parts.extend(struct.pack("!I", c) for c in self.csrc)
        if self.extension is not None:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError("header extension length must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", profile, len(data) // 4) + data)
        parts.append(self.payload)
        if self.padding:
            if not 0 < self.padding < 256:
                raise RtpError("padding must be 1..255 octets")
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes) -> RtpPacket:
        """Parse ``data``; raises :class:`RtpError` on anything that is not RTP version 2."""
        if len(data) < 12:
            raise RtpError(f"RTP packet too short ({len(data)} octets)")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        offset = 12 + 4 * (b0 & 0x0F)
        end = len(data)
        if offset > end:
            raise RtpError("CSRC list runs past the end of the packet")
        csrc = struct.unpack_from(f"!{b0 & 0x0F}I", data, 12)
        extension = None
        if b0 & 0x10:
            if offset + 4 > end:
                raise RtpError("header extension runs past the end of the packet")
            profile, words = struct.unpack_from("!HH", data, offset)
            ext_end = offset + 4 + 4 * words
            if ext_end > end:
                raise RtpError("header extension runs past the end of the packet")
            extension = (profile, bytes(data[offset + 4:ext_end]))
            offset = ext_end
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or offset + padding > end:
                raise RtpError(f"invalid padding count {padding}")
            end -= padding
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80), csrc, extension, padding)


def is_rtcp(data: bytes) -> bool:
    """True if ``data`` looks like RTCP rather than RTP (RFC 5761 §4: packet types 192-223)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class ReceiveStats:
    """Reception state of one source (RFC 3550 A.1, A.3, A.8)."""

    clock_rate: int = 8000
    ssrc: int | None = None
    received: int = 0
    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    bad_seq: int = _SEQ_MOD + 1
    probation: int = _MIN_SEQUENTIAL
    #: Interarrival jitter in timestamp units, as a float (the RFC keeps it scaled by 16).
    jitter: float = 0.0
    _transit: int | None = None
    _expected_prior: int = 0
    _received_prior: int = 0
    #: Middle 32 bits of the NTP time of the last SR from this source, and when it arrived.
    last_sr: int = 0
    last_sr_at: float | None = None
    duplicates_or_late: int = field(default=0)
    _fresh: bool = True
    #: The sequence number that continues the stream (-1: none yet), for the fast path of update().
    _next_seq: int = -1

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = _SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(self, seq: int, timestamp: int, now: float, *, jitter: bool = True) -> bool:
        """Account for a packet; False means the packet should be discarded (probation or bad jump).

        As in RFC 3550 A.1 a source is valid after two sequential packets; the
        caller may still play packets during probation.  ``jitter=False`` counts
        a packet whose timestamp is not a sampling instant (a telephone-event
        repeats its start timestamp) without feeding the jitter estimate.
        """
        if seq == self._next_seq and not self.probation:
            # Fast path (nearly every packet): the next sequence number of a validated source.
            if not seq:
                self.cycles += _SEQ_MOD
            self.max_seq = seq
            self._next_seq = (seq + 1) & 0xFFFF
            self.received += 1
            if jitter:
                transit = (int(now * self.clock_rate + 0.5) - timestamp) & 0xFFFFFFFF
                last = self._transit
                if last is not None:
                    d = (transit - last) & 0xFFFFFFFF
                    if d >= 0x80000000:
                        d = _TS_MOD - d
                    self.jitter += (d - self.jitter) * 0.0625
                self._transit = transit
            return True
        try:
            return self._update(seq, timestamp, now, jitter)
        finally:
            self._next_seq = (self.max_seq + 1) & 0xFFFF

    def _update(self, seq: int, timestamp: int, now: float, jitter: bool) -> bool:
        if self._fresh:
            self._fresh = False
            self._init_seq(seq)
            self.max_seq = (seq - 1) % _SEQ_MOD
            self.probation = _MIN_SEQUENTIAL
        udelta = (seq - self.max_seq) % _SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % _SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received = 1
                    if jitter:
                        self._jitter(timestamp, now)
                    return True
            else:
                self.probation = _MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < _MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += _SEQ_MOD
            self.max_seq = seq
        elif udelta <= _SEQ_MOD - _MAX_MISORDER:
            if seq == self.bad_seq:
                # two sequential packets after a big jump: the source restarted
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) % _SEQ_MOD
                return False
        else:
            self.duplicates_or_late += 1  # duplicate or reordered: still counted as received
        self.received += 1
        if jitter:
            self._jitter(timestamp, now)
        return True

    def _jitter(self, timestamp: int, now: float) -> None:
        # RFC 3550 A.8: transit = arrival - timestamp, in timestamp units
        arrival = int(now * self.clock_rate + 0.5)
        transit = (arrival - timestamp) % _TS_MOD
        if self._transit is not None:
            d = (transit - self._transit) % _TS_MOD
            if d >= _TS_MOD // 2:
                d = _TS_MOD - d
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    @property
    def extended_max_seq(self) -> int:
        """Extended highest sequence number received (cycles << 16 | max_seq)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the first valid one (RFC 3550 A.3)."""
        return self.extended_max_seq - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative when duplicates arrived)."""
        return self.expected - self.received

    @property
    def jitter_seconds(self) -> float:
        """Interarrival jitter in seconds."""
        return self.jitter / self.clock_rate

    def receive_sr(self, ntp_middle: int, now: float) -> None:
        """Note a sender report from this source, for LSR/DLSR in our next report."""
        self.last_sr = ntp_middle
        self.last_sr_at = now

    def report(self, now: float) -> tuple[int, int, int, int, int, int]:
        """``(fraction_lost, cumulative_lost, extended_max_seq, jitter, lsr, dlsr)`` for a report
        block; starts a new reporting interval (RFC 3550 A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        cumulative = max(-0x800000, min(0x7FFFFF, self.lost))
        dlsr = 0 if self.last_sr_at is None else int((now - self.last_sr_at) * 65536) & 0xFFFFFFFF
        return fraction, cumulative, self.extended_max_seq & 0xFFFFFFFF, int(self.jitter), self.last_sr, dlsr


class RtpSender:
    """Sequence/timestamp state of one outgoing stream with our own SSRC.

    Relayed packets keep the source's spacing (constant offsets); generated
    frames continue from the last packet sent.  On every switch (generated ->
    relayed, a new source SSRC, or a source timestamp discontinuity) the
    offsets are recomputed so the next timestamp is the later of "right after
    the last packet" and "wall-clock time since the last packet", and the
    marker bit is set (start of a talkspurt, RFC 3551 §4.1).
    """

    #: A relayed timestamp this far (in samples) from wall-clock expectation forces a resync.
    RESYNC_SAMPLES = 8000

    __slots__ = ("ssrc", "payload_type", "clock_rate", "next_seq", "last_ts", "last_samples", "last_now",
                 "relaying", "source_ssrc", "ts_offset", "seq_offset", "packets", "octets", "_max_seq",
                 "_anchor")

    def __init__(self, ssrc: int, payload_type: int, *, initial_seq: int = 0, initial_ts: int = 0,
                 clock_rate: int = 8000) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.next_seq = initial_seq & 0xFFFF
        self.last_ts = (initial_ts - 160) & 0xFFFFFFFF
        self.last_samples = 160
        self.last_now: float | None = None
        self.relaying = False
        self.source_ssrc: int | None = None
        self.ts_offset = 0
        self.seq_offset = 0
        #: Packets and payload octets sent (for RTCP SR).
        self.packets = 0
        self.octets = 0
        self._max_seq = (initial_seq - 1) & 0xFFFF
        #: ``(timestamp, now)`` of a frame known to be on time: generated frames never drift from it.
        self._anchor: tuple[int, float] | None = None

    def _next_ts(self, now: float) -> int:
        step = self.last_samples
        if self.last_now is None:
            return (self.last_ts + step) & 0xFFFFFFFF
        elapsed = round((now - self.last_now) * self.clock_rate)
        if elapsed > step + step // 2:
            ts = (self.last_ts + elapsed) & 0xFFFFFFFF  # a real gap: keep wall-clock spacing
            self._anchor = (ts, now)
            return ts
        ts = (self.last_ts + step) & 0xFFFFFFFF
        if self._anchor is not None:
            # Frames produced by a clock that caught up after a late tick come closer than one frame
            # apart: stamping each +1 frame would run ahead of the wall clock for the rest of the call.
            anchor_ts, anchor_now = self._anchor
            ideal = (anchor_ts + round((now - anchor_now) * self.clock_rate)) & 0xFFFFFFFF
            ahead = (ts - ideal) % _TS_MOD
            if ahead < _TS_MOD // 2 and ahead > step // 2:
                ts = (self.last_ts + max(1, (ideal - self.last_ts) % _TS_MOD)) & 0xFFFFFFFF
            elif ahead >= _TS_MOD // 2 and _TS_MOD - ahead > step // 2:
                ts = ideal  # behind by more than half a frame: back to the wall clock
        return ts

    def _advance(self, seq: int, ts: int, samples: int, payload_len: int, now: float) -> None:
        if (seq - self._max_seq) % _SEQ_MOD < _SEQ_MOD // 2:
            self._max_seq = seq
            self.next_seq = (seq + 1) & 0xFFFF
        if (ts - self.last_ts) % _TS_MOD < _TS_MOD // 2:
            self.last_ts = ts
            self.last_samples = samples
            self.last_now = now
        self.packets += 1
        self.octets += payload_len

    def generate(self, payload: bytes, now: float, *, samples: int | None = None, marker: bool = False,
                 payload_type: int | None = None) -> bytes:
        """Pack a frame we produce (silence, comfort noise, prompt audio); returns the datagram."""
        samples = len(payload) if samples is None else samples
        switching = self.relaying
        if switching:
            self.relaying = False
            marker = True
        if (switching or self._anchor is None) and self.last_now is not None:
            # Switching from relayed audio (or starting): the last frame sent is the on-time reference.
            self._anchor = ((self.last_ts + self.last_samples) & 0xFFFFFFFF, now)
        ts = self._next_ts(now)
        seq = self.next_seq
        pt = self.payload_type if payload_type is None else payload_type
        data = _HEADER.pack(0x80, (0x80 if marker else 0) | pt, seq, ts, self.ssrc) + payload
        self._advance(seq, ts, samples, len(payload), now)
        return data

    def relay(self, ssrc: int, seq: int, timestamp: int, payload: bytes, now: float, *, marker: bool = False,
              samples: int | None = None, payload_type: int | None = None) -> bytes:
        """Pack a relayed packet under our SSRC, mapping its sequence and timestamp; returns the datagram."""
        ts = (timestamp + self.ts_offset) & 0xFFFFFFFF
        if samples is None and payload_type is None and self.relaying and ssrc == self.source_ssrc:
            # Fast path (nearly every relayed packet): the same source, its timestamp moving forward by
            # less than RESYNC_SAMPLES: constant offsets, no resync.
            step = (ts - self.last_ts) & 0xFFFFFFFF
            if step <= self.RESYNC_SAMPLES:
                out_seq = (seq + self.seq_offset) & 0xFFFF
                n = len(payload)
                if (out_seq - self._max_seq) & 0xFFFF < 0x8000:
                    self._max_seq = out_seq
                    self.next_seq = (out_seq + 1) & 0xFFFF
                if step < 0x80000000:
                    self.last_ts = ts
                    self.last_samples = n
                    self.last_now = now
                self.packets += 1
                self.octets += n
                return _HEADER.pack(0x80, (0x80 if marker else 0) | self.payload_type, out_seq, ts,
                                    self.ssrc) + payload
        samples = len(payload) if samples is None else samples
        continuing = self.relaying and ssrc == self.source_ssrc
        if continuing:
            step = (ts - self.last_ts) % _TS_MOD
            if self.RESYNC_SAMPLES < step < _TS_MOD - self.RESYNC_SAMPLES:
                # a big jump: only fine if wall-clock time moved as much (a VAD gap)
                drift = (ts - self._next_ts(now)) % _TS_MOD
                continuing = min(drift, _TS_MOD - drift) <= self.RESYNC_SAMPLES
        if not continuing:
            ts = self._next_ts(now)
            self.ts_offset = (ts - timestamp) & 0xFFFFFFFF
            self.seq_offset = (self.next_seq - seq) & 0xFFFF
            self.relaying = True
            self.source_ssrc = ssrc
            marker = True
        out_seq = (seq + self.seq_offset) & 0xFFFF
        pt = self.payload_type if payload_type is None else payload_type
        data = _HEADER.pack(0x80, (0x80 if marker else 0) | pt, out_seq, ts, self.ssrc) + payload
        self._advance(out_seq, ts, samples, len(payload), now)
        return data
