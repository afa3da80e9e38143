"""The C relay (gateway/media/_fastrtp.c) against the Python relay it accelerates.

The same packet sequence, clock and ticks go through two bridged leg pairs on loopback: one read by the C
reader, one by the pure-Python reader.  After every step the datagrams each peer received and the full
state of both legs (counters, RFC 3550 receive statistics, send state, latching, silence, recorder
queues) must be identical.  Hypothesis chooses the sequences: sequence jumps, wraps, reordering, new
sources, other payload types (DTMF, comfort noise), a second source address, long gaps (relatching,
silence events), prompts playing, codec pairs with and without transcoding.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_media_session import drain_socket

from gateway.media import g711, ports, session
from gateway.media.ports import DiskWriter, WavPlayer
from gateway.media.rtp import RtpSender
from gateway.media.sdp import NegotiatedMedia
from gateway.media.session import LegStats, MediaEngine
from gateway.media.wav import Audio

pytest.importorskip("gateway.media._fastrtp", reason="C extension not built (no C compiler at install)")

HOST = "127.0.0.1"
PT = {"PCMU": 0, "PCMA": 8}
TE_PT = 101


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.setblocking(False)
    return s


def _spaced_sockets(count: int) -> list[socket.socket]:
    """Peer sockets none of whose ports is next to another's (a port + 1 names that peer's RTCP)."""
    kept: list[socket.socket] = []
    spare: list[socket.socket] = []
    while len(kept) < count:
        s = _sock()
        port = s.getsockname()[1]
        if any(abs(port - k.getsockname()[1]) <= 1 for k in kept):
            spare.append(s)
        else:
            kept.append(s)
    for s in spare:
        s.close()
    return kept


class Rig:
    """Help point -> leg a <-bridge-> leg b -> operator, recorder optional, read by the chosen reader."""

    def __init__(self, fast: bool, codecs: tuple[str, str], record: bool, tmp: Path, te: bool,
                 direction: str = "sendrecv") -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.engine = MediaEngine(HOST, 20000, 60000, clock=self.clock, loop=self.loop, start_clock=False,
                                  writer=DiskWriter(start=False), silence_timeout=0.5, fast_path=fast,
                                  idle_max=0)
        assert (self.engine._fast_reader is not None) == fast
        self.hp, self.hp2, self.op = _spaced_sockets(3)
        self.roles = {}
        for sock, role in ((self.hp, "hp"), (self.hp2, "hp2"), (self.op, "op")):
            self.roles[sock.getsockname()[1]] = role
            self.roles[sock.getsockname()[1] + 1] = role + " RTCP"
        self.a = self.engine.allocate_leg(name="a")
        self.b = self.engine.allocate_leg(name="b")
        for leg, n in ((self.a, 1), (self.b, 2)):
            leg.sender = RtpSender(0x1000 * n, 0, initial_seq=100 * n, initial_ts=10_000 * n)
        te_pt = TE_PT if te else None
        self.a.set_remote(NegotiatedMedia(HOST, self.hp.getsockname()[1], codecs[0], PT[codecs[0]],
                                          telephone_event=te_pt))
        self.b.set_remote(NegotiatedMedia(HOST, self.op.getsockname()[1], codecs[1], PT[codecs[1]],
                                          telephone_event=te_pt, direction=direction))
        for leg in (self.a, self.b):
            leg._next_rtcp = self.clock.now + 0.5  # then random: both runs seed the same generator
        self.recorder = self.engine.recorder(str(tmp / f"{'c' if fast else 'py'}.wav")) if record else None
        self.engine.bridge(self.a, self.b, self.recorder, relay_dtmf=te)

    def close(self) -> None:
        for s in (self.hp, self.hp2, self.op):
            s.close()
        self.a.close()
        self.b.close()
        self.loop.close()

    def role(self, addr: object) -> object:
        if isinstance(addr, tuple) and len(addr) == 2:
            return (addr[0], self.roles.get(addr[1], addr[1]))
        return addr

    def snapshot(self) -> dict:
        state: dict = {}
        for name, leg in (("a", self.a), ("b", self.b)):
            s = leg.stats_counters
            state[name] = {
                "counters": {f.name: getattr(s, f.name) for f in fields(LegStats)},
                "rx": None if leg.rx is None else {k: getattr(leg.rx, k) for k in leg.rx.__slots__},
                "rx_ssrc": leg.rx_ssrc,
                "sender": {k: getattr(leg.sender, k) for k in RtpSender.__slots__},
                "remote": self.role(leg.remote), "remote_rtcp": self.role(leg.remote_rtcp),
                "latched": leg.latched, "silent": leg.silent, "last_rx_at": leg._last_rx_at,
                "last_audio_at": leg._last_audio_at, "last_relay_out": leg._last_relay_out,
                "playing": leg.playing,
            }
        if self.recorder is not None:
            state["recorder"] = [(bytes(side.fifo), side.pushed) for side in self.recorder.aligner.sides]
        return state

    def step(self, action: tuple) -> dict:
        kind = action[0]
        if kind == "packet":
            _, src, b0, b1, seq, ts, ssrc, payload = action
            sock = self.hp if src == 0 else self.hp2
            sock.sendto(struct.pack("!BBHII", b0, b1, seq, ts, ssrc) + payload, (HOST, self.a.local_port))
            self.a._readers[0]()
        elif kind == "reverse":
            _, seq, ts = action
            self.op.sendto(struct.pack("!BBHII", 0x80, PT[self.b.codec], seq, ts, 0xBEEF) + bytes(160),
                           (HOST, self.b.local_port))
            self.b._readers[0]()
        elif kind == "time":
            self.clock.now += action[1]
        elif kind == "tick":
            self.engine.tick(self.clock.now)
        elif kind == "play":
            self.b.play(WavPlayer(Audio(bytes(320 * action[1]))))
        elif kind == "stop":
            self.b.stop_play()
        return {"hp": drain_socket(self.hp), "hp2": drain_socket(self.hp2), "op": drain_socket(self.op), "state": self.snapshot()}


def _packets(draw: st.DrawFn) -> list[tuple]:
    steps: list[tuple] = []
    seq, ts, ssrc = draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFFFFFF)), draw(st.sampled_from(
        [0x11111111, 0xFFFFFFFF, 0]))
    pt_main = draw(st.sampled_from([0, 8]))
    reverse_seq = 0
    for _ in range(draw(st.integers(1, 60))):
        kind = draw(st.sampled_from(["audio"] * 12 + ["jump", "other_pt", "ssrc", "src2", "time", "tick",
                                                      "reverse", "play", "stop", "malformed", "gap"]))
        if kind in ("audio", "jump", "other_pt", "ssrc", "src2"):
            if kind == "jump":
                seq = (seq + draw(st.sampled_from([0, 2, 3, -1, -5, 2999, 3001, 40000]))) & 0xFFFF
                ts = (ts + draw(st.sampled_from([0, 160, 8000, 8001, 80000, -160]))) & 0xFFFFFFFF
            else:
                seq = (seq + 1) & 0xFFFF
                ts = (ts + 160) & 0xFFFFFFFF
            if kind == "ssrc":
                ssrc = draw(st.sampled_from([0x22222222, 0x11111111, 1]))
            pt = draw(st.sampled_from([TE_PT, 13, 96, 8 - pt_main])) if kind == "other_pt" else pt_main
            marker = draw(st.booleans()) if kind != "audio" else False
            length = draw(st.sampled_from([160, 160, 80, 240, 0, 4])) if kind == "other_pt" else 160
            payload = bytes(draw(st.binary(min_size=length, max_size=length)))
            steps.append(("packet", 1 if kind == "src2" else 0, 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc,
                          payload))
            steps.append(("time", draw(st.sampled_from([0.02, 0.02, 0.0, 0.019, 0.021]))))
        elif kind == "malformed":
            b0 = draw(st.sampled_from([0x00, 0x40, 0x90, 0xA0, 0x81]))
            steps.append(("packet", 0, b0, pt_main, seq, ts, ssrc, bytes(draw(st.integers(0, 170)))))
        elif kind == "time":
            steps.append(("time", draw(st.sampled_from([0.04, 0.6, 2.5]))))
        elif kind == "gap":
            steps.append(("time", 2.5))
            steps.append(("tick",))
        elif kind == "tick":
            steps.append(("tick",))
        elif kind == "reverse":
            reverse_seq += 1
            steps.append(("reverse", reverse_seq, reverse_seq * 160))
        elif kind == "play":
            steps.append(("play", draw(st.integers(1, 3))))
        else:
            steps.append(("stop",))
    return steps


packets = st.composite(_packets)


def _diff(c: object, p: object, path: str = "") -> list[str]:
    """Where two traces differ (paths and values), for a readable failure."""
    if isinstance(c, dict) and isinstance(p, dict):
        return [d for k in sorted(set(c) | set(p), key=str) for d in _diff(c.get(k), p.get(k), f"{path}.{k}")]
    return [] if c == p else [f"{path}: C {c!r} != Python {p!r}"]


def _run(fast: bool, steps: list[tuple], codecs: tuple[str, str], record: bool, te: bool, tmp: Path,
         direction: str = "sendrecv"):
    random.seed(4733)
    rig = Rig(fast, codecs, record, tmp, te, direction)
    try:
        trace = [rig.step(step) for step in steps]
        counts = (rig.a._readers[0].fast, rig.a._readers[0].slow) if fast else None
    finally:
        rig.close()
    return trace, counts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=packets(), codecs=st.sampled_from([("PCMU", "PCMU"), ("PCMU", "PCMA"), ("PCMA", "PCMU"),
                                                ("PCMA", "PCMA")]),
       record=st.booleans(), te=st.booleans(), direction=st.sampled_from(["sendrecv", "sendrecv", "recvonly"]))
def test_c_relay_matches_python_relay(steps, codecs, record, te, direction, tmp_path):
    fast, _ = _run(True, steps, codecs, record, te, tmp_path, direction)
    slow, _ = _run(False, steps, codecs, record, te, tmp_path, direction)
    for i, (c, p) in enumerate(zip(fast, slow, strict=True)):
        assert c == p, f"step {i}: {steps[i][:7]}: {_diff(c, p)[:6]}"


def test_steady_stream_takes_the_c_path_and_matches(tmp_path):
    """A plain transcoded, recorded call: after the first packets (probation, latching, first relay)
    every packet is relayed in C, with the same bytes and state as Python."""
    steps: list[tuple] = []
    for i in range(200):
        steps.append(("packet", 0, 0x80, 0, (65500 + i) & 0xFFFF, (0xFFFFF000 + 160 * i) & 0xFFFFFFFF, 0xABCDEF01,
                      bytes((i + k) & 0xFF for k in range(160))))
        steps.append(("time", 0.02))
        if i % 10 == 9:
            steps.append(("tick",))
    fast, counts = _run(True, steps, ("PCMU", "PCMA"), True, False, tmp_path)
    slow, _ = _run(False, steps, ("PCMU", "PCMA"), True, False, tmp_path)
    assert fast == slow
    assert counts is not None and counts[0] >= 195 and counts[0] + counts[1] == 200
    relayed = [d for step in fast for d in step["op"] if d[12:28] != d[28:44] or d[1] & 0x7F != 8]
    assert len(relayed) == 200
    # the payload was transcoded PCMU -> PCMA, the sequence numbers continue across the wrap
    assert relayed[-1][12:] == bytes((199 + k) & 0xFF for k in range(160)).translate(g711.ULAW_TO_ALAW)
    seqs = [struct.unpack("!H", d[2:4])[0] for d in relayed]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))


def test_fast_path_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("GATEWAY_MEDIA_FASTPATH", "0")
    assert session._load_fast_path() is None
    monkeypatch.setenv("GATEWAY_MEDIA_FASTPATH", "1")
    assert session._load_fast_path() is not None


def test_bind_rejects_a_class_without_the_slots():
    from gateway.media import _fastrtp

    class NotALeg:
        pass

    with pytest.raises(AttributeError):
        _fastrtp.bind(NotALeg, LegStats, session.ReceiveStats, RtpSender, g711.ULAW_TO_ALAW, g711.ALAW_TO_ULAW,
                      session.log)
    # re-bind the real classes for the rest of the run
    _fastrtp.bind(session.MediaLeg, LegStats, session.ReceiveStats, RtpSender, g711.ULAW_TO_ALAW,
                  g711.ALAW_TO_ULAW, session.log)


# -- the recorder's frame builder -----------------------------------------------------------------------

recorder_ops = st.lists(st.one_of(
    st.tuples(st.just("push"), st.integers(0, 1), st.sampled_from([0, 1, 80, 159, 160, 161, 240, 320, 1700]),
              st.sampled_from(["PCMU", "PCMU", "PCMA"])),
    st.tuples(st.just("prompt"), st.integers(0, 1), st.sampled_from([2, 320, 500])),
    st.tuples(st.just("tick"), st.integers(1, 3)),
), min_size=1, max_size=60)


def _record(ops: list[tuple], tmp: Path, name: str) -> list:
    rec = ports.StereoRecorder(tmp / f"{name}.wav", writer=DiskWriter(start=False))
    trace = []
    for n, op in enumerate(ops):
        if op[0] == "push":
            rec.push(op[1], bytes((n * 7 + k) & 0xFF for k in range(op[2])), op[3])
        elif op[0] == "prompt":
            rec.push_prompt(op[1], bytes((n + k) & 0xFF for k in range(op[2])))
        else:
            rec.tick(op[1])
        frames = [rec._queue.popleft() for _ in range(len(rec._queue))]
        sides = [{k: (bytes(v) if isinstance(v, bytearray) else v) for k in s.__slots__ for v in [getattr(s, k)]}
                 for s in rec.aligner.sides]
        trace.append((frames, sides, rec.aligner.frames))
    trace.append(rec.aligner.drain(frame=rec._frame))
    return trace


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=recorder_ops)
def test_c_frame_builder_matches_python(ops, tmp_path, monkeypatch):
    assert ports._G711_FRAME is not None
    fast = _record(ops, tmp_path, "c")
    monkeypatch.setattr(ports, "_G711_FRAME", None)
    slow = _record(ops, tmp_path, "py")
    monkeypatch.undo()
    for i, (c, p) in enumerate(zip(fast, slow, strict=True)):
        assert c == p, f"after op {i}: {ops[i] if i < len(ops) else 'drain'}"


# -- the disk writer's batch --------------------------------------------------------------------------


def _recordings(tmp: Path, name: str, ticks: int) -> tuple[list[bytes], list[tuple]]:
    writer = DiskWriter(start=False)
    recs = [ports.StereoRecorder(tmp / f"{name}{i}.wav", writer=writer) for i in range(3)]
    for t in range(ticks):
        for i, rec in enumerate(recs):
            if (t + i) % 3:
                rec.push(i % 2, bytes((t * 5 + i + k) & 0xFF for k in range(160)), "PCMA" if i == 2 else "PCMU")
            rec.tick()
        if t % 7 == 6:
            writer.run_pending(batch_frames=5)
    counters = [(r.frames_written, r._data_bytes, r._since_patch, r._since_fsync) for r in recs]
    for rec in recs:
        rec.seal_start()
    writer.run_pending()
    return [rec.path.read_bytes() for rec in recs], counters


def test_c_batch_writer_matches_python(tmp_path, monkeypatch):
    """Frames, size patches (every 50 frames) and fsyncs (every 250): the same files and counters."""
    assert ports._WRITE_BATCH is not None
    calls = []
    real = ports._WRITE_BATCH
    monkeypatch.setattr(ports, "_WRITE_BATCH", lambda items: calls.append(len(items)) or real(items))
    fast = _recordings(tmp_path, "c", 320)
    monkeypatch.setattr(ports, "_WRITE_BATCH", None)
    slow = _recordings(tmp_path, "py", 320)
    assert calls and max(calls) == 3  # the C batch did the writing, all three recordings per call
    assert fast == slow
    assert all(len(data) >= 44 + 640 * 320 for data in fast[0])  # and the drain at the seal


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_batch_accounting_on_failure_matches_python(stage, tmp_path, monkeypatch):
    """A failed write, size patch or fsync leaves the recorder's counters as the Python path leaves them."""
    results = []
    for batched in (True, False):
        rec = ports.StereoRecorder(tmp_path / f"{batched}{stage}.wav", writer=DiskWriter(start=False))
        rec.writer.run_pending()  # open
        rec._since_patch, rec._since_fsync = 45, 245  # so both the patch and the fsync are due
        frames = [bytes(640)] * 10
        if batched:
            rec._wrote(frames, rec._plan_write(frames), stage, 5)
        else:
            def fail(*args, **kwargs):
                raise OSError(5, "Input/output error")
            monkeypatch.setattr(ports.os, {1: "write", 2: "pwrite", 3: "fsync"}[stage], fail)
            rec._write(frames)
            monkeypatch.undo()
        results.append((rec.frames_written, rec._data_bytes, rec._since_patch, rec._since_fsync))
        rec._file.close()
        rec._file = None
    assert results[0] == results[1]


