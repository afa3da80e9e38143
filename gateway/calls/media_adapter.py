"""The call layer's view of the media plane: one :class:`CallMedia` per activation.

Each call gets two RTP legs from the shared :class:`~gateway.media.session.MediaEngine`:
``hp`` towards the help point and ``op`` towards whichever operator answers
(every forked INVITE offers the same ``op`` port; only the answering one is
connected).  Recording starts when the help point's media is connected (the
183), so what the caller says before an operator answers is evidence too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import metrics
from gateway.config import Config
from gateway.media import sdp
from gateway.media.errors import MediaError, SdpNegotiationError
from gateway.media.ports import StereoRecorder, WavPlayer
from gateway.media.session import MediaEngine, MediaLeg, RtpStopped, SilenceEvent
from gateway.media.wav import Audio, load_wav

from . import events as ce
from .runner import CallRunner

log = logging.getLogger(__name__)

#: Seconds the operator side latches only onto the announced address after moving to another phone.
SWITCH_ANNOUNCED_ONLY = 1.0

#: Where the default prompts ship (the project's prompts/ folder).
DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


def load_prompts(*folders: Path) -> dict[str, Audio]:
    """Every ``*.wav`` in the folders (later folders override earlier); a bad file is a clear error."""
    prompts: dict[str, Audio] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.wav")):
            prompts[path.stem] = load_wav(path)  # raises WavError naming the file and why
    return prompts


class _Negotiator:
    """SDP offer/answer for one call with its two legs' ports (pure calls into gateway.media.sdp)."""

    def __init__(self, address: str, hp_port: int, op_port: int) -> None:
        self.address = address
        self.hp_port = hp_port
        self.op_port = op_port
        self.session_id = secrets.randbits(31)
        self._offer = sdp.build_offer(address, op_port, session_id=self.session_id)
        #: Our SDP version per side (RFC 3264 §8: +1 for every changed description we send).
        self._version = {"hp": 0, "op": 0}

    def _port(self, side: str) -> int:
        return self.hp_port if side == "hp" else self.op_port

    def answer_offer(self, side: str, offer: bytes) -> tuple[bytes, Any]:
        self._version[side] += 1
        try:
            answer, negotiated = sdp.answer(offer, self.address, self._port(side), session_id=self.session_id,
                                            version=self._version[side])
        except SdpNegotiationError:
            raise
        except MediaError as exc:
            raise SdpNegotiationError(f"unreadable SDP offer: {exc}") from exc
        return bytes(answer), negotiated

    def offer_for(self, side: str, direction: str) -> bytes:
        self._version[side] += 1
        return bytes(sdp.build_offer(self.address, self._port(side), session_id=self.session_id,
                                     version=self._version[side], direction=direction))

    def accept_answer_for(self, side: str, offer: bytes, answer: bytes) -> Any:
        return sdp.accept_answer(offer, answer)

    def answer_help_point(self, offer: bytes) -> tuple[bytes, Any]:
        if not offer:
            # An INVITE without SDP (offer in the ACK) is not supported by intercoms we know.
            raise SdpNegotiationError("INVITE without an SDP offer")
        try:
            answer, negotiated = sdp.answer(offer, self.address, self.hp_port, session_id=self.session_id)
        except SdpNegotiationError:
            raise
        except MediaError as exc:
            raise SdpNegotiationError(f"unreadable SDP offer: {exc}") from exc
        return bytes(answer), negotiated

    def operator_offer(self) -> bytes:
        return bytes(self._offer)

    def accept_operator_answer(self, answer: bytes) -> Any:
        return sdp.accept_answer(self._offer, answer)


def _nothing() -> None:
    pass


