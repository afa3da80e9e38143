"""G.711 tables against the ITU reference as implemented by stdlib audioop (3.11/3.12)."""

from __future__ import annotations

import random
import warnings

import pytest

from gateway.media import g711
from gateway.media.errors import MediaError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13+ without audioop-lts
        audioop = None

needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop not available")
ALL_CODES = bytes(range(256))
ALL_SAMPLES = b"".join(i.to_bytes(2, "little", signed=True) for i in range(-32768, 32768))


@needs_audioop
def test_decode_every_code_matches_audioop() -> None:
    assert g711.decode(ALL_CODES, "PCMU") == audioop.ulaw2lin(ALL_CODES, 2)
    assert g711.decode(ALL_CODES, "PCMA") == audioop.alaw2lin(ALL_CODES, 2)


@needs_audioop
def test_encode_every_sample_matches_audioop() -> None:
    assert g711.encode(ALL_SAMPLES, "PCMU") == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert g711.encode(ALL_SAMPLES, "PCMA") == audioop.lin2alaw(ALL_SAMPLES, 2)


@needs_audioop
def test_transcode_tables_match_decode_then_encode() -> None:
    assert g711.transcode(ALL_CODES, "PCMU", "PCMA") == audioop.lin2alaw(audioop.ulaw2lin(ALL_CODES, 2), 2)
    assert g711.transcode(ALL_CODES, "PCMA", "PCMU") == audioop.lin2ulaw(audioop.alaw2lin(ALL_CODES, 2), 2)


def test_known_values() -> None:
    # ITU-T G.711 reference points
    assert g711.ulaw_to_linear(0xFF) == 0 and g711.ulaw_to_linear(0x00) == -32124
    assert g711.ulaw_to_linear(0x80) == 32124
    assert g711.alaw_to_linear(0xD5) == 8 and g711.alaw_to_linear(0x55) == -8
    assert g711.alaw_to_linear(0xAA) == 32256
    assert g711.ulaw_from_linear(0) == 0xFF and g711.alaw_from_linear(0) == 0xD5


def test_round_trip_is_idempotent_after_one_pass() -> None:
    rng = random.Random(4)
    pcm = bytes(rng.getrandbits(8) for _ in range(3200))
    for codec in g711.CODECS:
        once = g711.decode(g711.encode(pcm, codec), codec)
        assert g711.decode(g711.encode(once, codec), codec) == once


def test_silence_and_transcoding_of_silence() -> None:
    assert g711.silence("PCMU") == b"\xff" * 160
    assert g711.silence("PCMA", 2) == b"\xd5\xd5"
    assert g711.transcode(g711.silence("PCMU"), "PCMU", "PCMA") == g711.silence("PCMA")
    assert g711.transcode(b"\x01\x02", "PCMU", "PCMU") == b"\x01\x02"


def test_errors() -> None:
    with pytest.raises(MediaError):
        g711.decode(b"\x00", "G729")
    with pytest.raises(MediaError):
        g711.encode(b"\x00", "PCMU")
    with pytest.raises(MediaError):
        g711.transcode(b"\x00", "PCMU", "G722")
    with pytest.raises(MediaError):
        g711.silence("opus")