def _record_ticks(ops: list[tuple], tmp: Path, name: str, c_ticks: bool, max_pending: int) -> list:
    from gateway.media import _fastrtp

    rec = ports.StereoRecorder(tmp / f"{name}.wav", writer=DiskWriter(start=False), max_pending_frames=max_pending)
    trace = []
    for n, op in enumerate(ops):
        if op[0] == "push":
            rec.push(op[1], bytes((n * 7 + k) & 0xFF for k in range(op[2])), op[3])
        elif op[0] == "prompt":
            rec.push_prompt(op[1], bytes((n + k) & 0xFF for k in range(op[2])))
        elif c_ticks:
            assert _fastrtp.tick_recorders([rec], op[1]) == []
        else:
            rec.tick(op[1])
        if n % 5 == 4:  # the disk catches up now and then
            rec.frames_written = rec.frames_queued
        sides = [{k: (bytes(v) if isinstance(v, bytearray) else v) for k in s.__slots__ for v in [getattr(s, k)]}
                 for s in rec.aligner.sides]
        trace.append((list(rec._queue), sides, rec.aligner.frames, rec.frames_queued, rec.frames_dropped, rec._gap))
    return trace


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=recorder_ops, max_pending=st.sampled_from([2, 4, 500]))
def test_c_recorder_ticks_match_python(ops, max_pending, tmp_path):
    """The clock's pass over the recorders in C (plain frames there, the rest by recorder.tick) against
    recorder.tick: the same frames queued, drops to disk, gaps and aligner state."""
    fast = _record_ticks(ops, tmp_path, "c", True, max_pending)
    slow = _record_ticks(ops, tmp_path, "py", False, max_pending)
    for i, (c, p) in enumerate(zip(fast, slow, strict=True)):
        assert c == p, f"after op {i}: {ops[i]}"


def test_tick_recorders_returns_the_sealed(tmp_path):
    from gateway.media import _fastrtp

    a, b = (ports.StereoRecorder(tmp_path / f"{n}.wav", writer=DiskWriter(start=False)) for n in "ab")
    b.seal_start()
    assert _fastrtp.tick_recorders([a, b], 2) == [b]
    assert a.frames_queued == 2 and a.aligner.frames == 2


def test_drain_drops_queued_datagrams_up_to_the_limit_and_never_blocks():
    from gateway.media import _fastrtp

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        assert _fastrtp.drain(rx.fileno(), 64) == 0  # empty: returns at once
        for i in range(5):
            tx.sendto(bytes([i]) * 172, rx.getsockname())
        # loopback delivery is synchronous with sendto: all five are queued now
        assert _fastrtp.drain(rx.fileno(), 3) == 3
        assert rx.recv(2048) == bytes([3]) * 172  # the oldest three went, in order
        assert _fastrtp.drain(rx.fileno(), 64) == 1
        with pytest.raises(BlockingIOError):
            rx.recv(2048)
    finally:
        rx.close()
        tx.close()
