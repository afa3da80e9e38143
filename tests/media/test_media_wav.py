"""WAV loading/conversion, the shipped prompts, the player, and crash repair."""

from __future__ import annotations

import math
import os
import re
import struct
import wave
from pathlib import Path

import pytest

from gateway.media import g711
from gateway.media.errors import WavError
from gateway.media.ports import WavPlayer
from gateway.media.wav import MAX_WAV_BYTES, Audio, load_wav, parse_wav, repair_wav, wav_header

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"
PROMPT_NAMES = ["connecting", "call-recorded", "all-rooms-unavailable", "warning-1", "warning-2", "confirm-operator"]


def riff(fmt: int, channels: int, rate: int, bits: int, data: bytes, extensible: bool = False) -> bytes:
    block = channels * bits // 8
    if extensible:
        fmt_body = struct.pack("<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0,
                               struct.pack("<H", fmt) + bytes(14))
    else:
        fmt_body = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    chunks = (b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
              + b"data" + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def tone(rate: int, seconds: float, freq: float = 400.0, amp: int = 10000) -> list[int]:
    return [int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(rate * seconds))]


def s16(samples: list[int]) -> bytes:
    return b"".join(struct.pack("<h", s) for s in samples)


@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_shipped_prompts_are_8k_mono_16bit_speech(name: str) -> None:
    path = PROMPTS / f"{name}.wav"
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    audio = load_wav(path)
    assert 1.0 < audio.duration < 12.0
    assert max(abs(v) for v in struct.unpack(f"<{audio.samples}h", audio.pcm)) > 8000  # not silence


def test_native_format_is_taken_verbatim() -> None:
    pcm = s16(tone(8000, 0.1))
    assert parse_wav(riff(1, 1, 8000, 16, pcm)).pcm == pcm


def test_stereo_44k1_is_downmixed_and_resampled() -> None:
    left = tone(44100, 0.5)
    data = b"".join(struct.pack("<hh", v, v) for v in left)
    audio = parse_wav(riff(1, 2, 44100, 16, data), "x.wav")
    assert audio.samples == 4000
    values = struct.unpack("<4000h", audio.pcm)
    # still a 400 Hz tone: 20 samples per period, peak amplitude preserved within 5 %
    assert max(values[100:]) == pytest.approx(10000, rel=0.05)
    crossings = sum(1 for a, b in zip(values[100:], values[101:], strict=False) if a < 0 <= b)
    assert crossings == pytest.approx(0.4875 * 400, abs=2)


@pytest.mark.parametrize(("fmt", "bits", "encode"), [
    (1, 8, lambda s: bytes((v >> 8) + 128 for v in s)),
    (1, 24, lambda s: b"".join((v << 8).to_bytes(3, "little", signed=True) for v in s)),
    (1, 32, lambda s: b"".join((v << 16).to_bytes(4, "little", signed=True) for v in s)),
    (3, 32, lambda s: b"".join(struct.pack("<f", v / 32768) for v in s)),
    (7, 8, lambda s: g711.encode(s16(s), "PCMU")),
    (6, 8, lambda s: g711.encode(s16(s), "PCMA")),
], ids=["u8", "s24", "s32", "float32", "ulaw", "alaw"])
@pytest.mark.parametrize("extensible", [False, True], ids=["plain", "extensible"])
def test_other_encodings_convert(fmt: int, bits: int, encode, extensible: bool) -> None:
    samples = tone(8000, 0.05)
    audio = parse_wav(riff(fmt, 1, 8000, bits, encode(samples), extensible))
    got = struct.unpack(f"<{len(samples)}h", audio.pcm)
    assert max(abs(a - b) for a, b in zip(got, samples, strict=True)) <= 400


@pytest.mark.parametrize(("data", "why"), [
    (b"not a wav file", "not a RIFF/WAVE file"),
    (riff(2, 1, 8000, 4, b"\x00" * 10), "unsupported WAV encoding (format 2, 4 bits"),
    (riff(1, 0, 8000, 16, b""), "unusable format"),
    (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    (riff(1, 1, 8000, 16, b"")[:36], "no data chunk"),
], ids=["not-riff", "adpcm", "zero-channels", "no-fmt", "no-data"])
def test_errors_name_file_and_reason(data: bytes, why: str) -> None:
    with pytest.raises(WavError, match="^" + re.escape(f"bad.wav: {why}")):
        parse_wav(data, "bad.wav")


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(WavError, match="nope.wav: cannot read"):
        load_wav(tmp_path / "nope.wav")


def test_player_frames_end_and_repeat() -> None:
    audio = Audio(s16(list(range(400))))
    player = WavPlayer(audio, repeat=2)
    frames = []
    while (frame := player.read("PCMU")) is not None:
        frames.append(frame)
    assert len(frames) == 6 and player.done and player.read("PCMU") is None
    payload, pcm = frames[2]
    assert len(payload) == 160 and pcm == s16(list(range(320, 400))) + bytes(160)
    assert payload[80:] == b"\xff" * 80  # padded with PCMU silence
    assert frames[3] == frames[0]
    assert frames[0][0] == g711.encode(frames[0][1], "PCMU")


def test_repair_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    frames = bytes(range(256)) * 10  # 2560 bytes of stereo 16-bit
    # the header was patched when 1024 bytes were written, then the process died mid-frame
    path.write_bytes(wav_header(1024) + frames + b"\x01\x02\x03")
    assert repair_wav(path) == 2560
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getnframes()) == (2, 640)
        assert w.readframes(640) == frames


def test_repair_header_with_zero_sizes(tmp_path: Path) -> None:
    path = tmp_path / "fresh.wav"
    path.write_bytes(wav_header(0) + bytes(640))
    assert repair_wav(path) == 640
    assert path.read_bytes()[4:8] == struct.pack("<I", 36 + 640)


def test_repair_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(b"junk")
    with pytest.raises(WavError, match="junk.wav"):
        repair_wav(path)


def test_hostile_rate_cannot_blow_up_the_conversion() -> None:
    """A header claiming 1000 Hz makes each byte 8 output samples: refused by duration before converting."""
    data = riff(1, 1, 1000, 8, bytes(1_000_000))  # 1000 s once at 8 kHz: 8 M samples, ~0.5 GB as floats
    with pytest.raises(WavError, match=r"^bad.wav: too long \(1000 s; at most 600 s\)"):
        parse_wav(data, "bad.wav")


def test_oversized_file_refused_reading_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "huge.wav"
    path.write_bytes(wav_header(0, channels=1))
    os.truncate(path, MAX_WAV_BYTES + 1)  # sparse; the header could claim any size
    with pytest.raises(WavError, match=re.escape(f"{path}: too large")):
        load_wav(path)


def test_prompt_without_samples_is_an_error() -> None:
    """An empty prompt would 'play' in no time: a talk-down recorded as played, nothing heard."""
    with pytest.raises(WavError, match="^empty.wav: no audio"):
        parse_wav(riff(1, 1, 8000, 16, b""), "empty.wav")
