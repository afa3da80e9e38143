"""The stereo aligner for evidential recordings (pure).

Each 20 ms tick yields exactly one stereo frame: left = help point, right =
operator (:data:`LEFT`, :data:`RIGHT`).  Received audio is queued per side in
sample units (so 20 or 30 ms packets both work); a side that sent nothing
contributes silence, so the file's length always matches wall-clock time.
Prompts are mixed onto the side on which they were heard.

Per side, playout starts once ``prefill`` samples are queued (absorbing
network jitter of up to one frame), or after one quiet tick so a single short
burst is not held back.  An underrun plays what is left padded with silence
and re-enters prefill.  A queue longer than ``max_buffer`` (a burst after a
network stall) is cut back to ``prefill``; the dropped samples are counted,
because keeping them would shift that side's timeline for the rest of the call.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable

LEFT = 0
RIGHT = 1
_LITTLE = sys.byteorder == "little"


def mix(a: bytes, b: bytes) -> bytes:
    """Sum two equal-length signed 16-bit little-endian buffers with saturation."""
    if not any(a):
        return b
    if not any(b):
        return a
    x, y = array("h"), array("h")
    x.frombytes(a)
    y.frombytes(b)
    if not _LITTLE:
        x.byteswap()
        y.byteswap()
    out = array("h", [32767 if s > 32767 else -32768 if s < -32768 else s for s in map(int.__add__, x, y)])
    if not _LITTLE:
        out.byteswap()
    return out.tobytes()


class _Side:
    __slots__ = ("fifo", "prompt", "playing", "pushed", "quiet_ticks", "underruns", "dropped_samples", "silence")

    def __init__(self, silence: bytes) -> None:
        self.fifo = bytearray()
        self.prompt = bytearray()
        self.playing = False
        self.pushed = False
        self.quiet_ticks = 0
        self.underruns = 0
        self.dropped_samples = 0
        #: One frame of silence in the encoding queued on this side.
        self.silence = silence


class StereoAligner:
    """Per-tick stereo frames from two independently arriving mono streams.

    Voice is queued in any fixed-width encoding: ``sample_bytes=2`` for signed 16-bit linear (the default,
    where :meth:`tick` gives the interleaved stereo frame), or ``sample_bytes=1`` for G.711 kept as it
    arrived (the recorder decodes a whole frame at a time: :meth:`tick_parts`).  Prompts are always
    16-bit linear.
    """

    def __init__(self, frame_samples: int = 160, *, prefill_frames: int = 2, max_buffer_frames: int = 10,
                 sample_bytes: int = 2) -> None:
        self.sample_bytes = sample_bytes
        self.frame_bytes = sample_bytes * frame_samples
        self.prefill_bytes = prefill_frames * self.frame_bytes
        self.max_bytes = max_buffer_frames * self.frame_bytes
        self.pcm_frame_bytes = 2 * frame_samples
        self.sides = (_Side(bytes(self.frame_bytes)), _Side(bytes(self.frame_bytes)))
        #: Stereo frames produced.
        self.frames = 0

    def set_silence(self, side: int, sample: bytes) -> None:
        """What one silent sample of ``side`` is in the queued encoding (G.711: 0xFF mu-law, 0xD5 A-law)."""
        self.sides[side].silence = sample * (self.frame_bytes // len(sample))

    def push(self, side: int, data: bytes) -> None:
        """Queue audio received from ``side`` (in the aligner's encoding)."""
        s = self.sides[side]
        s.fifo += data
        s.pushed = True

    def push_prompt(self, side: int, pcm: bytes) -> None:
        """Queue prompt audio heard on ``side`` (16-bit linear; mixed into that channel, no prefill)."""
        self.sides[side].prompt += pcm

    def _pull(self, s: _Side) -> bytes:
        fb = self.frame_bytes
        if s.pushed:
            s.quiet_ticks = 0
            s.pushed = False
        else:
            s.quiet_ticks += 1
        fifo = s.fifo
        if len(fifo) > self.max_bytes:
            cut = len(fifo) - self.prefill_bytes
            cut -= cut % self.sample_bytes
            s.dropped_samples += cut // self.sample_bytes
            del fifo[:cut]
        if not s.playing:
            if len(fifo) >= self.prefill_bytes or (fifo and s.quiet_ticks >= 1):
                s.playing = True
            else:
                return s.silence
        if len(fifo) >= fb:
            voice = bytes(fifo[:fb])
            del fifo[:fb]
            return voice
        voice = bytes(fifo) + s.silence[len(fifo):]
        fifo.clear()
        s.playing = False
        if s.quiet_ticks == 0:
            s.underruns += 1
        return voice

    def _pull_prompt(self, s: _Side) -> bytes | None:
        if not s.prompt:
            return None
        fb = self.pcm_frame_bytes
        prompt = bytes(s.prompt[:fb])
        del s.prompt[:fb]
        if len(prompt) < fb:
            prompt += bytes(fb - len(prompt))
        return prompt

    def tick_parts(self) -> tuple[bytes, bytes, bytes | None, bytes | None]:
        """One tick as ``(left voice, right voice, left prompt or None, right prompt or None)``: voice in
        the queued encoding, prompts 16-bit linear."""
        left, right = self.sides
        self.frames += 1
        return (self._pull(left), self._pull(right),
                self._pull_prompt(left) if left.prompt else None,
                self._pull_prompt(right) if right.prompt else None)

    def tick(self) -> bytes:
        """One stereo frame (interleaved left/right signed 16-bit little-endian, 4 bytes a sample);
        for a 16-bit linear aligner."""
        if self.sample_bytes != 2:
            raise ValueError("tick() interleaves 16-bit linear audio; use tick_parts() for G.711")
        left, right, lp, rp = self.tick_parts()
        if lp is not None:
            left = mix(left, lp)
        if rp is not None:
            right = mix(right, rp)
        return interleave(left, right)

    def pending(self) -> bool:
        """True while either side still has queued audio or prompt."""
        return any(s.fifo or s.prompt for s in self.sides)

    def drain(self, limit: int = 50, frame: Callable[[], bytes] | None = None) -> list[bytes]:
        """Frames that flush every queued sample (at the end of a recording), prefill or not; ``frame``
        makes each one (default :meth:`tick`; the recorder passes its G.711 frame builder)."""
        make = frame or self.tick
        for s in self.sides:
            s.playing = s.playing or bool(s.fifo)
        frames = []
        while self.pending() and len(frames) < limit:
            frames.append(make())
        return frames


def interleave(left: bytes, right: bytes) -> bytes:
    """Two equal-length 16-bit mono buffers -> one interleaved stereo buffer (left first)."""
    out = bytearray(2 * len(left))
    out[0::4] = left[0::2]
    out[1::4] = left[1::2]
    out[2::4] = right[0::2]
    out[3::4] = right[1::2]
    return bytes(out)
