"""Hostile RTP through the real C reader (gateway/media/_fastrtp.c) and the Python reader.

A bridged, recorded call is brought into the steady state (the C path relays every packet), then packets
a hostile or broken peer sends arrive from the latched source in the middle of the stream: zero-length,
short and header-only datagrams, a CSRC count, header extension or padding count pointing past the end,
a datagram longer than the read buffer, payload type changes, and a packet for a leg that was just closed.
Both readers must survive them and end in the same state with the same datagrams out (the existing
comparison of tests/media/test_fastrtp.py, reused).  Run this module under valgrind or an ASan build of the
extension to check the C reader's memory accesses.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from test_fastrtp import Rig, _diff
from test_media_session import drain_socket

pytest.importorskip("gateway.media._fastrtp", reason="C extension not built (no C compiler at install)")

SSRC = 0xABCDEF01


def _rtp(b0: int, b1: int, seq: int, ts: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, SSRC) + payload


def _hostile(seq: int, ts: int) -> list[bytes]:
    """Datagrams from the latched source that are not the steady state (one sequence number each)."""
    return [
        b"",
        b"\x80",
        _rtp(0x80, 0, seq, ts, b"")[:11],
        _rtp(0x80, 0, seq, ts, b""),                                # header only, no payload
        _rtp(0x8F, 0, seq, ts, b""),                                # 15 CSRCs announced, none there
        _rtp(0x8F, 0, seq, ts, bytes(56)),                          # 15 CSRCs there, no payload
        _rtp(0x90, 0, seq, ts, b""),                                # extension bit, no extension header
        _rtp(0x90, 0, seq, ts, b"\xbe\xde\xff\xff" + bytes(8)),     # extension length 65535 words
        _rtp(0xA0, 0, seq, ts, b"\xff"),                            # padding count 255 in a 13-byte packet
        _rtp(0xA0, 0, seq, ts, bytes(159) + b"\x00"),               # padding count 0
        _rtp(0xA0, 0, seq, ts, bytes(159) + b"\xa0"),               # all payload is padding
        _rtp(0xBF, 0, seq, ts, bytes(3)),                           # every bit at once
        _rtp(0x80, 0, seq, ts, bytes(range(256)) * 12),             # longer than the 2048-byte read buffer
        _rtp(0x80, 0x80 | 8, seq, ts, bytes(160)),                  # payload type changes mid-stream
        _rtp(0x80, 101, seq, ts, b"\x05\x8a\x03\x20"),              # a DTMF end
        _rtp(0x80, 101, seq, ts, b"\xff"),                          # a truncated telephone-event
        _rtp(0x80, 127, seq, ts, bytes(2036)),                      # largest payload that fits the buffer
    ]


def _run_hostile(fast: bool, tmp: Path, order: list[int]) -> tuple[list, tuple[int, int] | None]:
    random.seed(4733)
    rig = Rig(fast, ("PCMU", "PCMA"), True, tmp, True)
    trace = []
    seq, ts = 65000, 0xFFFFF000

    def send(data: bytes) -> None:
        rig.hp.sendto(data, ("127.0.0.1", rig.a.local_port))
        rig.a._readers[0]()
        rig.clock.now += 0.02
        trace.append({"hp": drain_socket(rig.hp), "op": drain_socket(rig.op), "state": rig.snapshot()})

    try:
        for i in range(20):  # probation, latching, then the C path
            send(_rtp(0x80, 0, (seq + i) & 0xFFFF, (ts + 160 * i) & 0xFFFFFFFF, bytes(160)))
        seq, ts = (seq + 20) & 0xFFFF, (ts + 3200) & 0xFFFFFFFF
        for k in order:
            send(_hostile(seq, ts)[k])
            seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
            send(_rtp(0x80, 0, seq, ts, bytes(160)))  # and the stream goes on
            seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
            if k % 4 == 0:
                rig.engine.tick(rig.clock.now)
        counts = (rig.a._readers[0].fast, rig.a._readers[0].slow) if fast else None
        # a packet for a leg being closed: its socket stays in the pool, nothing is relayed or recorded
        rig.a.close()
        rig.hp.sendto(_rtp(0x80, 0, seq, ts, bytes(160)), ("127.0.0.1", rig.a.local_port))
        rig.a._readers[0]()
        trace.append({"hp": drain_socket(rig.hp), "op": drain_socket(rig.op), "state": rig.snapshot()})
    finally:
        rig.close()
    return trace, counts


@pytest.mark.parametrize("seed", range(4))
def test_hostile_packets_mid_stream_c_and_python_agree(seed: int, tmp_path: Path) -> None:
    order = list(range(len(_hostile(0, 0)))) * 2
    random.Random(seed).shuffle(order)
    fast, counts = _run_hostile(True, tmp_path, order)
    slow, _ = _run_hostile(False, tmp_path, order)
    for i, (c, p) in enumerate(zip(fast, slow, strict=True)):
        assert c == p, f"step {i}: {_diff(c, p)[:6]}"
    assert counts is not None and counts[0] > 0  # the C path was really exercised
    # nothing reached the operator after the leg closed
    assert fast[-1]["op"] == []
