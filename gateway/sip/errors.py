"""Errors of the SIP core.

Rules (after h11 ``_util.py``):

* ``SipError`` is the root of every exception this package raises.
* ``RemoteProtocolError`` means the *peer* sent something we cannot accept.  It
  carries the SIP status and reason phrase a server should answer with
  (``error_status_hint`` in h11), so the shell can turn it into a response
  without guessing.
* ``LocalProtocolError`` means *we* tried to do something the protocol forbids
  (a bug on our side, or a caller misusing the API).

Timeouts and transport failures are not exceptions: they are events.
"""

from __future__ import annotations


class SipError(Exception):
    """Root of every exception raised by :mod:`gateway.sip`."""


class RemoteProtocolError(SipError):
    """The peer sent a message we cannot accept.

    ``status`` and ``reason`` are what a UAS answers with when the message is
    routable (RFC 3261 §8.2, §21.4).
    """

    def __init__(self, message: str, status: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(message)
        #: SIP status code a server should answer with.
        self.status = status
        #: Reason phrase for that status.
        self.reason = reason


class LocalProtocolError(SipError):
    """We tried to build or send something the protocol does not allow."""