class CallMediaImpl:
    """Two legs, a recorder and prompt playback for one activation."""

    def __init__(self, engine: MediaEngine, prompts: dict[str, Audio], activation_id: str, runner: CallRunner,
                 recordings: Path, on_recording: Callable[[str, StereoRecorder], None]) -> None:
        self.engine = engine
        self.prompts = prompts
        self.id = activation_id
        self.runner = runner
        self.recordings = recordings
        self.on_recording = on_recording
        self.hp: MediaLeg = engine.allocate_leg(name=f"{activation_id}/hp")
        try:
            self.op: MediaLeg = engine.allocate_leg(name=f"{activation_id}/op")
        except Exception:
            self.hp.close()
            raise
        self.negotiator = _Negotiator(engine.host, self.hp.local_port, self.op.local_port)
        self.recorder: StereoRecorder | None = None
        self.hp.on_dtmf = lambda digit: runner.deliver(activation_id, ce.DigitDetected("hp", digit))
        op = weakref.ref(self.op)  # the leg holds this callback: no reference cycle through it

        def op_digit(digit: str) -> None:
            leg = op()
            runner.deliver(activation_id, ce.DigitDetected("op", digit, leg.remote if leg is not None else None))

        self.op.on_dtmf = op_digit
        self.bridged = False
        self.closed = False
        #: Called once when the call's media is released.
        self.on_closed: Callable[[], None] = lambda: None
        #: Called with +1 when sealing the recording starts and -1 once it is handed on (or failed).
        self.on_sealing: Callable[[int], None] = lambda _delta: None

    def side_of(self, leg: MediaLeg) -> str:
        """``hp`` or ``op``."""
        return "hp" if leg is self.hp else "op"

    def connect(self, side: str, negotiated: Any, switch: bool = False) -> None:
        leg = self.hp if side == "hp" else self.op
        # Moving to another operator's phone: the previous one may still be sending to this port (it is
        # hung up only now, or still waits to confirm), so latch only onto the new phone's announced address
        # for a moment; one behind NAT is latched after that, as usual.
        leg.set_remote(negotiated, announced_only=SWITCH_ANNOUNCED_ONLY if switch else 0.0)
        if side == "hp" and self.recorder is None:
            # (the disk-writer thread creates the folder if it is missing; no file system call here)
            self.recorder = self.engine.recorder(str(self.recordings / f"{self.id}.wav"))
            self.hp.record(self.recorder, 0)
            self.op.record(self.recorder, 1)

    def play(self, side: str, prompt: str, on_done: Callable[[], None] | None) -> None:
        audio = self.prompts.get(prompt)
        if audio is None:
            log.error("call %s: prompt %r missing; continuing without it", self.id, prompt)
            if on_done is not None:
                self.engine.loop.call_soon(on_done)
            return
        leg = self.hp if side == "hp" else self.op
        done = leg.play(WavPlayer(audio))
        if on_done is not None:
            done.add_done_callback(lambda _f: on_done())

    def play_warning(self, number: int) -> bool:
        """Play warning ``number`` to the help point's speaker (operator command); False if unknown."""
        if f"warning-{number}" not in self.prompts or self.closed:
            return False
        self.play("hp", f"warning-{number}", None)
        return True

    def bridge(self) -> None:
        if self.bridged:
            return
        self.hp.stop_play()
        self.op.stop_play()
        self.engine.bridge(self.hp, self.op, self.recorder)
        self.bridged = True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Whatever raises on the way (it propagates to the runner's tear-down), both legs are closed (their
        # ports go back to the pool) and the recording is sealed: evidence never stays open.
        try:
            try:
                self.on_closed()
                self.on_closed = _nothing  # the plane's callback refers back to this object: no cycle left
                for name, leg in (("hp", self.hp), ("operator", self.op)):
                    stats = leg.stats
                    if stats.expected:
                        metrics.RTP_LOSS_RATIO.labels(name).observe(max(0, stats.lost) / stats.expected)
                        metrics.RTP_JITTER_SECONDS.labels(name).observe(stats.jitter)
                self.engine.unbridge(self.hp)
            finally:
                try:
                    self.hp.close()
                finally:
                    self.op.close()
        finally:
            if self.recorder is not None:
                recorder = self.recorder
                # An asyncio future drops its callbacks once they ran; a callback put on the recorder's own
                # (concurrent) future would stay there and keep recorder and call in a reference cycle.
                sealed = asyncio.wrap_future(recorder.seal_start(), loop=self.engine.loop)
                self.on_sealing(1)
                sealed.add_done_callback(lambda f: self._sealed(recorder, f))

    def _sealed(self, recorder: StereoRecorder, future: Any) -> None:
        try:
            error = "cancelled" if future.cancelled() else future.exception()
            if error is not None:
                metrics.RECORDINGS_FAILED.inc()
                log.error("call %s: sealing %s failed: %s", self.id, recorder.path, error)
                return
            burst = sum(side.dropped_samples for side in recorder.aligner.sides) / 8000
            disk = recorder.frames_dropped * 0.02
            for reason, seconds in (("burst", burst), ("disk", disk)):
                if seconds:
                    metrics.RECORDING_AUDIO_DROPPED.labels(reason).inc(seconds)
            if burst or disk:
                log.warning("call %s: recording %s left out %.2f s of audio (burst %.2f s, disk %.2f s)",
                            self.id, recorder.path, burst + disk, burst, disk)
            self.on_recording(self.id, recorder)
        finally:
            self.on_sealing(-1)


class MediaPlane:
    """The process-wide engine, prompt library and silence routing."""

    def __init__(self, engine: MediaEngine, prompts: dict[str, Audio], recordings: Path) -> None:
        self.engine = engine
        self.prompts = prompts
        self.recordings = recordings
        self.calls: dict[int, tuple[CallMediaImpl, str]] = {}
        self.on_recording: Callable[[str, StereoRecorder], None] = lambda _id, _r: None
        engine.silence_events = self.silence
        #: Recordings whose sealing started and whose ``on_recording`` has not run yet.
        self.sealing = 0

    def factory(self, activation_id: str, runner: CallRunner) -> CallMediaImpl:
        """Build one call's media."""
        media = CallMediaImpl(self.engine, self.prompts, activation_id, runner, self.recordings,
                              lambda aid, rec: self.on_recording(aid, rec))
        self.calls[id(media.hp)] = (media, "hp")
        self.calls[id(media.op)] = (media, "op")
        media.on_closed = lambda: self.forget(media)
        media.on_sealing = self._count_sealing
        return media

    def _count_sealing(self, delta: int) -> None:
        self.sealing += delta

    async def wait_sealed(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every recording being sealed was handed to ``on_recording``.

        The drain calls this before it closes the journal and the database writer, so the last calls'
        recordings are journalled and linked too.  True when none is left.
        """
        deadline = self.engine.loop.time() + timeout
        while self.sealing > 0 and self.engine.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return self.sealing <= 0

    def forget(self, media: CallMediaImpl) -> None:
        """Drop the silence routing of a closed call."""
        self.calls.pop(id(media.hp), None)
        self.calls.pop(id(media.op), None)

    def silence(self, event: SilenceEvent) -> None:
        """A leg went silent or resumed: tell its call (a timeline entry, never a hang-up)."""
        found = self.calls.get(id(event.leg))
        if found is None:
            return
        media, side = found
        media.runner.deliver(media.id, ce.MediaSilence(side, isinstance(event, RtpStopped)))


async def create_media_plane(config: Config) -> MediaPlane:
    """Start the media engine for ``config`` (raises MediaError with a clear message)."""
    host = config.media.address or config.sip.listen[0].host
    engine = MediaEngine(host, config.media.rtp_port_min, config.media.rtp_port_max,
                         loop=asyncio.get_running_loop(), silence_timeout=config.media.silence_timeout)
    prompts = load_prompts(DEFAULT_PROMPTS, Path(config.prompts_dir))
    if engine.fast_path:
        log.info("RTP relay: C fast path")
    else:
        log.warning("RTP relay: pure Python (the C fast path is not built, is switched off with "
                    "GATEWAY_MEDIA_FASTPATH=0, or the media address is IPv6): fewer calls per core")
    return MediaPlane(engine, prompts, Path(config.data_dir) / "recordings")
