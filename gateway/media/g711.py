"""G.711 PCMU (mu-law) and PCMA (A-law), table driven (ITU-T G.711).

The tables are built once at import from the reference algorithm (the Sun
``g711.c`` code that CPython's ``audioop`` also uses), so results are
bit-identical to ``audioop.lin2ulaw``/``ulaw2lin`` and friends, which left the
stdlib in Python 3.13.

Linear audio is signed 16-bit little-endian (``bytes``, 2 bytes a sample);
G.711 is one byte a sample.  Decoding uses two ``bytes.translate`` tables (low
and high byte of each sample) interleaved by slice assignment, so a 20 ms frame
decodes in about a microsecond without per-sample Python code.  Encoding is a
per-sample table lookup: used for prompts, which are encoded once per codec.
PCMU<->PCMA transcoding is a single 256-byte ``translate``.
"""

from __future__ import annotations

import sys
from array import array

from .errors import MediaError

#: Codec names this module handles, as they appear in SDP ``a=rtpmap``.
CODECS = ("PCMU", "PCMA")

#: Digital-silence byte for each codec (PCMU 0xFF decodes to 0, PCMA 0xD5 to +8: A-law has no zero).
SILENCE_BYTE = {"PCMU": 0xFF, "PCMA": 0xD5}

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def ulaw_from_linear(sample: int) -> int:
    """Encode one signed 16-bit sample to mu-law (G.711 §2, 14-bit input as in ``audioop``)."""
    pcm = sample >> 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _segment(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def ulaw_to_linear(code: int) -> int:
    """Decode one mu-law byte to a signed 16-bit sample."""
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def alaw_from_linear(sample: int) -> int:
    """Encode one signed 16-bit sample to A-law (G.711 §3, 13-bit input as in ``audioop``)."""
    pcm = sample >> 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _segment(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1 if seg < 2 else pcm >> seg) & 0x0F
    return aval ^ mask


def alaw_to_linear(code: int) -> int:
    """Decode one A-law byte to a signed 16-bit sample."""
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _build_tables() -> dict[str, tuple[bytes, bytes, bytes]]:
    """Per codec: (decode low-byte table, decode high-byte table, 64 KiB encode table)."""
    tables = {}
    for name, dec, enc in (("PCMU", ulaw_to_linear, ulaw_from_linear), ("PCMA", alaw_to_linear, alaw_from_linear)):
        values = [dec(c) & 0xFFFF for c in range(256)]
        lo = bytes(v & 0xFF for v in values)
        hi = bytes(v >> 8 for v in values)
        # index: the sample as an unsigned 16-bit value
        encode = bytes(enc(i - 0x10000 if i & 0x8000 else i) for i in range(0x10000))
        tables[name] = (lo, hi, encode)
    return tables


_TABLES = _build_tables()
_LITTLE = sys.byteorder == "little"

#: 256-byte ``translate`` tables for transcoding.
ULAW_TO_ALAW = bytes(_TABLES["PCMA"][2][ulaw_to_linear(c) & 0xFFFF] for c in range(256))
ALAW_TO_ULAW = bytes(_TABLES["PCMU"][2][alaw_to_linear(c) & 0xFFFF] for c in range(256))
_TRANSCODE = {("PCMU", "PCMA"): ULAW_TO_ALAW, ("PCMA", "PCMU"): ALAW_TO_ULAW}


def _tables(codec: str) -> tuple[bytes, bytes, bytes]:
    try:
        return _TABLES[codec]
    except KeyError:
        raise MediaError(f"unsupported codec {codec!r} (G.711 only: PCMU, PCMA)") from None


def decode_tables(codec: str) -> tuple[bytes, bytes]:
    """The two ``translate`` tables (low byte, high byte of each 16-bit sample) that decode ``codec``."""
    lo, hi, _ = _tables(codec)
    return lo, hi


def decode(payload: bytes, codec: str) -> bytes:
    """G.711 bytes -> signed 16-bit little-endian linear audio (twice as long)."""
    lo, hi, _ = _tables(codec)
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(lo)
    out[1::2] = payload.translate(hi)
    return bytes(out)


def encode(pcm: bytes, codec: str) -> bytes:
    """Signed 16-bit little-endian linear audio -> G.711 bytes (half as long)."""
    table = _tables(codec)[2]
    if len(pcm) % 2:
        raise MediaError("linear audio must hold whole 16-bit samples")
    samples = array("H")
    samples.frombytes(pcm)
    if not _LITTLE:
        samples.byteswap()
    return bytes(map(table.__getitem__, samples))


def transcode(payload: bytes, source: str, target: str) -> bytes:
    """Re-encode G.711 ``payload`` from ``source`` to ``target`` codec (identity when equal)."""
    if source == target:
        return payload
    return payload.translate(transcode_table(source, target))


def transcode_table(source: str, target: str) -> bytes:
    """The 256-byte ``translate`` table from ``source`` to ``target`` (both PCMU/PCMA, different)."""
    try:
        return _TRANSCODE[(source, target)]
    except KeyError:
        raise MediaError(f"cannot transcode {source!r} to {target!r}") from None


def silence(codec: str, samples: int = 160) -> bytes:
    """``samples`` bytes of G.711 digital silence in ``codec`` (160 = 20 ms at 8 kHz)."""
    try:
        return bytes((SILENCE_BYTE[codec],)) * samples
    except KeyError:
        raise MediaError(f"unsupported codec {codec!r} (G.711 only: PCMU, PCMA)") from None
