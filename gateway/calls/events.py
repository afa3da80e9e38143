"""The one event vocabulary of a call, and the actions a call asks its runner to do.

Events are past tense (what happened on a leg), actions imperative (what the
runner must do on the wire or in the media plane).  ``side`` is ``"hp"`` for the
help point's leg and a leg id (``"<position>#<n>"``) for an operator leg.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from gateway.sip.events import Peer
from gateway.sip.message import Request, Response

# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegResponded:
    """A response arrived for the INVITE (or an in-dialog request) of operator leg ``leg``."""

    leg: str
    response: Response
    method: str = "INVITE"


@dataclass(frozen=True, slots=True)
class LegTimedOut:
    """The INVITE (or in-dialog request) of ``leg`` got no final response, or its transport failed."""

    leg: str
    transport_error: bool
    method: str = "INVITE"


@dataclass(frozen=True, slots=True)
class CallerCancelled:
    """The help point sent CANCEL before we answered."""


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """A request inside a dialog: BYE, INFO, UPDATE, re-INVITE, ACK, OPTIONS."""

    side: str
    request: Request
    transaction: str | None


@dataclass(frozen=True, slots=True)
class DigitDetected:
    """An RFC 4733 digit arrived from ``side`` (detected by the media plane), sent from ``source``
    (the ``(host, port)`` the leg had latched onto, when known)."""

    side: str
    digit: str
    source: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class PromptDone:
    """A prompt the call asked for finished playing on ``side``."""

    side: str
    prompt: str


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """Our 200 to the help point's INVITE was retransmitted for 64*T1 and never ACKed."""


@dataclass(frozen=True, slots=True)
class MediaSilence:
    """The media plane saw ``side`` go silent (``silent=True``) or resume."""

    side: str
    silent: bool


@dataclass(frozen=True, slots=True)
class GatewayStopping:
    """The gateway is shutting down and its drain time is over: the call ends now, on the wire too."""


CallEvent = (
    LegResponded | LegTimedOut | CallerCancelled | InDialogRequest | DigitDetected | PromptDone | MediaSilence
    | AckTimedOut | GatewayStopping
)

# -- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResponse:
    """Answer server transaction ``transaction``."""

    transaction: str
    response: Response


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Start a client transaction for ``request`` to ``dest`` on behalf of ``leg``."""

    leg: str
    request: Request
    dest: Peer


@dataclass(frozen=True, slots=True)
class SendCancel:
    """CANCEL the pending INVITE of ``leg`` with an RFC 3326 ``reason``."""

    leg: str
    reason: str


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send the ACK for a 2xx (outside any transaction)."""

    request: Request
    dest: Peer


@dataclass(frozen=True, slots=True)
class ConnectMedia:
    """Point ``side``'s media (``"hp"`` or ``"op"``) at the negotiated remote.

    ``switch``: the operator side moves to another answered phone while the previous one may still be
    sending RTP to the same port; latch only onto the new phone's announced address for a moment.
    """

    side: str
    negotiated: Any
    switch: bool = False


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play ``prompt`` to ``side`` (``"hp"``/``"op"``); ``report`` asks for a PromptDone."""

    side: str
    prompt: str
    report: bool = False


@dataclass(frozen=True, slots=True)
class BridgeMedia:
    """Relay media between the help point and the operator (and record it)."""


@dataclass(frozen=True, slots=True)
class StopMedia:
    """Release the call's media (sockets, players, recorder is sealed)."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over: the runner forgets it and hands the summary to the sink."""

    summary: CallSummary


@dataclass(frozen=True)
class CallSummary:
    """The activation as a value: one help-point press, however many legs."""

    activation_id: str
    help_point: str
    started_at: float
    """Wall-clock epoch seconds of the INVITE."""
    outcome: str
    """answered, unanswered, abandoned, failed (488, internal error...)."""
    answered_by: str | None
    answered_room: str | None
    ended_by: str | None
    """hp, operator, gateway (session timer, error) or None when never answered."""
    duration: float
    """Seconds from INVITE to the end."""
    talk_time: float
    """Seconds bridged to an operator."""
    dialplan: str
    dialplan_version: int
    timeline: list[dict[str, Any]] = field(default_factory=list)
    silent: bool = False
    """The help point sent no audio for a while (a silent call is never dropped: triage sees it)."""
    routing: list[Any] = field(default_factory=list)
    """The dialplan's own timeline (rooms rung, closed rooms skipped, failovers with causes)."""
    classification: str | None = None
    """Triage by the operator's keypad at the end of the call (``#1`` genuine ... see call.py)."""
    kind: str = "activation"
    """``activation`` (a press) or ``talkdown`` (a warning broadcast the gateway placed)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (shallow: the timeline entries are never mutated once ended)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


CallAction = (
    SendResponse | SendRequest | SendCancel | SendAck | ConnectMedia | PlayPrompt | BridgeMedia | StopMedia
    | CallEnded
)
