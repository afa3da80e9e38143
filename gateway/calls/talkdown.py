"""Talk-down: the gateway calls a help point to broadcast a recorded warning (pure).

An operator who sees anti-social behaviour on CCTV asks (API or CLI) for warning
N to be played T times through a help point's speaker.  Intercoms auto-answer;
the gateway plays the warning T times, then hangs up.  The attempt and its
outcome become a record like any activation (``kind="talkdown"``).

Same contract as :class:`~gateway.calls.call.Call`: ``start``/``handle``/
``handle_timer`` return actions; the runner executes them.

The INVITE says ``Supported: 100rel``: an intercom configured to require reliable provisional responses
(PJSIP's PJSUA_100REL_MANDATORY) would otherwise refuse it with 421.  Each reliable 1xx it sends
(``Require: 100rel`` with a new ``RSeq``) gets a PRACK in the early dialog (RFC 3262 §4); a retransmitted
one (an ``RSeq`` already PRACKed) gets nothing more: our PRACK's own transaction retransmits it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.media.errors import SdpError
from gateway.sip.dialog import Dialog
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import Peer
from gateway.sip.message import Headers, Request, build_response
from gateway.sip.prack import OPTION_TAG, ReliableProvisionalAcks

from . import events as ce
from .call import CallConfig, Leg, LegState, Negotiator
from .metadata import HelpPointInfo

#: Seconds to wait for the intercom to answer before giving up.
ANSWER_TIMEOUT = 30.0
#: Seconds a talk-down may last at most, whatever happens.
MAX_DURATION = 300.0


class Talkdown:
    """One outgoing warning broadcast to one help point."""

    transaction: str | None = None

    def __init__(self, activation_id: str, help_point: HelpPointInfo, contact: str, dest: Peer, warning: int,
                 times: int, negotiator: Negotiator, config: CallConfig, token: Callable[[], str],
                 wall: datetime, requested_by: str = "api") -> None:
        self.id = activation_id
        self.help_point = help_point
        self.warning = warning
        self.times = times
        self.negotiator = negotiator
        self.config = config
        self.wall = wall
        self.requested_by = requested_by
        self.local_tag = token()
        self.invite = Request("INVITE", contact, Headers([
            ("Max-Forwards", "70"),
            ("From", f'"Control room" <sip:talkdown@{config.host}>;tag={self.local_tag}'),
            ("To", f"<sip:{help_point.sip_user}@{config.host}>"),
            ("Call-ID", f"{activation_id}@{config.host}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{config.contact}>"),
            ("Subject", f"Warning {warning}"),
            ("Supported", OPTION_TAG),
            ("Content-Type", "application/sdp"),
        ]), negotiator.operator_offer())
        self.leg = Leg("hp", help_point.id, self.invite, dest)
        self.legs = {"hp": self.leg}
        self.dialog: Dialog | None = None
        self.plays = 0
        self.started = 0.0
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.outcome: str | None = None
        self.ended_by: str | None = None
        self.deadline: float | None = None
        self._bye_sent = False
        #: PRACKs for the intercom's reliable 1xx (RFC 3262 §4).
        self._pracks = ReliableProvisionalAcks(self.invite, config.contact)
        self.timeline: list[dict[str, Any]] = []
        self._actions: list[ce.CallAction] = []

    # The runner treats us like a Call for these.
    hp_answered_at = None
    bridged = None

    def _log(self, now: float, event: str, **detail: Any) -> None:
        self.timeline.append({"t": round(now - self.started, 3), "event": event, **detail})

    def _flush(self) -> list[ce.CallAction]:
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        """The answer timeout, then the overall cap."""
        return self.deadline if self.ended_at is None else None

    def start(self, now: float) -> list[ce.CallAction]:
        """Send the INVITE to the help point."""
        self.started = now
        self.deadline = now + ANSWER_TIMEOUT
        self._log(now, "talkdown-requested", help_point=self.help_point.id, warning=self.warning,
                  times=self.times, by=self.requested_by)
        self._actions = [ce.SendRequest("hp", self.invite, self.leg.dest)]
        return self._flush()

    def handle_timer(self, now: float) -> list[ce.CallAction]:
        """No answer in time, or the talk-down ran too long."""
        if self.deadline is None or now < self.deadline or self.ended_at is not None:
            return []
        if self.answered_at is None:
            self._actions.append(ce.SendCancel("hp", 'SIP;cause=480;text="Talk-down not answered"'))
            self._end(now, "unanswered", "gateway")
        else:
            self._bye(now, "maximum duration")
        return self._flush()

    def handle(self, event: ce.CallEvent, now: float) -> list[ce.CallAction]:
        """Responses from the intercom, its BYE, prompt ends."""
        if isinstance(event, ce.LegResponded) and event.method == "INVITE":
            self._response(event, now)
        elif isinstance(event, ce.LegTimedOut) and event.method == "INVITE" and self.answered_at is None:
            self._log(now, "talkdown-failed", status=408, transport_error=event.transport_error)
            self._end(now, "failed", None)
        elif isinstance(event, ce.InDialogRequest):
            if event.transaction is not None and event.request.method != "ACK":
                self._actions.append(ce.SendResponse(event.transaction, build_response(event.request, 200)))
            if event.request.method == "BYE":
                self._log(now, "hp-bye")
                self._end(now, "interrupted" if self.plays < self.times else "played", "hp")
        elif isinstance(event, ce.GatewayStopping) and self.ended_at is None:
            self._log(now, "gateway-stopping")
            if self.answered_at is None:
                self._actions.append(ce.SendCancel("hp", 'SIP;cause=503;text="Gateway shutting down"'))
                self._end(now, "interrupted", "gateway")
            else:
                self._bye(now, "Gateway shutting down", outcome="interrupted")
        elif isinstance(event, ce.PromptDone) and self.ended_at is None:
            self.plays += 1
            self._log(now, "warning-played", number=self.warning, play=self.plays)
            if self.plays < self.times:
                self._actions.append(ce.PlayPrompt("op", f"warning-{self.warning}", report=True))
            else:
                self._bye(now, "warnings played")
        return self._flush()

    def _response(self, event: ce.LegResponded, now: float) -> None:
        response = event.response
        if response.status < 200:
            if self.leg.state is LegState.CALLING:
                self.leg.state = LegState.EARLY
                self._log(now, "talkdown-ringing", status=response.status)
            prack = self._pracks.receive(response) if self.ended_at is None else None
            if prack is not None:
                self._actions.append(ce.SendRequest("hp", prack, self.leg.dest))
            elif self._pracks.malformed:
                self._log(now, "talkdown-bad-1xx", why=self._pracks.malformed)
            return
        if response.status >= 300:
            if self.ended_at is None:
                self._log(now, "talkdown-failed", status=response.status, reason=response.reason)
                self._end(now, "failed", None)
            return
        try:
            if self.dialog is None:
                # After PRACKs in the early dialog our CSeq goes on from theirs (§12.2.1.1: it only rises).
                self.dialog = self._pracks.confirmed(Dialog.from_uac(self.invite, response, self.config.contact))
        except RemoteProtocolError as exc:
            # Neither ACK nor BYE can be sent without a dialog: the attempt is over.
            self._log(now, "talkdown-bad-answer", why=str(exc))
            self._end(now, "failed", None)
            return
        _, ack = self.dialog.create_request("ACK", cseq=1)
        self._actions.append(ce.SendAck(ack, self.leg.dest))
        if self.answered_at is not None:
            return
        if self.ended_at is not None:  # answered after we gave up (one BYE: the rest are retransmissions)
            if not self._bye_sent:
                self._bye(now, "too late")
            return
        try:
            negotiated = self.negotiator.accept_operator_answer(response.body)
        except SdpError as exc:
            self._log(now, "talkdown-bad-sdp", why=str(exc))
            self._bye(now, "no common codec", outcome="failed")
            return
        self.answered_at = now
        self.leg.state = LegState.ANSWERED
        self.deadline = now + MAX_DURATION
        self._log(now, "talkdown-answered")
        self._actions.append(ce.ConnectMedia("op", negotiated))
        self._actions.append(ce.PlayPrompt("op", f"warning-{self.warning}", report=True))

    def _bye(self, now: float, why: str, outcome: str | None = None) -> None:
        if self.dialog is not None:
            self.dialog, bye = self.dialog.create_request("BYE", (("Reason", f'SIP;cause=200;text="{why}"'),))
            self._actions.append(ce.SendRequest("hp", bye, self.leg.dest))
            self._bye_sent = True
        self._end(now, outcome or ("played" if self.plays >= self.times else "interrupted"), "gateway")

    def _end(self, now: float, outcome: str, by: str | None) -> None:
        if self.ended_at is not None:
            return
        self.ended_at = now
        self.outcome = outcome
        self.ended_by = by
        self._log(now, "ended", outcome=outcome, by=by)
        self._actions.append(ce.StopMedia())
        self._actions.append(ce.CallEnded(self.summary()))

    def summary(self) -> ce.CallSummary:
        """The talk-down's record."""
        end = self.ended_at if self.ended_at is not None else self.started
        return ce.CallSummary(
            activation_id=self.id, help_point=self.help_point.id, started_at=self.wall.timestamp(),
            outcome=f"talkdown-{self.outcome or 'in-progress'}", answered_by=None, answered_room=None,
            ended_by=self.ended_by, duration=round(end - self.started, 3),
            talk_time=round(end - self.answered_at, 3) if self.answered_at is not None else 0.0,
            dialplan="", dialplan_version=0, timeline=list(self.timeline), kind="talkdown",
        )
