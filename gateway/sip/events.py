"""Events the sans-IO :class:`~gateway.sip.endpoint.SipEndpoint` returns (past tense, h2 style)."""

from __future__ import annotations

from dataclasses import dataclass

from .message import Request, Response

#: Where a message came from or goes to: ``(transport, host, port)``, transport "UDP" or "TCP".
Peer = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request arrived; answer it with ``send_response(transaction, ...)``.

    ``transaction`` is None for an ACK to a 2xx (it has no transaction, §17.1.1.3)
    and for a CANCEL (answered by the endpoint itself, see :class:`CancelReceived`).
    """

    request: Request
    source: Peer
    transaction: str | None


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched a pending INVITE server transaction (already answered 200, §9.2).

    The TU should now answer the INVITE with 487.
    """

    request: Request
    source: Peer
    invite_transaction: str


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for one of our client transactions (retransmitted 2xx included)."""

    response: Response
    transaction: str
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """A client transaction got no final response (Timer B/F), a server INVITE got no
    ACK (Timer H, or 64*T1 after a 2xx), or the transport failed."""

    transaction: str
    request: Request
    transport_error: bool = False


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A datagram or frame was refused: unparseable, too large, or failing §8.2 checks.

    ``status`` is the response sent (0 when nothing could be sent back).
    """

    source: Peer
    status: int
    reason: str


Event = RequestReceived | CancelReceived | ResponseReceived | TransactionTimedOut | MessageRejected
