"""The call layer's media adapter on a real MediaEngine (loopback sockets, hand-driven clock)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from gateway.calls.media_adapter import SWITCH_ANNOUNCED_ONLY, CallMediaImpl, MediaPlane
from gateway.media.sdp import NegotiatedMedia
from gateway.media.session import MediaEngine

HOST = "127.0.0.1"


class _Runner:
    def deliver(self, *_args: object) -> None:
        pass


async def _calls(plane: MediaPlane, engine: MediaEngine, count: int) -> None:
    for i in range(count):
        media: CallMediaImpl = plane.factory(f"act-{i}", _Runner())  # type: ignore[arg-type]
        media.connect("hp", NegotiatedMedia(HOST, 9, "PCMU", 0))
        media.connect("op", NegotiatedMedia(HOST, 9, "PCMA", 8))
        media.bridge()
        engine.tick(engine.clock())
        media.close()


async def test_ended_calls_leave_no_reference_cycles_and_every_recording_is_handed_on(tmp_path: Path) -> None:
    """A call's media must be freed by reference counting when it ends: objects left in cycles would
    pile up for the cyclic collector, whose full passes pause every call's audio."""
    engine = MediaEngine(HOST, 41600, 41699, start_clock=False)
    plane = MediaPlane(engine, {}, tmp_path / "recordings")
    handed_on: list[str] = []
    plane.on_recording = lambda activation, _rec: handed_on.append(activation)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await _calls(plane, engine, 5)
        assert await plane.wait_sealed(10.0)
        gc.collect()
        kinds = {type(o).__name__ for o in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        await engine.close()
    assert sorted(handed_on) == [f"act-{i}" for i in range(5)]
    assert not kinds & {"CallMediaImpl", "MediaLeg", "StereoRecorder", "RtpSender", "Future"}, kinds
    assert sorted(p.name for p in (tmp_path / "recordings").glob("*.sha256")) == \
        [f"act-{i}.wav.sha256" for i in range(5)]


async def test_a_switch_to_another_operator_phone_latches_its_announced_address_only_for_a_moment(
        tmp_path: Path) -> None:
    engine = MediaEngine(HOST, 41700, 41709, start_clock=False)
    plane = MediaPlane(engine, {}, tmp_path / "recordings")
    try:
        media: CallMediaImpl = plane.factory("act-s", _Runner())  # type: ignore[arg-type]
        media.connect("op", NegotiatedMedia(HOST, 9, "PCMA", 8))
        assert media.op._announced_until == 0.0  # the first phone: symmetric RTP as usual
        media.connect("op", NegotiatedMedia(HOST, 11, "PCMA", 8), switch=True)
        assert 0 < media.op._announced_until - engine.clock() <= SWITCH_ANNOUNCED_ONLY
        media.connect("op", NegotiatedMedia(HOST, 11, "PCMA", 8))  # a re-INVITE of the same phone
        assert media.op._announced_until == 0.0
        media.close()
        assert await plane.wait_sealed(10.0)
    finally:
        await engine.close()


async def test_audio_left_out_of_a_recording_is_counted_when_it_is_sealed(tmp_path: Path) -> None:
    """A burst beyond the aligner's buffer is cut (timing kept): the sealed recording says how much."""
    from gateway import metrics

    def dropped() -> float:
        return metrics.REGISTRY.get_sample_value(
            "gateway_recording_audio_dropped_seconds_total", {"reason": "burst"}) or 0.0

    engine = MediaEngine(HOST, 41720, 41729, start_clock=False)
    plane = MediaPlane(engine, {}, tmp_path / "recordings")
    before = dropped()
    try:
        media: CallMediaImpl = plane.factory("act-d", _Runner())  # type: ignore[arg-type]
        media.connect("hp", NegotiatedMedia(HOST, 9, "PCMU", 0))
        media.connect("op", NegotiatedMedia(HOST, 11, "PCMU", 0))
        recorder = media.recorder
        assert recorder is not None
        recorder.push(0, b"\x55" * 16000, "PCMU")  # 2 s of audio arriving at once
        engine.tick(engine.clock())
        cut = recorder.aligner.sides[0].dropped_samples
        assert cut > 0
        media.close()
        assert await plane.wait_sealed(10.0)
    finally:
        await engine.close()
    assert dropped() - before == cut / 8000


async def test_an_operator_rfc4733_digit_reaches_the_call_with_the_address_that_sent_it(tmp_path: Path) -> None:
    import asyncio

    from gateway.calls import events as ce
    from gateway.media.dtmf import TelephoneEvent
    from gateway.media.rtp import RtpPacket

    class Runner:
        def __init__(self) -> None:
            self.events: list[object] = []

        def deliver(self, _activation: str, event: object) -> None:
            self.events.append(event)

    engine = MediaEngine(HOST, 41740, 41749, start_clock=False)
    plane = MediaPlane(engine, {}, tmp_path / "recordings")
    runner = Runner()
    try:
        media: CallMediaImpl = plane.factory("act-t", runner)  # type: ignore[arg-type]
        media.connect("op", NegotiatedMedia(HOST, 7002, "PCMU", 0, telephone_event=101))
        source = (HOST, 7002)
        media.op._receive_rtp(bytes(RtpPacket(0, 1, 160, 0x1234, b"\xff" * 160)), source, engine.clock())
        digit = bytes(TelephoneEvent.from_digit("1", end=True, duration=800))
        for seq in (2, 3, 4):  # the end packet is sent three times (RFC 4733 §2.5.1.4)
            media.op._receive_rtp(bytes(RtpPacket(101, seq, 320, 0x1234, digit)), source, engine.clock())
        for _ in range(20):
            await asyncio.sleep(0)
        assert runner.events == [ce.DigitDetected("op", "1", source)]
        media.close()
        assert await plane.wait_sealed(10.0)
    finally:
        await engine.close()


async def test_a_failure_while_closing_still_closes_both_legs_and_seals_the_recording(tmp_path: Path) -> None:
    """A bug on the way out of a call (here unbridging raises) reaches the runner's tear-down, but the
    call's RTP ports are released and its recording is sealed and handed on, never left open."""
    engine = MediaEngine(HOST, 41740, 41749, start_clock=False)
    plane = MediaPlane(engine, {}, tmp_path / "recordings")
    handed_on: list[str] = []
    plane.on_recording = lambda activation, _rec: handed_on.append(activation)
    try:
        media: CallMediaImpl = plane.factory("act-x", _Runner())  # type: ignore[arg-type]
        media.connect("hp", NegotiatedMedia(HOST, 9, "PCMU", 0))
        media.connect("op", NegotiatedMedia(HOST, 9, "PCMU", 0))
        media.bridge()
        engine.tick(engine.clock())

        def broken(_leg: object) -> None:
            raise RuntimeError("bug")

        engine.unbridge = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            media.close()
        assert media.hp.closed and media.op.closed
        assert await plane.wait_sealed(10.0)
        assert handed_on == ["act-x"]
        assert (tmp_path / "recordings" / "act-x.wav.sha256").exists()
    finally:
        await engine.close()
