"""Measuring instruments for the media tests: a loopback packet capture, pcap files, G.711 and correlation.

Used by ``test_media.py`` and ``test_silent_call.py``. Nothing here is a SIP or RTP *peer*: the peers are
SIPp processes (they send the audio from pcap files with ``play_pcap_audio``); this module only

* captures what really went over loopback (:class:`LoopbackCapture`: coreutils ``timeout`` + ``tcpdump -i lo``
  into a pcap file, parsed here) and splits it into RTP streams by (source port, destination port),
* writes the pcap files the SIPp peers play (:func:`write_rtp_pcap`, :func:`slice_pcap`),
* decodes G.711 with the stdlib ``audioop`` (an oracle independent of ``gateway.media.g711``) and measures
  similarity by normalised cross-correlation: :func:`best_ncc` over a whole reference at one lag (found with
  ``audioop.findfit``, in C), :func:`match` piece by piece for recordings, which are aligned by arrival time;
* :class:`MediaRig` puts it together: a gateway with a test dialplan (``calls_harness.CallGateway``), the
  capture of its RTP range and SIP port, SIPp peers with the pcap files they play, and teardown by pid.

Everything stays on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import array
import contextlib
import math
import random
import shutil
import signal
import statistics
import struct
import subprocess
import time
import warnings
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calls_harness import HELP_POINT, CallGateway, SippAgent, check_dialplan, register
from sip_harness import SippResult, stop_process

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop  # stdlib up to 3.12
    except ImportError:  # pragma: no cover - 3.13+: the audioop-lts backport, same API
        import audioop  # type: ignore[no-redef]

LOOPBACK = "127.0.0.1"
RATE = 8000
PT_PCMU, PT_PCMA, PT_CN = 0, 8, 13
CODEC_OF_PT = {PT_PCMU: "PCMU", PT_PCMA: "PCMA"}
PT_OF_CODEC = {"PCMU": PT_PCMU, "PCMA": PT_PCMA}

# ------------------------------------------------------------------------------------------- pcap files

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_LINKTYPE_ETHERNET = 1


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """One captured UDP datagram: capture time (epoch seconds), addresses and payload."""

    t: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_pcap(path: Path) -> list[UdpPacket]:
    """The IPv4 UDP datagrams of a pcap file (Ethernet or Linux loopback link type), in file order."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    record = struct.Struct(endian + "IIII")
    out: list[UdpPacket] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = record.unpack_from(data, off)
        off += 16
        frame = data[off:off + incl]
        off += incl
        if linktype == _LINKTYPE_ETHERNET:
            if len(frame) < 14 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
        elif linktype == 113:  # Linux cooked capture
            if len(frame) < 16 or frame[14:16] != b"\x08\x00":
                continue
            ip = frame[16:]
        else:
            raise ValueError(f"{path}: link type {linktype} not handled")
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        udp = ip[ihl:total]
        if len(udp) < 8:
            continue
        sport, dport, length = struct.unpack("!HHH", udp[:6])
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        t = sec + frac / (1e9 if nano else 1e6)
        out.append(UdpPacket(t, src, sport, dst, dport, udp[8:length]))
    return out


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, datagrams: Iterable[tuple[float, bytes]], *, sport: int = 5004,
               dport: int = 5006) -> None:
    """A pcap file (Ethernet, IPv4 127.0.0.1 -> 127.0.0.1) of ``(time, UDP payload)`` pairs."""
    with open(path, "wb") as fh:
        fh.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
        for ident, (t, payload) in enumerate(datagrams):
            udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0x4000, 64, 17, 0,
                                       bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])))
            ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
            frame = b"\x00" * 12 + b"\x08\x00" + bytes(ip) + udp
            sec = int(t)
            fh.write(_RECORD.pack(sec, int(round((t - sec) * 1e6)), len(frame), len(frame)))
            fh.write(frame)


def write_rtp_pcap(path: Path, samples: Sequence[int], codec: str, *, ptime_ms: int = 20,
                   ssrc: int = 0x5EED0001, start: float = 1_700_000_000.0) -> list[bytes]:
    """Encode 16-bit ``samples`` as G.711 RTP packets every ``ptime_ms`` into a pcap; returns the payloads."""
    n = RATE * ptime_ms // 1000
    pcm = array.array("h", samples).tobytes()
    encoded = encode(pcm, codec)
    payloads = [encoded[i:i + n] for i in range(0, len(encoded) - n + 1, n)]
    pt = PT_OF_CODEC[codec]
    datagrams = []
    for i, payload in enumerate(payloads):
        header = struct.pack("!BBHII", 0x80, pt | (0x80 if i == 0 else 0), (1000 + i) & 0xFFFF,
                             (160_000 + i * n) & 0xFFFFFFFF, ssrc)
        datagrams.append((start + i * ptime_ms / 1000, header + payload))
    write_pcap(path, datagrams)
    return payloads


