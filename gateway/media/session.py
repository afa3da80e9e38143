"""The media shell: RTP/RTCP sockets, one 20 ms clock, bridges, players, recorders.

Thin asyncio code around the pure modules.  One :class:`MediaEngine` per
process owns the RTP port range, a single clock task for every leg (absolute
schedule from :class:`~gateway.media.clock.TickSchedule`: tick ``n`` at
``t0 + n * 0.02``) and one disk-writer thread for every recording.

Relayed audio is forwarded as soon as it arrives (no added latency); the clock
only produces what nobody else does: prompt frames, keep-alive silence for a
bridged leg whose other side is quiet or sends only comfort noise (issue 6),
recorder frames, silence events and RTCP reports.  Sockets are read with
``loop.add_reader``, one datagram per readiness (level-triggered), so ``allocate_leg`` is
synchronous and a wake-up never pays for a failing read.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import fast, g711
from .aligner import LEFT, RIGHT
from .clock import TickSchedule
from .dtmf import DtmfDetector
from .errors import MediaError, PortsExhaustedError, RtpError
from .ports import FRAME_SAMPLES, DiskWriter, StereoRecorder, WavPlayer
from .rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    ntp_middle,
    ntp_timestamp,
    pack_rtcp,
    unpack_rtcp,
)
from .rtp import PT_CN, ReceiveStats, RtpPacket, RtpSender
from .sdp import NegotiatedMedia

log = logging.getLogger(__name__)

TICK = 0.02
_FAST_HEADER = 0x80  # V=2, no padding, no extension, no CSRC
_HEADER_UNPACK = struct.Struct("!BBHII").unpack_from
#: Connection addresses that mean "send nothing" (RFC 3264 §8.4).
_UNSPECIFIED = ("0.0.0.0", "::")
#: G.711 transcoding table by source codec (there are only two codecs).
_TRANSCODE = {"PCMU": g711.ULAW_TO_ALAW, "PCMA": g711.ALAW_TO_ULAW}


@dataclass(frozen=True, slots=True)
class RtpStopped:
    """No audio RTP (comfort noise does not count) arrived on ``leg`` for ``silence_timeout``."""

    leg: MediaLeg
    at: float
    #: When the last audio packet arrived (None: none since the media was set up).
    last_audio_at: float | None


@dataclass(frozen=True, slots=True)
class RtpResumed:
    """Audio RTP arrived again on ``leg`` after :class:`RtpStopped`."""

    leg: MediaLeg
    at: float
    silent_for: float


SilenceEvent = RtpStopped | RtpResumed


@dataclass(slots=True)
class LegStats:
    """Counters of one leg; ``lost``/``jitter`` come from RFC 3550 receive statistics."""

    packets_in: int = 0
    packets_out: int = 0
    octets_in: int = 0
    octets_out: int = 0
    relayed_out: int = 0
    generated_out: int = 0
    comfort_noise_in: int = 0
    dtmf_in: int = 0
    invalid_in: int = 0
    wrong_source_in: int = 0
    unknown_pt_in: int = 0
    send_errors: int = 0
    #: Clock ticks of this leg that raised (a bug or a state no check caught); logged the first time.
    tick_errors: int = 0
    lost: int = 0
    expected: int = 0
    jitter: float = 0.0
    #: Loss and jitter as the remote side reports them in RTCP (fraction 0..1, seconds).
    remote_fraction_lost: float | None = None
    remote_jitter: float | None = None


class Bridge:
    """Two legs relaying to each other, with an optional recorder (a = left, b = right)."""

    def __init__(self, a: MediaLeg, b: MediaLeg, recorder: StereoRecorder | None, relay_dtmf: bool) -> None:
        self.a = a
        self.b = b
        self.recorder = recorder
        self.relay_dtmf = relay_dtmf

    def other(self, leg: MediaLeg) -> MediaLeg:
        """The leg on the far side of ``leg``."""
        return self.b if leg is self.a else self.a


class _Reader:
    """Read one datagram from a non-blocking UDP socket into ``handler(data, addr, now)`` per readiness.

    The loop's readiness is level-triggered, so a socket with more queued comes back on the next
    iteration; reading until EAGAIN would cost every wake-up a second, failing system call.
    """

    __slots__ = ("recv", "handler", "clock")

    def __init__(self, sock: socket.socket, handler: Callable[[bytes, tuple, float], None],
                 clock: Callable[[], float]) -> None:
        self.recv = sock.recvfrom
        #: Where datagrams go; a pooled socket's reader is pointed at the next leg that takes it.
        self.handler = handler
        self.clock = clock

    def __call__(self) -> None:
        try:
            data, addr = self.recv(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. ECONNREFUSED from an ICMP error: nothing to read
            log.debug("RTP socket error: %s", exc)
            return
        self.handler(data, addr, self.clock())


def _load_fast_path() -> ModuleType | None:
    """The C accelerator (gateway/media/_fastrtp.c) bound to this module's classes, or None: not built,
    switched off (:mod:`gateway.media.fast`), or the classes changed shape (then bind() says which slot)."""
    module = fast.load()
    if module is None:
        return None
    try:
        module.bind(MediaLeg, LegStats, ReceiveStats, RtpSender, g711.ULAW_TO_ALAW, g711.ALAW_TO_ULAW, log)
    except (TypeError, ValueError, AttributeError) as exc:
        log.warning("RTP relay: C fast path unusable (%s); relaying in Python", exc)
        return None
    return module


class _Idle:
    """A released RTP/RTCP socket pair kept open (readers still registered) for the next leg."""

    __slots__ = ("rtp", "rtcp", "port", "readers", "quiet_since", "strays", "strayed")

    def __init__(self, rtp: socket.socket, rtcp: socket.socket, port: int, readers: tuple[_Reader, _Reader],
                 now: float) -> None:
        self.rtp = rtp
        self.rtcp = rtcp
        self.port = port
        self.readers = readers
        #: When the last datagram arrived (or the release): the pair is reused only after a quiet spell.
        self.quiet_since = now
        self.strays = 0
        #: A datagram came after the release (``strays`` is reset when the pair is passed over; this is not):
        #: such a pair is reused only after the full ``reuse_quiet``.
        self.strayed = False

    def discard(self, data: bytes, addr: tuple, now: float) -> None:
        """Reader handler while idle: late RTP of the call that ended, or a scanner: dropped, and it
        restarts the quiet spell, so a stream that keeps coming never reaches the next call."""
        self.quiet_since = now
        self.strays += 1
        self.strayed = True

    def drain(self, drain_fd: Callable[[int, int], int] | None = None) -> None:
        """Drop what arrived since the loop last read these sockets (the next leg starts clean).

        ``drain_fd`` is the C module's ``drain``, which keeps the GIL: ``socket.recvfrom`` releases it even
        on a non-blocking socket, and under load another thread then takes it, so each empty read cost the
        event loop ~25 us instead of ~1.5 us (measured under bench/calls_bench.py at 200 calls/s).
        """
        for sock in (self.rtp, self.rtcp):
            if drain_fd is not None:
                drain_fd(sock.fileno(), 64)
                continue
            for _ in range(64):
                try:
                    sock.recvfrom(2048)
                except OSError:
                    break


class MediaLeg:
    """One RTP/RTCP socket pair towards one peer (help point or operator)."""

    # Slots: the C fast path (_fastrtp) reads and writes some of these in place; a leg takes no other
    # attributes.
    __slots__ = ("engine", "name", "local_port", "keepalive", "media", "remote", "remote_rtcp", "latched", "on_dtmf",
                 "on_silence", "silence_timeout", "bridge", "_peer", "recorder", "record_side", "stats_counters",
                 "sender", "rx", "rx_ssrc", "dtmf", "silent", "closed", "_rtp", "_rtcp", "_rtp_fd", "_readers",
                 "_sends", "_codec", "_pt", "_te_pt", "_last_rx_at", "_last_audio_at", "_silence_ref",
                 "_last_relay_out", "_player", "_play_done", "_next_rtcp", "_rtcp_packets_at_report",
                 "_announced_until", "__weakref__")

    def __init__(self, engine: MediaEngine, rtp: socket.socket, rtcp: socket.socket, port: int,
                 keepalive: bool, name: str) -> None:
        self.engine = engine
        self.name = name
        #: Our RTP port (RTCP is ``local_port + 1``); put it in the SDP.
        self.local_port = port
        self.keepalive = keepalive
        self.media: NegotiatedMedia | None = None
        #: Where RTP goes now: the SDP address, or the latched source (symmetric RTP).
        self.remote: tuple[str, int] | None = None
        self.remote_rtcp: tuple[str, int] | None = None
        self.latched = False
        self.on_dtmf: Callable[[str], None] | None = None
        self.on_silence: Callable[[SilenceEvent], None] | None = None
        self.silence_timeout = engine.silence_timeout
        self.bridge: Bridge | None = None
        self._peer: MediaLeg | None = None  # the other leg of the bridge, for the hot path
        self.recorder: StereoRecorder | None = None
        self.record_side = LEFT
        self.stats_counters = LegStats()
        self.sender = RtpSender(random.getrandbits(32), 0, initial_seq=random.getrandbits(16),
                                initial_ts=random.getrandbits(32))
        self.rx: ReceiveStats | None = None
        self.rx_ssrc: int | None = None
        self.dtmf = DtmfDetector()
        self.silent = False
        self.closed = False
        self._rtp = rtp
        self._rtp_fd = rtp.fileno()
        self._rtcp = rtcp
        self._readers: tuple[_Reader, _Reader] | None = None
        self._sends = False
        self._codec = "PCMU"
        self._pt = 0
        self._te_pt: int | None = None
        self._last_rx_at: float | None = None
        self._last_audio_at: float | None = None
        self._silence_ref = 0.0
        self._last_relay_out = -1e9
        self._player: WavPlayer | None = None
        self._play_done: asyncio.Future[bool] | None = None
        self._next_rtcp = 0.0
        self._rtcp_packets_at_report = 0
        #: Until then, an unlatched leg latches only onto the announced (SDP) address.
        self._announced_until = 0.0

    # -- configuration ---------------------------------------------------------------------------
    def set_remote(self, media: NegotiatedMedia, *, announced_only: float = 0.0) -> None:
        """Apply the negotiated media (after offer/answer, and again on every re-INVITE/UPDATE).

        A new announced address unlatches (symmetric RTP starts over); the same address again keeps the
        latched source.

        ``announced_only``: for that many seconds, latch only onto the announced address, not onto the
        first source that sends (the operator side moving to another phone while the previous one still
        sends to this port); afterwards symmetric RTP latches as usual (a phone behind NAT).
        """
        now = self.engine.clock()
        self._announced_until = now + announced_only if announced_only > 0 else 0.0
        announced = (media.remote_address, media.remote_port)
        previous = self.media
        # An offer or answer that announces the same address again (a session refresh, RFC 4028; a codec
        # or direction change) keeps the latched source: unlatching would hand the call to whoever sprays
        # the port at that moment.
        keep = self.latched and announced_only <= 0 and previous is not None \
            and (previous.remote_address, previous.remote_port) == announced
        self.media = media
        self._codec = media.codec
        self._pt = media.payload_type
        self._te_pt = media.telephone_event
        self.sender.payload_type = media.payload_type
        self._sends = media.sends
        if not keep:
            self.remote = announced
            # No port to send RTCP to (RTP on 65535 without a=rtcp): no RTCP, not an OverflowError per
            # report.  No RTCP to an unspecified address either (RFC 3264 §8.4 hold): the kernel delivers
            # it to this host.
            port = media.rtcp_port
            self.remote_rtcp = (media.remote_address, port) \
                if port is not None and media.remote_address not in _UNSPECIFIED else None
            self.latched = False
        if self._last_audio_at is None:
            self._silence_ref = now
        self._next_rtcp = now + self.engine.rtcp_interval * random.uniform(0.5, 1.0)

    def record(self, recorder: StereoRecorder | None, side: int = LEFT) -> None:
        """Feed what this leg receives (and prompts played to it) into ``side`` of ``recorder``."""
        self.recorder = recorder
        self.record_side = side
        if recorder is not None:
            self.engine._recorders[recorder] = None

    @property
    def codec(self) -> str:
        """Negotiated codec name (``PCMU``/``PCMA``)."""
        return self._codec

    @property
    def stats(self) -> LegStats:
        """Counters with loss and jitter brought up to date."""
        s = self.stats_counters
        if self.rx is not None:
            s.lost, s.expected, s.jitter = self.rx.lost, self.rx.expected, self.rx.jitter_seconds
        return s

    # -- prompts ---------------------------------------------------------------------------------
    def play(self, player: WavPlayer) -> asyncio.Future[bool]:
        """Play ``player`` to this leg instead of relayed audio; the future gives True when it
        finished, False when stopped or the leg closed."""
        self.stop_play()
        self._player = player
        self._play_done = self.engine.loop.create_future()
        return self._play_done

    def stop_play(self) -> None:
        """Stop the current prompt (its future gives False); relayed audio resumes."""
        self._finish_play(False)

    @property
    def playing(self) -> bool:
        """True while a prompt is playing to this leg."""
        return self._player is not None

    def _finish_play(self, completed: bool) -> None:
        done = self._play_done
        self._player = None
        self._play_done = None
        if done is not None and not done.done():
            done.set_result(completed)

    # -- receive path ----------------------------------------------------------------------------
    def _may_latch(self, addr: tuple, now: float) -> bool:
        if not self.latched:
            # Unlatched, ``remote`` is still the announced (SDP) address.
            return now >= self._announced_until or addr == self.remote
        media = self.media
        if media is not None and addr[0] == media.remote_address and addr[1] == media.remote_port:
            # The address the signalling announced takes over from whatever latched first (a third party
            # that sprayed the port before the peer sent).
            return True
        last = self._last_rx_at
        return last is None or now - last > self.engine.relatch_after

    def _receive_rtp(self, data: bytes, addr: tuple, now: float) -> None:
        counters = self.stats_counters
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            counters.invalid_in += 1
            return
        # A source is its host and port: IPv6 recvfrom adds flowinfo and scope_id, and ``remote`` (what we
        # latch and send to) holds the pair, so the 4-tuple would never compare equal to it.  (An IPv4
        # 2-tuple is returned as it is by the slice.)
        addr = addr[:2]
        # Parsed before any latching: a malformed packet from a new source must not take the call's audio.
        if data[0] == _FAST_HEADER:
            _, b1, seq, ts, ssrc = _HEADER_UNPACK(data)
            pt = b1 & 0x7F
            marker = b1 & 0x80
            payload = data[12:]
        else:
            try:
                packet = RtpPacket.unpack(data)
            except RtpError:
                counters.invalid_in += 1
                return
            pt, marker, seq = packet.payload_type, packet.marker, packet.sequence_number
            ts, ssrc, payload = packet.timestamp, packet.ssrc, packet.payload
        # Source port 0 means "no reply expected" (RFC 768): never latch onto it, and take it only from the
        # host we send to (anyone with a raw socket can write port 0: it must not get past the latch).
        if addr[1] == 0:
            if self.remote is None or addr[0] != self.remote[0]:
                counters.wrong_source_in += 1
                return
        elif addr != self.remote or not self.latched:
            if not self._may_latch(addr, now):
                counters.wrong_source_in += 1
                return
            if addr != self.remote:
                log.info("leg %s: symmetric RTP, sending to %s:%d", self.name, addr[0], addr[1])
            self.remote = addr
            if self.media is not None:
                # RTCP on RTP port + 1 (RFC 3550 §11), when there is such a port.
                self.remote_rtcp = (addr[0], addr[1] + 1) if addr[1] < 0xFFFF else None
            self.latched = True
        self._last_rx_at = now
        counters.packets_in += 1
        counters.octets_in += len(data)
        if self.media is None:
            return
        rx = self.rx
        if ssrc != self.rx_ssrc or rx is None:
            self.rx_ssrc = ssrc
            self.rx = rx = ReceiveStats()
        if pt == self._pt:
            rx.update(seq, ts, now)
            if self.silent:
                self._set_silent(False, now)
            self._last_audio_at = now
            peer = self._peer
            if peer is not None and peer._sends and peer._player is None:
                # The relay to the other leg, inline: this runs for every packet of every bridged call.
                codec = self._codec
                out = payload if codec == peer._codec else payload.translate(_TRANSCODE[codec])
                remote = peer.remote
                pc = peer.stats_counters
                if remote is not None:
                    data = peer.sender.relay(ssrc, seq, ts, out, now, marker=bool(marker))
                    try:
                        peer._rtp.sendto(data, remote)
                    except OSError as exc:
                        pc.send_errors += 1
                        if not isinstance(exc, BlockingIOError | InterruptedError):
                            log.debug("leg %s: send to %s failed: %s", peer.name, remote, exc)
                    else:
                        pc.packets_out += 1
                        pc.octets_out += len(data)
                peer._last_relay_out = now
                pc.relayed_out += 1
            recorder = self.recorder
            if recorder is not None:
                recorder.push(self.record_side, payload, self._codec)
            return
        rx.update(seq, ts, now, jitter=False)
        if pt == self._te_pt:
            counters.dtmf_in += 1
            for digit in self.dtmf.receive(ts, payload):
                log.info("leg %s: DTMF %s", self.name, digit)
                self.engine._call(self.on_dtmf, digit)
            bridge = self.bridge
            if bridge is not None and bridge.relay_dtmf:
                bridge.other(self)._relay_event(ssrc, seq, ts, payload, bool(marker), now)
        elif pt == PT_CN:
            counters.comfort_noise_in += 1
        else:
            counters.unknown_pt_in += 1

    def _relay_event(self, ssrc: int, seq: int, ts: int, payload: bytes, marker: bool, now: float) -> None:
        if self._sends and self._te_pt is not None and self._player is None:
            self._send(self.sender.relay(ssrc, seq, ts, payload, now, marker=marker, samples=0,
                                         payload_type=self._te_pt))

    def _send(self, data: bytes) -> None:
        remote = self.remote
        if remote is None:
            return
        try:
            self._rtp.sendto(data, remote)
        except (BlockingIOError, InterruptedError):
            self.stats_counters.send_errors += 1
            return
        except OSError as exc:
            self.stats_counters.send_errors += 1
            log.debug("leg %s: send to %s failed: %s", self.name, remote, exc)
            return
        counters = self.stats_counters
        counters.packets_out += 1
        counters.octets_out += len(data)

    def _receive_rtcp(self, data: bytes, addr: tuple, now: float) -> None:
        # RTCP is taken only from the host RTP goes to (the SDP's or the latched address; behind NAT its
        # port may differ): anyone else would redirect our reports and feed our statistics.
        remote = self.remote
        if remote is None or addr[0] != remote[0] or addr[1] == 0:
            self.stats_counters.wrong_source_in += 1
            return
        try:
            packets = unpack_rtcp(data)
        except RtpError:
            self.stats_counters.invalid_in += 1
            return
        if not packets:  # an empty datagram is no RTCP packet (RFC 3550 §6.1)
            self.stats_counters.invalid_in += 1
            return
        self.remote_rtcp = (addr[0], addr[1])
        for p in packets:
            if isinstance(p, SenderReport) and p.ssrc == self.rx_ssrc and self.rx is not None:
                self.rx.receive_sr(ntp_middle(p.ntp_timestamp), now)
            if isinstance(p, SenderReport | ReceiverReport):
                for block in p.reports:
                    if block.ssrc == self.sender.ssrc:
                        self.stats_counters.remote_fraction_lost = block.fraction_lost / 256
                        self.stats_counters.remote_jitter = block.jitter / 8000

    # -- clock -----------------------------------------------------------------------------------
    def _tick(self, now: float, frames: int, may_keepalive: bool = True) -> None:
        # The one clock drives every call's prompts, keep-alives and recorder frames, and the C tick_legs
        # stops at the first leg that raises: an exception must not leave this leg.  Its audio may stop;
        # the other calls' must not.
        try:
            player = self._player
            if player is not None:
                for _ in range(frames):
                    frame = player.read(self._codec)
                    if frame is None:
                        self._finish_play(True)
                        break
                    if self._sends:
                        self._send(self.sender.generate(frame[0], now))
                        self.stats_counters.generated_out += 1
                    if self.recorder is not None:
                        self.recorder.push_prompt(self.record_side, frame[1])
            elif may_keepalive and (self.bridge is not None or self.keepalive) and self._sends \
                    and now - self._last_relay_out >= self.engine.keepalive_after:
                silence = self.engine._silence[self._codec]
                self._send(self.sender.generate(silence, now))
                self.stats_counters.generated_out += 1
            if self.media is not None:
                if not self.silent:
                    ref = self._last_audio_at if self._last_audio_at is not None else self._silence_ref
                    if now - ref >= self.silence_timeout:
                        self._set_silent(True, now)
                if now >= self._next_rtcp:
                    self._next_rtcp = now + self.engine.rtcp_interval * random.uniform(0.5, 1.5)
                    self._send_rtcp(now)
        except Exception:
            counters = self.stats_counters
            counters.tick_errors += 1
            self.engine.leg_tick_errors += 1
            if counters.tick_errors == 1:
                log.exception("leg %s: media clock tick failed (logged once per leg)", self.name)
            # A prompt that cannot be played ends (its future gives False): the call does not wait on it.
            self._finish_play(False)

    def _set_silent(self, silent: bool, now: float) -> None:
        self.silent = silent
        event: SilenceEvent
        if silent:
            event = RtpStopped(self, now, self._last_audio_at)
            log.info("leg %s: no RTP for %.1f s", self.name, self.silence_timeout)
        else:
            last = self._last_audio_at if self._last_audio_at is not None else self._silence_ref
            event = RtpResumed(self, now, now - last)
            log.info("leg %s: RTP resumed", self.name)
        self.engine._call(self.on_silence or self.engine.silence_events, event)

    def _send_rtcp(self, now: float) -> None:
        if self.remote_rtcp is None or not self.media or self.media.remote_port == 0:
            return
        blocks: tuple[ReportBlock, ...] = ()
        if self.rx is not None and self.rx_ssrc is not None:
            blocks = (ReportBlock(self.rx_ssrc, *self.rx.report(now)),)
        s = self.sender
        report: SenderReport | ReceiverReport
        if s.packets != self._rtcp_packets_at_report:
            report = SenderReport(s.ssrc, ntp_timestamp(time.time()), s.last_ts, s.packets, s.octets, blocks)
        else:
            report = ReceiverReport(s.ssrc, blocks)
        self._rtcp_packets_at_report = s.packets
        data = pack_rtcp([report, SourceDescription(((s.ssrc, self.engine.cname),))])
        try:
            self._rtcp.sendto(data, self.remote_rtcp)
        except OSError as exc:
            log.debug("leg %s: RTCP send failed: %s", self.name, exc)

    # -- teardown --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything on this leg and release its ports (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.engine._release(self)
        if self.bridge is not None:
            self.engine.unbridge(self.bridge)
        self._finish_play(False)
        self.recorder = None


class MediaEngine:
    """RTP port range, legs, one 20 ms clock for all of them, and one disk writer for recordings."""

    #: Legs (and recorders) handled per slice of a tick; the loop relays packets between slices.
    TICK_CHUNK = 32

    def __init__(self, host: str, port_min: int, port_max: int, *, clock: Callable[[], float] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None, silence_timeout: float = 10.0,
                 keepalive_after: float = 0.030, relatch_after: float = 2.0, rtcp_interval: float = 5.0,
                 silence_events: Callable[[SilenceEvent], None] | None = None,
                 on_recording_dropped: Callable[[StereoRecorder, int], None] | None = None,
                 writer: DiskWriter | None = None, start_clock: bool = True, cname: str = "gateway",
                 reuse_quiet: float = 2.0, idle_max: int | None = None, idle_ttl: float = 60.0,
                 fast_path: bool = True) -> None:
        if port_max - port_min < 1:
            raise MediaError(f"RTP port range {port_min}-{port_max} holds no even/odd pair")
        self.host = host
        self.port_min = port_min + (port_min & 1)
        self.port_max = port_max
        self.loop = loop or asyncio.get_running_loop()
        self.clock = clock or self.loop.time
        #: Seconds without audio RTP before a leg reports :class:`RtpStopped`.
        self.silence_timeout = silence_timeout
        #: Seconds without relayed audio before a bridged leg gets keep-alive silence.
        self.keepalive_after = keepalive_after
        #: Seconds of quiet from the latched source after which another source may take over.
        self.relatch_after = relatch_after
        self.rtcp_interval = rtcp_interval
        self.silence_events = silence_events
        self.on_recording_dropped = on_recording_dropped
        self.cname = cname
        self.writer = writer if writer is not None else DiskWriter()
        self.legs: dict[int, MediaLeg] = {}
        #: Released socket pairs, oldest first: reused after ``reuse_quiet`` seconds without a datagram
        #: (binding, registering and closing four sockets is most of a call's media set-up cost).
        self._idle: deque[_Idle] = deque()
        self._idle_ports: set[int] = set()
        self.reuse_quiet = reuse_quiet
        pairs = (self.port_max - self.port_min + 1) // 2
        self.idle_max = pairs // 2 if idle_max is None else idle_max
        #: Idle pairs unused this long are closed.
        self.idle_ttl = idle_ttl
        self._recorders: dict[StereoRecorder, None] = {}
        self._cursor = self.port_min
        self._silence = {codec: g711.silence(codec, FRAME_SAMPLES) for codec in g711.CODECS}
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        fast_module = _FAST if fast_path else None
        #: The C reader that relays a bridged call's steady-state packets (IPv4), or None: Python does all.
        self._fast_reader = fast_module.Reader if fast_module is not None and self._family == socket.AF_INET \
            else None
        #: The clock's passes over the legs (idle legs skipped) and the recorders (plain frames made) in C,
        #: or None.
        self._tick_legs = fast_module.tick_legs if fast_module is not None else None
        self._tick_recorders = fast_module.tick_recorders if fast_module is not None else None
        #: Empties a pooled socket without releasing the GIL (C), or None.
        self._drain_fd = getattr(fast_module, "drain", None)
        self.schedule: TickSchedule | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._start_clock = start_clock
        #: Clock wake-ups more than 5 ms late, and the worst lateness seen (seconds): loop health.
        self.late_ticks = 0
        self.max_lateness = 0.0
        #: Slices of a tick that raised outside any leg's own tick (see ``_tick_part``), and when one was
        #: last logged.
        self.tick_errors = 0
        #: Legs' ticks that raised, over every leg ever (each leg also counts its own).
        self.leg_tick_errors = 0
        self._tick_error_logged_at = -math.inf

    @property
    def fast_path(self) -> bool:
        """True when bridged calls' steady-state RTP is relayed by the C reader (gateway/media/_fastrtp.c)."""
        return self._fast_reader is not None

    # -- ports -----------------------------------------------------------------------------------
    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def allocate_leg(self, *, keepalive: bool = False, name: str = "") -> MediaLeg:
        """An even RTP port and RTCP on port+1: a pooled pair that has been quiet for ``reuse_quiet``
        seconds, else a newly bound one, else the quietest pooled pair; raises
        :class:`PortsExhaustedError` when the range holds none."""
        now = self.clock()
        self._trim_idle(now)
        idle = self._take_idle(now, quiet=True)
        if (idle is None and self._idle and len(self._idle) >= self.idle_max // 2 and not self._idle[0].strayed
                and now - self._idle[0].quiet_since >= self.reuse_quiet / 4):
            # The pool is at least half full (calls end faster than ``reuse_quiet`` lets pairs rest): binding a
            # new pair for this leg now means closing the oldest one at a coming release (the pool is bounded).
            # Reusing that one, quiet for a while already, saves four sockets' set-up and tear-down (a tenth of
            # the event loop's time at 300-450 calls/s); a pair still receiving strays is not quiet, and a new
            # pair is bound instead, as for one that received anything since its release.
            idle = self._take_idle(now, quiet=False, oldest=True)
        if idle is None:
            bound = self._bind_pair()
            if bound is not None:
                rtp, rtcp, port = bound
                leg = MediaLeg(self, rtp, rtcp, port, keepalive, name or f"rtp:{port}")
                readers = self._readers_for(leg, rtp, rtcp)
                self.loop.add_reader(rtp.fileno(), readers[0])
                self.loop.add_reader(rtcp.fileno(), readers[1])
                return self._register(leg, readers)
            idle = self._take_idle(now, quiet=False)
            if idle is None:
                raise PortsExhaustedError(f"no free RTP port pair in {self.port_min}-{self.port_max}")
        idle.drain(self._drain_fd)
        leg = MediaLeg(self, idle.rtp, idle.rtcp, idle.port, keepalive, name or f"rtp:{idle.port}")
        idle.readers[0].handler = leg._receive_rtp
        idle.readers[1].handler = leg._receive_rtcp
        if self._fast_reader is not None:
            idle.readers[0].leg = leg
        return self._register(leg, idle.readers)

    def _readers_for(self, leg: MediaLeg, rtp: socket.socket, rtcp: socket.socket) -> tuple[Any, Any]:
        fast = self._fast_reader
        if fast is not None:
            return (fast(rtp.fileno(), leg._receive_rtp, self.clock, leg),
                    fast(rtcp.fileno(), leg._receive_rtcp, self.clock))
        return _Reader(rtp, leg._receive_rtp, self.clock), _Reader(rtcp, leg._receive_rtcp, self.clock)

    def _register(self, leg: MediaLeg, readers: tuple[_Reader, _Reader]) -> MediaLeg:
        leg._readers = readers
        self.legs[leg.local_port] = leg
        self._ensure_clock()
        return leg

    def _bind_pair(self) -> tuple[socket.socket, socket.socket, int] | None:
        pairs = (self.port_max - self.port_min + 1) // 2
        for _ in range(pairs):
            port = self._cursor
            self._cursor = port + 2 if port + 3 <= self.port_max else self.port_min
            if port in self.legs or port in self._idle_ports:
                continue
            try:
                rtp = self._bind(port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise MediaError(f"cannot bind RTP {self.host}:{port}: {exc}") from exc
                continue
            try:
                rtcp = self._bind(port + 1)
            except OSError:
                rtp.close()
                continue
            return rtp, rtcp, port
        return None

    def _take_idle(self, now: float, *, quiet: bool, oldest: bool = False) -> _Idle | None:
        idle = self._idle
        if not idle:
            return None
        if quiet:
            # Oldest first; a pair that keeps receiving strays goes to the back (a few looks, no scan).
            for _ in range(min(4, len(idle))):
                head = idle[0]
                if now - head.quiet_since < self.reuse_quiet:
                    if head.strays:
                        head.strays = 0
                        idle.rotate(-1)
                        continue
                    return None
                break
            else:
                return None
            entry = idle.popleft()
        elif oldest:
            entry = idle.popleft()
        else:
            entry = min(idle, key=lambda e: e.quiet_since)
            idle.remove(entry)
        self._idle_ports.discard(entry.port)
        return entry

    def _trim_idle(self, now: float) -> None:
        idle = self._idle
        while idle and (len(idle) > self.idle_max or now - idle[0].quiet_since > self.idle_ttl):
            self._close_idle(idle.popleft())

    def _close_idle(self, entry: _Idle) -> None:
        self._idle_ports.discard(entry.port)
        for sock in (entry.rtp, entry.rtcp):
            self.loop.remove_reader(sock.fileno())
            sock.close()

    def _release(self, leg: MediaLeg) -> None:
        self.legs.pop(leg.local_port, None)
        readers = leg._readers
        if readers is not None and self.idle_max > 0:
            entry = _Idle(leg._rtp, leg._rtcp, leg.local_port, readers, self.clock())
            readers[0].handler = readers[1].handler = entry.discard
            if self._fast_reader is not None:
                readers[0].leg = None
            self._idle.append(entry)
            self._idle_ports.add(leg.local_port)
            self._trim_idle(entry.quiet_since)
            return
        for sock in (leg._rtp, leg._rtcp):
            self.loop.remove_reader(sock.fileno())
            sock.close()

    # -- bridging and recording ------------------------------------------------------------------
    def bridge(self, leg_a: MediaLeg, leg_b: MediaLeg, recorder: StereoRecorder | None = None, *,
               relay_dtmf: bool = False) -> Bridge:
        """Relay ``leg_a`` <-> ``leg_b`` (transcoding if needed); record a as left, b as right."""
        if leg_a is leg_b or leg_a.bridge is not None or leg_b.bridge is not None:
            raise MediaError("each leg can be in one bridge, with a different leg")
        if leg_a.closed or leg_b.closed:
            raise MediaError("cannot bridge a closed leg")
        b = Bridge(leg_a, leg_b, recorder, relay_dtmf)
        leg_a.bridge = leg_b.bridge = b
        leg_a._peer, leg_b._peer = leg_b, leg_a
        if recorder is not None:
            leg_a.record(recorder, LEFT)
            leg_b.record(recorder, RIGHT)
        return b

    def unbridge(self, item: Bridge | MediaLeg) -> None:
        """Stop relaying (recorder attachments stay until the legs close or ``record(None)``)."""
        b = item.bridge if isinstance(item, MediaLeg) else item
        if b is None:
            return
        for leg in (b.a, b.b):
            if leg.bridge is b:
                leg.bridge = None
                leg._peer = None

    def recorder(self, path: str, **kwargs: object) -> StereoRecorder:
        """A :class:`StereoRecorder` on the engine's shared disk writer."""
        kwargs.setdefault("on_dropped", self.on_recording_dropped)
        return StereoRecorder(path, writer=self.writer, **kwargs)  # type: ignore[arg-type]

    # -- clock -----------------------------------------------------------------------------------
    def _ensure_clock(self) -> None:
        if self._start_clock and self._clock_task is None:
            self._clock_task = self.loop.create_task(self._run_clock(), name="media-clock")
            self._clock_task.add_done_callback(self._clock_done)

    def _clock_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("media clock stopped", exc_info=task.exception())

    async def _run_clock(self) -> None:
        self.schedule = schedule = TickSchedule(self.clock(), TICK)
        while True:
            now = self.clock()
            late = now - schedule.next_deadline()
            frames, skipped = schedule.poll(now)
            if frames or skipped:
                if late > self.max_lateness:
                    self.max_lateness = late
                if late > 0.005:
                    self.late_ticks += 1
                # A late tick means the loop was busy and relayed packets may still be waiting in the
                # sockets: let the readers drain them first, so keep-alive silence only fills real gaps.
                # Keep-alive is never skipped (a silent caller's call must not see a 60 ms hole) and a
                # late tick sends at most one keep-alive frame per leg (no burst from an overloaded loop).
                if late > 0.005:
                    await asyncio.sleep(0)
                    now = self.clock()
                keepalive = True
                legs = list(self.legs.values())
                recorders = list(self._recorders)
                for i in range(0, max(len(legs), len(recorders)), self.TICK_CHUNK):
                    self._tick_part(now, frames, skipped, legs[i:i + self.TICK_CHUNK],
                                    recorders[i:i + self.TICK_CHUNK], keepalive)
                    await asyncio.sleep(0)  # let packets that arrived meanwhile be relayed
            await asyncio.sleep(max(0.0, schedule.next_deadline() - self.clock()))

    def tick(self, now: float, frames: int = 1, skipped: int = 0) -> None:
        """One clock step: prompts, keep-alives, silence detection, RTCP, recorder frames.

        Called by the clock task; tests with a hand-advanced clock call it directly.
        """
        self._tick_part(now, frames, skipped, list(self.legs.values()), list(self._recorders), True)

    def _tick_part(self, now: float, frames: int, skipped: int, legs: list[MediaLeg],
                   recorders: list[StereoRecorder], keepalive: bool) -> None:
        # Every call on the gateway depends on this clock: whatever one slice raises is logged and the
        # clock goes on, and the slice's recorders still get their frames (evidence).  A leg's own tick
        # keeps its exceptions (MediaLeg._tick); these guards are for the rest.
        tick_legs = self._tick_legs
        try:
            if tick_legs is not None:
                tick_legs(legs, now, frames, keepalive, self.keepalive_after)
            else:
                for leg in legs:
                    if not leg.closed:
                        leg._tick(now, frames, keepalive)
        except Exception:
            self._tick_failed(now, "legs")
        tick_recorders = self._tick_recorders
        try:
            if tick_recorders is not None:
                for recorder in tick_recorders(recorders, frames + skipped):
                    self._recorders.pop(recorder, None)
                return
            for recorder in recorders:
                if recorder.sealed:
                    self._recorders.pop(recorder, None)
                else:
                    recorder.tick(frames + skipped)
        except Exception:
            self._tick_failed(now, "recorders")

    def _tick_failed(self, now: float, what: str) -> None:
        """Count a slice of the clock that raised; log it with its traceback at most once a minute."""
        self.tick_errors += 1
        if now - self._tick_error_logged_at >= 60.0:
            self._tick_error_logged_at = now
            log.exception("media clock: ticking %s failed (%d times so far); the clock goes on", what,
                          self.tick_errors)

    def _call(self, callback: Callable | None, arg: object) -> None:
        if callback is None:
            return
        try:
            callback(arg)
        except Exception:  # a call-layer bug must not stop the media clock or a socket reader
            log.exception("media callback %r failed", callback)

    async def close(self) -> None:
        """Close every leg, stop the clock and finish pending recording writes."""
        for leg in list(self.legs.values()):
            leg.close()
        while self._idle:
            self._close_idle(self._idle.popleft())
        if self._clock_task is not None:
            self._clock_task.cancel()
            try:
                await self._clock_task
            except asyncio.CancelledError:
                pass
            self._clock_task = None
        await self.loop.run_in_executor(None, self.writer.close)


_FAST = _load_fast_path()


def bridge(leg_a: MediaLeg, leg_b: MediaLeg, recorder: StereoRecorder | None = None, *,
           relay_dtmf: bool = False) -> Bridge:
    """Module-level shortcut for :meth:`MediaEngine.bridge`."""
    return leg_a.engine.bridge(leg_a, leg_b, recorder, relay_dtmf=relay_dtmf)


def unbridge(item: Bridge | MediaLeg) -> None:
    """Module-level shortcut for :meth:`MediaEngine.unbridge`."""
    leg = item if isinstance(item, MediaLeg) else item.a
    leg.engine.unbridge(item)
