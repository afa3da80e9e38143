"""Errors of the media plane.

Rules (after h11 ``_util.py`` and sippy ``SdpParseError``):

* ``MediaError`` is the root of every exception :mod:`gateway.media` raises.
* An error that the call layer turns into a SIP response carries ``status`` and
  ``reason`` (a bad or unacceptable SDP body becomes ``488 Not Acceptable Here``).
* Silence, loss and peers that vanish are not exceptions: they are events and
  statistics.
"""

from __future__ import annotations


class MediaError(Exception):
    """Root of every exception raised by :mod:`gateway.media`."""


class SdpError(MediaError):
    """An SDP problem the call layer answers with a SIP status (``status``, ``reason``)."""

    def __init__(self, message: str, status: int = 488, reason: str = "Not Acceptable Here") -> None:
        super().__init__(message)
        #: SIP status code to answer the INVITE/UPDATE with.
        self.status = status
        #: Reason phrase for that status.
        self.reason = reason


class SdpParseError(SdpError):
    """The SDP body is malformed (RFC 4566 grammar)."""


class SdpNegotiationError(SdpError):
    """Offer/answer failed (RFC 3264): no audio stream, or no codec in common."""


class RtpError(MediaError):
    """An RTP/RTCP packet or telephone-event payload is malformed."""


class WavError(MediaError):
    """A WAV file cannot be read or converted; the message names the file and why."""


class PortsExhaustedError(MediaError):
    """No free even RTP port (with RTCP on port+1) is left in the configured range."""