def slice_pcap(source: Path, target: Path, first: int, count: int) -> list[UdpPacket]:
    """Copy packets ``first .. first+count-1`` of ``source`` (a sample pcap) into ``target``; returns them."""
    packets = read_pcap(source)[first:first + count]
    write_pcap(target, [(p.t, p.payload) for p in packets], sport=packets[0].sport, dport=packets[0].dport)
    return packets


# ------------------------------------------------------------------------------------------- RTP


@dataclass(frozen=True, slots=True)
class Rtp:
    """One RTP packet as captured."""

    t: float
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def parse_rtp(packet: UdpPacket) -> Rtp | None:
    """The RTP header and payload of a datagram, or None if it is not RTP version 2 (e.g. RTCP is kept out)."""
    data = packet.payload
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    pt = data[1] & 0x7F
    if 72 <= pt <= 76:  # RTCP SR/RR/SDES/BYE/APP share the first byte's version bits
        return None
    cc = data[0] & 0x0F
    off = 12 + 4 * cc
    if data[0] & 0x10 and len(data) >= off + 4:
        off += 4 + 4 * struct.unpack("!H", data[off + 2:off + 4])[0]
    end = len(data)
    if data[0] & 0x20 and end > off:
        end -= data[-1]
    seq, ts, ssrc = struct.unpack("!HII", data[2:12])
    return Rtp(packet.t, pt, bool(data[1] & 0x80), seq, ts, ssrc, data[off:end])


# ------------------------------------------------------------------------------------------- capture


class LoopbackCapture:
    """``tcpdump -i lo`` into a pcap file, bounded by coreutils ``timeout``; parse after :meth:`stop`.

    ``ports`` are UDP ports (or ``(low, high)`` ranges) whose traffic is kept. Needs root or CAP_NET_RAW
    (check with :func:`capture_available`).
    """

    def __init__(self, folder: Path, ports: Iterable[int | tuple[int, int]], *, max_seconds: int = 180) -> None:
        self.path = folder / "capture.pcap"
        self.log = folder / "tcpdump.log"
        parts = [f"portrange {p[0]}-{p[1]}" if isinstance(p, tuple) else f"port {p}" for p in ports]
        self.argv = ["timeout", "-k", "3", str(max_seconds), "tcpdump", "-i", "lo", "-n", "-U",
                     "--immediate-mode", "-B", "16384", "-s", "0", "-w", str(self.path),
                     f"udp and ({' or '.join(parts)})"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.packets: list[UdpPacket] = []
        self.kernel_dropped: int | None = None

    def start(self, timeout: float = 10.0) -> LoopbackCapture:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "wb"))  # noqa: SIM115 - closed with the process
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "listening on" in self.log.read_text(errors="replace"):
                time.sleep(0.2)  # the filter is attached when tcpdump says so; a little margin
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {self.log.read_text(errors='replace')}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tcpdump not listening after {timeout}s: {self.log.read_text(errors='replace')}")

    def stop(self) -> list[UdpPacket]:
        """Stop tcpdump (SIGINT to its ``timeout`` wrapper's child group by pid), parse the file."""
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.3)  # let the last packets reach the file
            stop_process(self.proc, signal.SIGINT, 10)  # `timeout` forwards it to tcpdump: it flushes, exits
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for line in text.splitlines():
            if "dropped by kernel" in line:
                with contextlib.suppress(ValueError):
                    self.kernel_dropped = int(line.split()[0])
        self.packets = read_pcap(self.path) if self.path.exists() else []
        return self.packets

    def stream(self, sport: int, dport: int) -> list[Rtp]:
        """RTP packets captured from ``sport`` to ``dport`` (any loopback address), in capture order."""
        out = []
        for p in self.packets:
            if p.sport == sport and p.dport == dport:
                rtp = parse_rtp(p)
                if rtp is not None:
                    out.append(rtp)
        return out

    def sip_start_lines(self, sip_port: int) -> list[tuple[float, int, int, str]]:
        """(time, source port, destination port, start line) of every SIP datagram to or from ``sip_port``."""
        out = []
        for p in self.packets:
            if sip_port in (p.sport, p.dport) and p.payload[:1].isalpha():
                line = p.payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")
                out.append((p.t, p.sport, p.dport, line))
        return out


