"""The media plane: SDP offer/answer, RTP/RTCP, G.711, prompts, bridging and evidential recording.

Pure modules (no asyncio, socket or time): :mod:`.sdp`, :mod:`.rtp`, :mod:`.rtcp`,
:mod:`.dtmf`, :mod:`.g711`, :mod:`.clock`, :mod:`.aligner`.  File I/O: :mod:`.wav`,
:mod:`.ports` (player, recorder, disk-writer thread).  Shells import explicitly:
``from gateway.media.session import MediaEngine`` and ``from gateway.media.ports import WavPlayer``.
"""

from .aligner import LEFT, RIGHT
from .errors import (
    MediaError,
    PortsExhaustedError,
    RtpError,
    SdpError,
    SdpNegotiationError,
    SdpParseError,
    WavError,
)
from .sdp import NegotiatedMedia, SessionDescription, accept_answer, answer, build_offer, parse_sdp
from .wav import Audio, load_wav, parse_wav, repair_wav

__all__ = [
    "LEFT", "RIGHT", "MediaError", "PortsExhaustedError", "RtpError", "SdpError", "SdpNegotiationError",
    "SdpParseError", "WavError", "NegotiatedMedia",
    "SessionDescription", "accept_answer", "answer", "build_offer", "parse_sdp", "Audio", "load_wav",
    "parse_wav", "repair_wav",
]
