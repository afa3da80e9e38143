"""Errors of the registrar package: one root, :class:`RegistrarError`.

Peer mistakes never escape :meth:`gateway.registrar.Registrar.handle_register` as exceptions;
they become SIP responses.  The exceptions below are raised by the lower-level pure helpers
(:mod:`gateway.registrar.digest`) and carry the SIP status they map to (sippy ``SdpParseError.code``).
"""

from __future__ import annotations


class RegistrarError(Exception):
    """Root of every exception raised by :mod:`gateway.registrar`."""

    status: int = 500
    reason: str = "Server Internal Error"


class DigestParseError(RegistrarError, ValueError):
    """An ``Authorization`` header value that is not a well-formed Digest credential."""

    status = 400
    reason = "Bad Request"