def capture_available() -> str | None:
    """None if tcpdump can capture on lo here, else why not (a 1 s probe)."""
    if shutil.which("tcpdump") is None:
        return "tcpdump not installed (apt-get install -y tcpdump)"
    probe = subprocess.run(["timeout", "1", "tcpdump", "-i", "lo", "-c", "1", "-w", "/dev/null", "-n",
                            "udp port 9"], capture_output=True, text=True, timeout=10, check=False)
    if "listening on" not in probe.stderr:
        return f"tcpdump cannot capture on lo: {probe.stderr.strip()[:200]}"
    return None


# ------------------------------------------------------------------------------------------- G.711 and WAV


def decode(payload: bytes, codec: str) -> bytes:
    """G.711 -> 16-bit little-endian PCM (stdlib audioop)."""
    return audioop.alaw2lin(payload, 2) if codec == "PCMA" else audioop.ulaw2lin(payload, 2)


def encode(pcm: bytes, codec: str) -> bytes:
    """16-bit PCM -> G.711 (stdlib audioop)."""
    return audioop.lin2alaw(pcm, 2) if codec == "PCMA" else audioop.lin2ulaw(pcm, 2)


def transcode(payload: bytes, source: str, target: str) -> bytes:
    """What a G.711 payload becomes in the other law (decode, re-encode: the audioop oracle)."""
    return payload if source == target else encode(decode(payload, source), target)


def decode_stream(packets: Iterable[Rtp], pts: Iterable[int] = (PT_PCMU, PT_PCMA)) -> bytes:
    """Concatenated PCM of the audio packets of a stream, in sequence-number order (16-bit wrap handled)."""
    wanted = set(pts)
    audio = [p for p in packets if p.pt in wanted]
    if not audio:
        return b""
    base = audio[0].seq

    def unwrapped(p: Rtp) -> int:
        d = (p.seq - base) & 0xFFFF
        return d - 0x10000 if d >= 0x8000 else d

    ordered = sorted(audio, key=unwrapped)
    return b"".join(decode(p.payload, CODEC_OF_PT[p.pt]) for p in ordered)


def rms(pcm: bytes) -> int:
    """Root mean square of 16-bit PCM."""
    return int(audioop.rms(pcm, 2))


