"""WAV files: read (converting to 8 kHz mono 16-bit), header building and crash repair.

Reading understands RIFF/WAVE with PCM 8/16/24/32-bit, IEEE float 32/64-bit,
A-law and mu-law (format codes 6 and 7) and WAVE_FORMAT_EXTENSIBLE wrappers of
those.  Other sample rates are resampled (a moving-average low-pass then
linear interpolation: adequate for speech prompts); several channels are
averaged.  Anything else raises :class:`WavError` naming the file and why.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from dataclasses import dataclass, field

from . import g711
from .errors import WavError

RATE = 8000
_FORMAT_PCM, _FORMAT_FLOAT, _FORMAT_ALAW, _FORMAT_ULAW, _FORMAT_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
HEADER_SIZE = 44
#: Largest WAV file read (bytes): minutes of audio in any format; a prompt is seconds.
MAX_WAV_BYTES = 64 << 20
#: Longest audio converted (seconds), checked from the header before any conversion.
MAX_SECONDS = 600
_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True, eq=False)
class Audio:
    """Loaded audio: signed 16-bit little-endian, 8 kHz, mono; encodings cached per codec."""

    pcm: bytes
    source: str = "<memory>"
    _encoded: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def samples(self) -> int:
        """Number of samples."""
        return len(self.pcm) // 2

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples / RATE

    def encoded(self, codec: str) -> bytes:
        """The whole clip in G.711 ``codec`` (computed once, then cached)."""
        data = self._encoded.get(codec)
        if data is None:
            data = self._encoded[codec] = g711.encode(self.pcm, codec)
        return data


def _samples_from(fmt: int, bits: int, raw: bytes, name: str) -> list[float] | array:
    """Interleaved samples as numbers on the 16-bit scale."""
    if fmt == _FORMAT_PCM and bits == 16:
        a = array("h")
        a.frombytes(raw[: len(raw) - len(raw) % 2])
        if not _LITTLE:
            a.byteswap()
        return a
    if fmt == _FORMAT_PCM and bits == 8:
        return [(b - 128) << 8 for b in raw]
    if fmt == _FORMAT_PCM and bits in (24, 32):
        width = bits // 8
        return [int.from_bytes(raw[i:i + width], "little", signed=True) >> (bits - 16)
                for i in range(0, len(raw) - width + 1, width)]
    if fmt == _FORMAT_FLOAT and bits in (32, 64):
        code = "f" if bits == 32 else "d"
        values = array(code)
        values.frombytes(raw[: len(raw) - len(raw) % (bits // 8)])
        if not _LITTLE:
            values.byteswap()
        return [max(-32768.0, min(32767.0, v * 32768.0)) for v in values]
    if fmt in (_FORMAT_ALAW, _FORMAT_ULAW) and bits == 8:
        a = array("h")
        a.frombytes(g711.decode(raw, "PCMA" if fmt == _FORMAT_ALAW else "PCMU"))
        if not _LITTLE:
            a.byteswap()
        return a
    raise WavError(f"{name}: unsupported WAV encoding (format {fmt}, {bits} bits per sample)")


def _resample(samples: list[float], rate: int) -> list[float]:
    if rate == RATE or not samples:
        return samples
    if rate > RATE:
        width = max(1, round(rate / RATE))
        if width > 1:  # crude anti-alias low-pass: moving average over one output period
            acc, out = 0.0, []
            for i, v in enumerate(samples):
                acc += v
                if i >= width:
                    acc -= samples[i - width]
                out.append(acc / min(i + 1, width))
            samples = out
    count = int(len(samples) * RATE / rate)
    step = rate / RATE
    last = len(samples) - 1
    result = []
    for i in range(count):
        pos = i * step
        j = int(pos)
        frac = pos - j
        a = samples[j]
        b = samples[j + 1] if j < last else a
        result.append(a + (b - a) * frac)
    return result


def parse_wav(data: bytes, name: str = "<bytes>") -> Audio:
    """Decode WAV bytes to 8 kHz mono 16-bit :class:`Audio`; ``name`` appears in errors."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError(f"{name}: not a RIFF/WAVE file")
    pos = 12
    fmt_info = None
    raw = None
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{name}: fmt chunk too short")
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if fmt == _FORMAT_EXTENSIBLE:
                if len(body) < 26:
                    raise WavError(f"{name}: WAVE_FORMAT_EXTENSIBLE chunk too short")
                fmt = struct.unpack_from("<H", body, 24)[0]
            fmt_info = (fmt, channels, rate, bits)
        elif chunk_id == b"data":
            raw = body
            break
        pos += 8 + size + (size & 1)
    if fmt_info is None:
        raise WavError(f"{name}: no fmt chunk")
    if raw is None:
        raise WavError(f"{name}: no data chunk")
    fmt, channels, rate, bits = fmt_info
    if channels < 1 or not 1000 <= rate <= 384000:
        raise WavError(f"{name}: unusable format ({channels} channels, {rate} Hz)")
    seconds = len(raw) // (channels * max(1, bits // 8)) / rate
    if seconds > MAX_SECONDS:  # before converting: a low rate multiplies the samples
        raise WavError(f"{name}: too long ({seconds:.0f} s; at most {MAX_SECONDS} s)")
    samples = _samples_from(fmt, bits, raw, name)
    if len(raw) < channels * max(1, bits // 8):
        raise WavError(f"{name}: no audio samples")
    if fmt == _FORMAT_PCM and bits == 16 and channels == 1 and rate == RATE:
        return Audio(bytes(raw[: len(raw) - len(raw) % 2]), name)
    if channels > 1:
        samples = [sum(samples[i:i + channels]) / channels
                   for i in range(0, len(samples) - channels + 1, channels)]
    samples = _resample(list(samples), rate)
    out = array("h", (max(-32768, min(32767, int(round(v)))) for v in samples))
    if not _LITTLE:
        out.byteswap()
    return Audio(out.tobytes(), name)


def load_wav(path: str | os.PathLike[str]) -> Audio:
    """Read and convert a WAV file; :class:`WavError` names the file and the problem."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_WAV_BYTES + 1)
    except OSError as exc:
        raise WavError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_WAV_BYTES:
        raise WavError(f"{path}: too large (over {MAX_WAV_BYTES >> 20} MiB)")
    return parse_wav(data, str(path))


def wav_header(data_bytes: int, channels: int = 2, rate: int = RATE, bits: int = 16) -> bytes:
    """The canonical 44-byte PCM WAV header for ``data_bytes`` of sample data."""
    block = channels * bits // 8
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, _FORMAT_PCM,
                       channels, rate, rate * block, block, bits, b"data", data_bytes)


def repair_wav(path: str | os.PathLike[str]) -> int:
    """Fix the RIFF and data sizes of a WAV cut short (e.g. by a crash); returns the data size.

    A trailing partial sample frame is truncated.  Raises :class:`WavError` if
    the file has no fmt and data chunk headers to repair.
    """
    with open(path, "r+b") as f:
        head = f.read(4096)
        length = f.seek(0, os.SEEK_END)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavError(f"{path}: not a RIFF/WAVE file, cannot repair")
        pos, block = 12, 0
        while pos + 8 <= len(head):
            chunk_id, size = struct.unpack_from("<4sI", head, pos)
            if chunk_id == b"fmt " and pos + 8 + 14 <= len(head):
                block = struct.unpack_from("<H", head, pos + 8 + 12)[0]
            if chunk_id == b"data":
                start = pos + 8
                data_size = max(0, length - start)
                if block:
                    data_size -= data_size % block
                limit = min(0xFFFFFFFF, 0xFFFFFFFF + 8 - start)  # both size fields are 32-bit
                if data_size > limit:  # more than a header can describe: it describes what it can, no byte is cut
                    data_size = limit - (limit % block if block else 0)
                else:
                    f.truncate(start + data_size)
                f.seek(pos + 4)
                f.write(struct.pack("<I", data_size))
                f.seek(4)
                f.write(struct.pack("<I", start + data_size - 8))
                return data_size
            pos += 8 + size + (size & 1)
    raise WavError(f"{path}: no data chunk header, cannot repair")
