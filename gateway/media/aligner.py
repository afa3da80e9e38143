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
    __slots__ = ("fifo", "prompt", "playing", "pushed", "quiet_ticks", "underruns", "dropped_samples")

    def __init__(self) -> None:
        self.fifo = bytearray()
        self.prompt = bytearray()
        self.playing = False
        self.pushed = False
        self.quiet_ticks = 0
        self.underruns = 0
        self.dropped_samples = 0


class StereoAligner:
    """Per-tick stereo frames from two independently arriving mono streams."""

    def __init__(self, frame_samples: int = 160, *, prefill_frames: int = 2, max_buffer_frames: int = 10) -> None:
        self.frame_bytes = 2 * frame_samples
        self.prefill_bytes = prefill_frames * self.frame_bytes
        self.max_bytes = max_buffer_frames * self.frame_bytes
        self.sides = (_Side(), _Side())
        self._silence = bytes(self.frame_bytes)
        #: Stereo frames produced.
        self.frames = 0

    def push(self, side: int, pcm: bytes) -> None:
        """Queue audio received from ``side`` (signed 16-bit little-endian mono)."""
        s = self.sides[side]
        s.fifo += pcm
        s.pushed = True

    def push_prompt(self, side: int, pcm: bytes) -> None:
        """Queue prompt audio heard on ``side`` (mixed into that channel, no prefill)."""
        self.sides[side].prompt += pcm

    def _pull(self, s: _Side) -> bytes:
        fb = self.frame_bytes
        if s.pushed:
            s.quiet_ticks = 0
        else:
            s.quiet_ticks += 1
        s.pushed = False
        if len(s.fifo) > self.max_bytes:
            cut = len(s.fifo) - self.prefill_bytes
            s.dropped_samples += cut // 2
            del s.fifo[:cut]
        if not s.playing:
            if len(s.fifo) >= self.prefill_bytes or (s.fifo and s.quiet_ticks >= 1):
                s.playing = True
            else:
                voice = self._silence
        if s.playing:
            if len(s.fifo) >= fb:
                voice = bytes(s.fifo[:fb])
                del s.fifo[:fb]
            else:
                voice = bytes(s.fifo) + bytes(fb - len(s.fifo))
                s.fifo.clear()
                s.playing = False
                if s.quiet_ticks == 0:
                    s.underruns += 1
        if s.prompt:
            prompt = bytes(s.prompt[:fb])
            del s.prompt[:fb]
            if len(prompt) < fb:
                prompt += bytes(fb - len(prompt))
            voice = mix(voice, prompt)
        return voice

    def tick(self) -> bytes:
        """One stereo frame (interleaved left/right signed 16-bit little-endian, 4 bytes a sample)."""
        left = self._pull(self.sides[LEFT])
        right = self._pull(self.sides[RIGHT])
        out = bytearray(2 * self.frame_bytes)
        out[0::4] = left[0::2]
        out[1::4] = left[1::2]
        out[2::4] = right[0::2]
        out[3::4] = right[1::2]
        self.frames += 1
        return bytes(out)

    def pending(self) -> bool:
        """True while either side still has queued audio or prompt."""
        return any(s.fifo or s.prompt for s in self.sides)

    def drain(self, limit: int = 50) -> list[bytes]:
        """Frames that flush every queued sample (at the end of a recording)."""
        frames = []
        for s in self.sides:
            s.playing = s.playing or bool(s.fifo)
        while self.pending() and len(frames) < limit:
            frames.append(self.tick())
        return frames