def tone_wav(path: Path, seconds: float = 20.0, hz: float = 440.0, rate: int = 8000) -> Path:
    """A mono 16-bit sine: a peer's 'voice', easy to find in a recording."""
    samples = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(rate * seconds)))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def read_wav_mono(path: Path) -> bytes:
    """16-bit mono PCM of a WAV file (prompts are 8 kHz mono 16-bit)."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getframerate() == RATE, f"{path}: not 8 kHz 16-bit"
        pcm = w.readframes(w.getnframes())
        return audioop.tomono(pcm, 2, 0.5, 0.5) if w.getnchannels() == 2 else pcm


@dataclass(frozen=True)
class StereoWav:
    """A recording: left (help point) and right (operator) 16-bit PCM, with its header facts."""

    channels: int
    rate: int
    width: int
    frames: int
    left: bytes
    right: bytes

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def read_stereo(path: Path) -> StereoWav:
    with wave.open(str(path)) as w:
        channels, rate, width, frames = w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()
        pcm = w.readframes(frames)
    left = audioop.tomono(pcm, 2, 1, 0) if channels == 2 else pcm
    right = audioop.tomono(pcm, 2, 0, 1) if channels == 2 else b""
    return StereoWav(channels, rate, width, frames, left, right)


# ------------------------------------------------------------------------------------------- correlation


def ncc(a: bytes, b: bytes) -> float:
    """Normalised cross-correlation of two equal-length 16-bit PCM fragments at lag 0 (0 for silence)."""
    n = min(len(a), len(b)) // 2 * 2
    if n == 0:
        return 0.0
    x, y = array.array("h", a[:n]), array.array("h", b[:n])
    sxy = sum(map(int.__mul__, x, y))
    sxx = sum(map(int.__mul__, x, x))
    syy = sum(map(int.__mul__, y, y))
    return sxy / math.sqrt(sxx * syy) if sxx and syy else 0.0


def _loudest_window(pcm: bytes, samples: int) -> int:
    """Byte offset of the ``samples``-long window of ``pcm`` with the highest RMS (step 50 ms)."""
    step = 400 * 2
    best, best_at = -1, 0
    for off in range(0, max(1, len(pcm) - samples * 2 + 1), step):
        r = audioop.rms(pcm[off:off + samples * 2], 2)
        if r > best:
            best, best_at = r, off
    return best_at


def best_ncc(signal: bytes, reference: bytes, *, anchor_seconds: float = 0.5) -> tuple[float, int]:
    """(coefficient, lag in samples): where ``reference`` best appears in ``signal``, and how well.

    The lag comes from ``audioop.findfit`` of the reference's loudest ``anchor_seconds`` window within
    ``signal``; the coefficient is then computed over the whole reference (clipped to the signal) at that
    lag and its neighbours (+-2 samples).
    """
    anchor_len = int(anchor_seconds * RATE)
    if len(reference) < anchor_len * 2 or len(signal) < anchor_len * 2:
        return 0.0, 0
    at = _loudest_window(reference, anchor_len)
    # findfit divides by the energy of each window of ``signal``: an all-zero window (a recording's
    # digital silence) gives NaN and stops the search, so search a copy biased by one LSB.
    found, _factor = audioop.findfit(audioop.bias(signal, 2, 1), reference[at:at + anchor_len * 2])
    lag0 = found - at // 2
    best = (-1.0, lag0)
    for lag in range(lag0 - 2, lag0 + 3):
        s0, r0 = max(0, lag), max(0, -lag)
        n = min(len(signal) // 2 - s0, len(reference) // 2 - r0)
        if n <= 0:
            continue
        c = ncc(signal[s0 * 2:(s0 + n) * 2], reference[r0 * 2:(r0 + n) * 2])
        if c > best[0]:
            best = (c, lag)
    return best


def probe_signal(seconds: float, seed: int = 4) -> list[int]:
    """A deterministic noise-like test signal (band-limited noise, 4 Hz syllable envelope, about -12 dBFS).

    Unlike a tone it has one clear correlation peak, so it cannot be mistaken for a shifted copy of itself
    or for speech.
    """
    rng = random.Random(seed)
    n = int(seconds * RATE)
    out, lp = [], 0.0
    for i in range(n):
        lp = 0.6 * lp + 0.4 * rng.uniform(-1.0, 1.0)
        envelope = 0.55 + 0.45 * math.sin(2 * math.pi * 4 * i / RATE)
        out.append(int(max(-32767, min(32767, 8000 * 2.2 * lp * envelope))))
    return out


@dataclass(frozen=True)
class Match:
    """How well ``reference`` is found in ``signal``, piece by piece (see :func:`match`)."""

    #: (start of the piece in the reference, NCC, lag in samples) for each piece with sound in it.
    pieces: list[tuple[int, float, int]]

    @property
    def median(self) -> float:
        return statistics.median(c for _, c, _ in self.pieces) if self.pieces else 0.0

    def fraction_above(self, threshold: float) -> float:
        return sum(1 for _, c, _ in self.pieces if c > threshold) / len(self.pieces) if self.pieces else 0.0

    @property
    def median_lag(self) -> int:
        return int(statistics.median(lag for _, _, lag in self.pieces)) if self.pieces else 0

    def __str__(self) -> str:
        return f"median NCC {self.median:.3f}, {self.fraction_above(0.8):.0%} of {len(self.pieces)} pieces > 0.8"


def match(signal: bytes, reference: bytes, *, piece_seconds: float = 0.5, search_seconds: float = 0.5,
          min_rms: int = 200) -> Match:
    """Find each ``piece_seconds`` piece of ``reference`` (skipping quiet ones) in ``signal``.

    A recording is aligned by *arrival* time: when a sender stalls and then catches up (a loaded machine),
    later audio sits a few tens of milliseconds away from where one global lag puts it, and a single
    whole-span coefficient drops although every frame is there. So the global lag is found first
    (:func:`best_ncc`), then each piece gets its own best lag within ``search_seconds`` of it and its own
    normalised cross-correlation.
    """
    _, lag0 = best_ncc(signal, reference)
    piece = int(piece_seconds * RATE)
    search = int(search_seconds * RATE)
    total = len(signal) // 2
    pieces = []
    for start in range(0, len(reference) // 2 - piece + 1, piece):
        ref = reference[start * 2:(start + piece) * 2]
        if audioop.rms(ref, 2) < min_rms:
            continue
        lo = max(0, lag0 + start - search)
        hi = min(total, lag0 + start + piece + search)
        if hi - lo < piece:
            pieces.append((start, 0.0, 0))
            continue
        window = signal[lo * 2:hi * 2]
        found, _ = audioop.findfit(audioop.bias(window, 2, 1), ref)
        pieces.append((start, ncc(window[found * 2:(found + piece) * 2], ref), lo + found - start))
    return Match(pieces)


# ------------------------------------------------------------------------------------------- timing


def gaps(times: Sequence[float]) -> list[float]:
    """Differences between consecutive times."""
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def seq_steps(packets: Sequence[Rtp]) -> list[int]:
    """Sequence-number increments between consecutive packets (mod 2^16)."""
    return [(b.seq - a.seq) & 0xFFFF for a, b in zip(packets, packets[1:], strict=False)]


def subsequence_matches(needles: Sequence[bytes], haystack: Sequence[bytes]) -> int:
    """How many of ``needles`` appear in ``haystack`` in order (greedy, optimal for a subsequence)."""
    i = 0
    for item in haystack:
        if i < len(needles) and item == needles[i]:
            i += 1
    return i


# ------------------------------------------------------------------------------------------- the rig


def sdp_audio_port(body: bytes) -> int:
    """The port of the first ``m=audio`` line of an SDP body."""
    for line in body.decode("ascii", "replace").splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise AssertionError(f"no m=audio line in SDP:\n{body!r}")


class MediaRig:
    """A gateway (test dialplan, own RTP range), a loopback capture of its RTP and SIP, and SIPp peers.

    ``close()`` stops every peer, the capture and the gateway (by pid).
    """

    def __init__(self, sipp: str, folder: Path, dialplan: str, *, capture_seconds: int = 180) -> None:
        self.sipp = sipp
        self.folder = folder
        self.gw = CallGateway(folder / "gw", dialplan)
        self.agents: list[SippAgent] = []
        self.capture = LoopbackCapture(folder, [self.gw.rtp_range, self.gw.sip_port], max_seconds=capture_seconds)
        self.capture_seconds = capture_seconds

    def start(self) -> MediaRig:
        checked = check_dialplan(self.gw.config)
        assert checked.returncode == 0, f"test dialplan rejected:\n{checked.stdout}{checked.stderr}"
        self.gw.start()
        self.capture.start()
        return self

    def _agent(self, scenario: Path, name: str, files: dict[str, Path], **kw: object) -> SippAgent:
        agent = SippAgent(self.sipp, str(scenario), self.gw, self.folder, name=name, **kw)  # type: ignore[arg-type]
        for target, source in files.items():
            path = agent.work / "pcap" / target
            path.parent.mkdir(exist_ok=True)
            shutil.copy(source, path)
        self.agents.append(agent)
        return agent

    def operator(self, scenario: Path, user: str, *, codec: str, files: dict[str, Path], timeout: float = 60) -> SippAgent:
        """A SIPp operator UAS answering in ``codec``, registered as ``user`` with Contact on its port."""
        agent = self._agent(scenario, f"op-{scenario.stem}", files, timeout=timeout,  # type: ignore[arg-type]
                            keys={"opuser": user, "op_pt": str(PT_OF_CODEC[codec]), "op_codec": codec})
        agent.start()
        agent.wait_listening()
        ok = register(self.gw, user, agent.port)
        assert ok.status == 200, f"REGISTER {user}: {ok.text}"
        return agent

    def help_point(self, scenario: Path, *, files: dict[str, Path] | None = None, hold_ms: int = 1000,
                   timeout: float = 60) -> SippAgent:
        """A SIPp help point (digest as the demo help point) sending its INVITE now."""
        agent = self._agent(scenario, f"hp-{scenario.stem}", files or {}, timeout=timeout,  # type: ignore[arg-type]
                            keys={"hpuser": HELP_POINT}, user=HELP_POINT, extra=["-d", str(hold_ms)])
        return agent.start()

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.capture.proc is not None:
            self.capture.stop()
        if self.gw.proc is not None:
            code = self.gw.stop()
            if code not in (0, None):
                print(f"gateway exited {code}; log tail:\n{self.gw.log_tail()}")


def subsequence_pairs(needles: Sequence[bytes], haystack: Sequence[bytes]) -> list[tuple[int, int]]:
    """(needle index, haystack index) of the greedy in-order match of :func:`subsequence_matches`."""
    out, i = [], 0
    for j, item in enumerate(haystack):
        if i < len(needles) and item == needles[i]:
            out.append((i, j))
            i += 1
    return out


def finished(result: SippResult, what: str, rig: MediaRig) -> SippResult:
    """Assert a SIPp agent ran its scenario to the end (with the gateway log on failure)."""
    assert result.returncode == 0, f"{what} failed:\n{result.explain()}\ngateway log:\n{rig.gw.log_tail(40)}"
    return result
