"""One help-point activation as a pure back-to-back user agent.

Rules:

* ``Call`` is sans-IO: every method takes ``now`` (monotonic) and returns a
  list of actions (:mod:`gateway.calls.events`).  The runner executes them.
* The help point's leg is ours: we answer it (183 with SDP at once, so the
  caller hears the prompt as early media; 200 once an operator is bridged).
  Operator legs are new dialogs with their own Call-ID, From tag and CSeq.
* Routing decisions belong to the dialplan :class:`~gateway.dialplan.engine.Plan`:
  the call turns SIP outcomes into plan events and plan actions into SIP.
* Nothing here ends a call because of silence.  A call ends by BYE from either
  side, CANCEL from the help point, the session timer (RFC 4028) proving the
  help point is gone, or the plan's final message.
* Every leg, answer, failure and end lands in the timeline.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.dialplan import engine as plan_ev
from gateway.dialplan.model import Cause, cause_for_status
from gateway.media.errors import SdpError
from gateway.records.triage import DTMF_CLASSIFICATION
from gateway.sip.dialog import Dialog
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import Peer
from gateway.sip.message import Headers, Request, Response, build_response
from gateway.sip.prack import OPTION_TAG, ReliableProvisionalAcks, ReliableProvisionals, requires_100rel

from . import events as ce
from .metadata import HelpPointInfo, operator_headers
from .upkeep import SessionUpkeep

#: Digits that follow ``*`` to play a warning (``*1`` -> warning-1).
WARNING_DIGITS = ("1", "2")

#: Triage by the operator's keypad: ``#`` then a digit classifies the activation (one table, the records').
CLASSIFY_DIGITS = DTMF_CLASSIFICATION

#: ``locate(position_id) -> [(contact URI, destination)]`` from the registrar or static config.
Locator = Callable[[str], list[tuple[str, Peer]]]


class Negotiator(Protocol):
    """Pure SDP offer/answer for one call (built by the runner with the call's media ports)."""

    def answer_help_point(self, offer: bytes) -> tuple[bytes, Any]:
        """Our answer to the help point's offer and the negotiated media; raises SdpError (``.status``)."""
        ...

    def operator_offer(self) -> bytes:
        """The offer sent to every operator leg."""
        ...

    def accept_operator_answer(self, answer: bytes) -> Any:
        """The negotiated media from an operator's answer; raises SdpError (``.status``)."""
        ...

    def answer_offer(self, side: str, offer: bytes) -> tuple[bytes, Any]:
        """Answer a new offer (re-INVITE/UPDATE) from ``side`` (``hp``/``op``) on that side's port."""
        ...

    def offer_for(self, side: str, direction: str) -> bytes:
        """A new offer to ``side`` (its port, a new SDP version) with ``direction`` (hold: ``sendonly``)."""
        ...

    def accept_answer_for(self, side: str, offer: bytes, answer: bytes) -> Any:
        """The negotiated media of ``side`` from the answer to ``offer``."""
        ...


@dataclass(frozen=True)
class CallConfig:
    """What a call needs to know about the gateway."""

    #: Host (and port) written in our From/To/Contact URIs.
    host: str
    #: Our Contact URI for both legs.
    contact: str
    #: Base URL of the activation record link sent to operators (Call-Info).
    record_url: str = "http://127.0.0.1:8080/api/activations/"
    #: RFC 4028 session interval asked of the help point leg; 0 disables.
    session_expires: int = 1800
    #: Smallest session interval we accept (Min-SE).
    min_se: int = 90
    #: RFC 3261 T1 in seconds: the first retransmission interval of a reliable 183 (RFC 3262 §3).
    t1: float = 0.5


class LegState(enum.Enum):
    """Where an operator leg is."""

    CALLING = "calling"
    EARLY = "early"
    ANSWERED = "answered"
    BRIDGED = "bridged"
    ENDED = "ended"


@dataclass
class Leg:
    """One outgoing INVITE to one contact of one position."""

    id: str
    target: str
    invite: Request
    dest: Peer
    state: LegState = LegState.CALLING
    dialog: Dialog | None = None
    cancel_reason: str | None = None
    #: The INVITE client transaction key (set by the runner when it is sent).
    invite_tx: str | None = None
    #: The media its answer negotiated (what the operator side's RTP is pointed at for this leg).
    media: Any = None
    #: When its INVITE was sent (monotonic).
    started_at: float = 0.0
    #: PRACKs for the phone's reliable 1xx (RFC 3262 §4; set when the INVITE is built).
    pracks: ReliableProvisionalAcks | None = None


_CANCEL_REASONS = {
    "timeout": 'SIP;cause=480;text="Ring timeout"',
    "connect-timeout": 'SIP;cause=408;text="No response within connect timeout"',
    "unconfirmed": 'SIP;cause=480;text="Answer not confirmed"',
    "answered-elsewhere": 'SIP;cause=200;text="Call completed elsewhere"',
    "caller-hung-up": 'SIP;cause=487;text="Caller hung up"',
}
#: ``locate`` key of a dialplan ``dial`` step's number (position ids never contain ``:``).
DIAL_PREFIX = "dial:"
#: Methods the help point may send in its dialog (the Allow of our 2xx and 405s).
HP_ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK"
#: Reason of the BYEs and CANCELs that end calls still up when the gateway stops.
_STOPPING_REASON = 'SIP;cause=503;text="Gateway shutting down"'


#: Seconds after its INVITE a device that has sent no response at all is taken for a stale binding, once
#: another device of its position has failed (2*T1: time for one retransmission of our INVITE).
STALE_AFTER = 1.0

#: Plan-ended legs that count as a failure of their room, as ``"status text"`` for History-Info/Reason.
_PLAN_FAILURES = {
    "timeout": "480 Ring timeout",
    "connect-timeout": "408 No response within connect timeout",
    "unconfirmed": "480 Answer not confirmed",
}


class Call(SessionUpkeep):
    """The B2BUA for one activation."""

    def __init__(
        self,
        activation_id: str,
        help_point: HelpPointInfo,
        invite: Request,
        transaction: str,
        source: Peer,
        plan: plan_ev.Plan,
        negotiator: Negotiator,
        locate: Locator,
        room_of: Callable[[str], str | None],
        config: CallConfig,
        token: Callable[[], str],
        wall: datetime,
        dialplan_version: int = 0,
    ) -> None:
        self.id = activation_id
        self.dialplan_version = dialplan_version
        self.help_point = help_point
        self.invite = invite
        self.transaction = transaction
        self.source = source
        self.plan = plan
        self.negotiator = negotiator
        self.locate = locate
        self.room_of = room_of
        self.config = config
        self.token = token
        self.wall = wall
        self.local_tag = token()
        self.hp_dialog: Dialog | None = None
        self.hp_answered_at: float | None = None
        self.hp_sdp = b""
        self.legs: dict[str, Leg] = {}
        self._leg_seq = 0
        self.failures: list[tuple[str, str]] = []  # (target, "486 Busy Here") for History-Info
        self.bridged: Leg | None = None
        #: The answered leg the operator side's media is pointed at (one RTP leg serves every operator).
        self._op_media: Leg | None = None
        #: The leg whose confirm digit the plan is handling (the one to bridge, not another answerer).
        self._digit_leg: Leg | None = None
        #: Positions whose answer must be confirmed (the plan asked once per position).
        self._confirm_targets: set[str] = set()
        #: Targets that are dialled numbers (``dial`` steps), not operator positions.
        self._dialled: set[str] = set()
        #: A device's failure held back while a sibling device is young and silent, by position.
        self._held_failures: dict[str, tuple[Leg, Cause, str, str]] = {}
        self._stale_check_at: float | None = None
        self.started: float = 0.0
        self.ended_at: float | None = None
        self.ended_by: str | None = None
        self.outcome: str | None = None
        self.timeline: list[dict[str, Any]] = []
        self.session_deadline: float | None = None
        #: When we refresh the session ourselves (help points without RFC 4028 support).
        self.refresh_at: float | None = None
        self._refresh_pending = False
        #: Offers we sent in a re-INVITE to pass hold on, by side, waiting for their answer.
        self._pending_offer: dict[str, bytes] = {}
        #: Whether each side holds the call (its last offer was sendonly/inactive).
        self._held: dict[str, bool] = {"hp": False, "op": False}
        self.silent = False
        self._last_digit = ""
        #: Set when the operator classifies the call from the keypad (``#`` + digit).
        self.classification: str | None = None
        self._actions: list[ce.CallAction] = []
        #: RFC 3262 on the help point's leg, when its INVITE requires 100rel (a help point that only
        #: *supports* it, as PJSIP does by default, gets the plain 183: reliability is the UAS's choice then).
        self._reliable: ReliableProvisionals | None = None
        if requires_100rel(invite):
            first_rseq = 1 + zlib.crc32(token().encode()) % (2**31 - 1)  # random (the token is), in range
            self._reliable = ReliableProvisionals(invite, first_rseq, config.t1)
        #: Our 200 to the help point, held until the PRACK of the reliable 183 (which carried our SDP).
        self._answer_held = False

    # -- time ------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        """Earliest of the plan's timers and the session timer."""
        reliable = self._reliable.get_timer() if self._reliable is not None else None
        times = [t for t in (self.plan.get_timer(), self.session_deadline, self.refresh_at, self._stale_check_at,
                             reliable) if t is not None]
        return min(times) if times and self.ended_at is None else None

    def handle_timer(self, now: float) -> list[ce.CallAction]:
        """Fire due timers."""
        self._actions = []
        reliable = self._reliable.get_timer() if self._reliable is not None else None
        if reliable is not None and now >= reliable:
            self._retransmit_reliable(now)
        elif self.session_deadline is not None and now >= self.session_deadline:
            self.session_deadline = None
            self._log(now, "session-timer-expired")
            self._hang_up_everything(now, by="gateway", reason='SIP;cause=408;text="Session timer expired"')
        elif self.refresh_at is not None and now >= self.refresh_at:
            self.refresh_at = None
            self._send_refresh(now)
        elif self._stale_check_at is not None and now >= self._stale_check_at:
            self._stale_check_at = None
            held, self._held_failures = self._held_failures, {}
            for leg, cause, detail, reason in held.values():
                self._device_failed(leg, cause, detail, reason, now, responded=True)
        else:
            pt = self.plan.get_timer()
            if pt is not None and now >= pt:
                self._run_plan(self.plan.handle_timer(now), now)
        return self._flush()

    def _flush(self) -> list[ce.CallAction]:
        out, self._actions = self._actions, []
        return out

    def _log(self, now: float, event: str, **detail: Any) -> None:
        self.timeline.append({"t": round(now - self.started, 3), "event": event, **detail})

    # -- start -------------------------------------------------------------------------------
    def start(self, now: float) -> list[ce.CallAction]:
        """Answer the help point with early media and start the dialplan."""
        self._actions = []
        self.started = now
        self._log(now, "offered", help_point=self.help_point.id, source=f"{self.source[1]}:{self.source[2]}")
        try:
            self.hp_sdp, negotiated = self.negotiator.answer_help_point(self.invite.body)
        except SdpError as exc:  # carries the SIP status (488 no common codec, 400 unreadable)
            self._log(now, "rejected", status=exc.status, why=str(exc))
            self._respond(exc.status, reason=exc.reason)
            self._finish(now, "failed", by="gateway")
            return self._flush()
        self.hp_dialog = Dialog.from_uas(self.invite, self.local_tag, self.config.contact)
        self._respond(183, body=self.hp_sdp, now=now)
        self._emit(ce.ConnectMedia("hp", negotiated))
        self._run_plan(self.plan.start(now, self.wall), now)
        return self._flush()

    def _respond(self, status: int, reason: str | None = None, body: bytes = b"",
                 headers: tuple[tuple[str, str], ...] = (), now: float = 0.0) -> None:
        extra = list(headers)
        if 100 < status < 300:
            extra.append(("Contact", f"<{self.config.contact}>"))
        if 200 <= status < 300:
            extra.append(("Allow", HP_ALLOW))
            extra.append(("Supported", "timer"))
            se = self._session_expires_header()
            if se:
                extra.append(("Session-Expires", se))
                extra.append(("Require", "timer"))
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = build_response(self.invite, status, reason, to_tag=self.local_tag, headers=extra, body=body)
        if self._reliable is not None:
            if status < 200:
                response = self._reliable.send(response, now)  # RFC 3262: Require: 100rel, RSeq
            else:
                self._reliable.stop()  # a final response ends the retransmissions of the 183
        self._emit(ce.SendResponse(self.transaction, response))

    def _answer_hp(self, now: float) -> None:
        """Our 200 (with the SDP of the 183) to the help point's INVITE; the call is answered."""
        self._answer_held = False
        self.hp_answered_at = now
        self._respond(200, body=self.hp_sdp)
        self._arm_session_timer(now)

    def _retransmit_reliable(self, now: float) -> None:
        """Send the reliable 183 again, or, 64*T1 without a PRACK, stop and carry on with the call.

        RFC 3262 §3 suggests rejecting the INVITE with a 5xx then; this gateway never does: no activation
        may be lost to a help point that required 100rel but never PRACKs.  A held 200 goes out now.
        """
        assert self._reliable is not None
        again = self._reliable.handle_timer(now)
        if again is not None:
            self._emit(ce.SendResponse(self.transaction, again))
        elif self._reliable.gave_up:
            self._log(now, "prack-missing", after=round(64 * self.config.t1, 3))
            if self._answer_held and self.ended_at is None:
                self._answer_hp(now)

    def _emit(self, action: ce.CallAction) -> None:
        self._actions.append(action)

    # -- the plan ---------------------------------------------------------------------------------
    def _run_plan(self, actions: list[plan_ev.Action], now: float) -> None:
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            queue.extend(self._plan_action(action, now))

    def _plan_action(self, action: plan_ev.Action, now: float) -> list[plan_ev.Action]:
        if isinstance(action, plan_ev.PlayPrompt):
            self._log(now, "prompt", prompt=action.prompt)
            self._emit(ce.PlayPrompt("hp", action.prompt))
        elif isinstance(action, plan_ev.PlayMessage):
            self._log(now, "message", prompt=action.prompt, final=action.final)
            self._emit(ce.PlayPrompt("hp", action.prompt, report=True))
        elif isinstance(action, plan_ev.RingTargets):
            return self._ring(action, now)
        elif isinstance(action, plan_ev.DialNumber):
            # A last-resort number: one leg, to its sip: URI or through the trunk, driven by the plan like a
            # ring (connect and ring timers, retries, the caller bridged when it answers).
            self._dialled.add(action.number)
            return self._ring(plan_ev.RingTargets((action.number,), action.number, "parallel", action.ring_timeout,
                                                  action.connect_timeout, action.attempt), now)
        elif isinstance(action, plan_ev.CancelTargets):
            failure = _PLAN_FAILURES.get(action.reason)
            for target in action.targets if failure else ():
                # The room failed because of our own timer: later rooms must hear why (History-Info).
                self.failures.append((target, failure))
            for target in action.targets:
                self._held_failures.pop(target, None)  # the plan is done with this ring of the position
            for leg in list(self.legs.values()):
                if leg.target in action.targets and leg is not self.bridged:
                    self._end_leg(leg, _CANCEL_REASONS[action.reason], now)
            if action.reason != "answered-elsewhere":  # that one is followed by the Bridge, which points it
                self._repoint_op_media(now)
        elif isinstance(action, plan_ev.RequireConfirm):
            self._confirm_targets.add(action.target)
            self._log(now, "confirm-requested", target=action.target, digit=action.digit, within=action.within)
            self._emit(ce.PlayPrompt("op", "confirm-operator"))
        elif isinstance(action, plan_ev.Bridge):
            self._bridge(action.target, now)
        elif isinstance(action, plan_ev.Done):
            self._plan_done(action, now)
        return []

    def _ring(self, action: plan_ev.RingTargets, now: float) -> list[plan_ev.Action]:
        follow: list[plan_ev.Action] = []
        for target in action.targets:
            self._held_failures.pop(target, None)  # a failure held from an earlier ring is not this one's
            dialled = target in self._dialled
            contacts = self.locate(DIAL_PREFIX + target if dialled else target)
            if not contacts:
                why = "no trunk for this number" if dialled else "no registered contact"
                self._log(now, "leg-unreachable", target=target, why=why)
                self.failures.append((target, f"480 {why.capitalize()}"))
                follow.extend(self.plan.handle(plan_ev.LegFailed(target, "unreachable", why), now))
                continue
            for uri, dest in contacts:
                self._leg_seq += 1
                leg_id = f"{target}#{self._leg_seq}"
                invite = self._operator_invite(target, uri, action)
                self.legs[leg_id] = Leg(leg_id, target, invite, dest, started_at=now,
                                        pracks=ReliableProvisionalAcks(invite, self.config.contact))
                self._log(now, "leg-started", leg=leg_id, target=target, room=self.room_of(target),
                          contact=uri, attempt=action.attempt)
                self._emit(ce.SendRequest(leg_id, invite, dest))
        return follow

    def _operator_invite(self, target: str, uri: str, action: plan_ev.RingTargets) -> Request:
        headers: list[tuple[str, str]] = [
            ("Max-Forwards", "70"),
            ("From", f'"{self.help_point.name}" <sip:{self.help_point.id}@{self.config.host}>;tag={self.token()}'),
            ("To", f"<{uri}>" if target in self._dialled else f"<sip:{target}@{self.config.host}>"),
            ("Call-ID", f"{self.id}-{self._leg_seq}@{self.config.host}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<{self.config.contact}>"),
            ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"),
            # 100rel: a phone that requires reliable provisional responses would otherwise answer 421.
            ("Supported", f"timer, {OPTION_TAG}"),
            ("Content-Type", "application/sdp"),
        ]
        headers += operator_headers(self.help_point, self.id, self.config.record_url, self.failures, self.room_of)
        return Request("INVITE", uri, Headers(headers), self.negotiator.operator_offer())

    def _bridge(self, target: str, now: float) -> None:
        # The leg to bridge is the one that confirmed (or, without a confirm step, the one that answered):
        # another device of the same position, or another position, may have answered too.
        candidates = [lg for lg in (self._digit_leg, self._op_media) if lg is not None]
        candidates += self.legs.values()
        leg = next((lg for lg in candidates if lg.target == target and lg.state is LegState.ANSWERED), None)
        if leg is None:
            return
        leg.state = LegState.BRIDGED
        self.bridged = leg
        self._log(now, "bridged", target=target, room=self.room_of(target), leg=leg.id)
        # Every other leg ends now, other devices of the same position included (the plan cancels only
        # other positions): none may ring on, or take the operator side's audio by answering later.
        for other in self.legs.values():
            if other is not leg and other.state is not LegState.ENDED:
                self._end_leg(other, _CANCEL_REASONS["answered-elsewhere"], now)
        if self._op_media is not leg:
            self._op_media = leg
            self._emit(ce.ConnectMedia("op", leg.media, switch=True))
        if self.hp_answered_at is None and not self._answer_held:
            if self._reliable is not None and self._reliable.holds_answer:
                # RFC 3262 §3: the 183 carried our SDP answer; the 200 waits for its PRACK (or 64*T1).
                self._answer_held = True
                self._log(now, "answer-held", why="waiting for the PRACK of the reliable 183")
            else:
                self._answer_hp(now)
        self._emit(ce.BridgeMedia())

    def _plan_done(self, action: plan_ev.Done, now: float) -> None:
        self._log(now, "routing-done", outcome=action.outcome, target=action.target)
        if action.outcome == "answered":
            return
        if action.outcome == "unanswered" and self.hp_answered_at is None and self.ended_at is None:
            self._respond(480, "Temporarily Unavailable",
                          headers=(("Reason", 'SIP;cause=480;text="No control room answered"'),))
        self._finish(now, action.outcome, by="gateway" if action.outcome == "unanswered" else "hp")

    # -- SIP events -------------------------------------------------------------------------------
    def handle(self, event: ce.CallEvent, now: float) -> list[ce.CallAction]:
        """Feed one event; returns the actions to execute."""
        self._actions = []
        if isinstance(event, ce.LegResponded):
            self._leg_response(event, now)
        elif isinstance(event, ce.LegTimedOut):
            self._leg_timeout(event, now)
        elif isinstance(event, ce.CallerCancelled):
            self._caller_gone(now, "cancel")
        elif isinstance(event, ce.InDialogRequest):
            self._in_dialog(event, now)
        elif isinstance(event, ce.DigitDetected):
            self._digit(event.side, event.digit, now, event.source)
        elif isinstance(event, ce.PromptDone):
            if event.side == "hp":
                self._run_plan(self.plan.handle(plan_ev.PromptFinished(event.prompt), now), now)
        elif isinstance(event, ce.AckTimedOut):
            # RFC 3261 §13.3.1.4: a 2xx never ACKed for 64*T1 ends the session with a BYE.
            self._log(now, "ack-missing")
            self._hang_up_everything(now, by="gateway", reason='SIP;cause=408;text="ACK not received"')
        elif isinstance(event, ce.MediaSilence):
            self._log(now, "silence" if event.silent else "audio-resumed", side=event.side)
            if event.silent and event.side == "hp":
                self.silent = True
        elif isinstance(event, ce.GatewayStopping) and self.ended_at is None:
            # Never left open on the wire: operators get BYE or CANCEL, the help point a BYE, or a 503 before
            # it was answered (a front end or the intercom itself then tries another gateway).  A press no
            # operator took is "interrupted" (as after a crash), not "unanswered": nobody failed to answer.
            self._log(now, "gateway-stopping")
            self._hang_up_everything(now, by="gateway", reason=_STOPPING_REASON,
                                     unanswered=(503, "Service Unavailable"), outcome="interrupted")
        return self._flush()

    def _leg_response(self, event: ce.LegResponded, now: float) -> None:
        if event.leg == "hp":
            self._hp_response(event, now)
            return
        leg = self.legs.get(event.leg)
        if leg is None or event.method != "INVITE":
            return
        response = event.response
        status = response.status
        if response.cseq[0] != leg.invite.cseq[0]:
            # The answer to our in-dialog re-INVITE (hold passed on): never the leg's fate.
            if status >= 300:
                self._pending_offer.pop("op", None)
                self._log(now, "reinvite-refused", leg=leg.id, status=status)
            elif status >= 200:
                self._leg_answered(leg, response, now)
            return
        if status < 200:
            if leg.pracks is not None and leg.cancel_reason is None and leg.state is not LegState.ENDED:
                prack = leg.pracks.receive(response)
                if prack is not None:
                    self._emit(ce.SendRequest(leg.id, prack, leg.dest))
            if leg.state is LegState.CALLING:
                leg.state = LegState.EARLY
                self._log(now, "leg-ringing", leg=leg.id, status=status)
                self._run_plan(self.plan.handle(plan_ev.LegProgressed(leg.target), now), now)
            return
        if status < 300:
            self._leg_answered(leg, response, now)
            return
        if leg.state is LegState.ENDED:
            return
        leg.state = LegState.ENDED
        detail = f"{status} {response.reason}"
        self._log(now, "leg-failed", leg=leg.id, status=status, reason=response.reason)
        if leg.cancel_reason is None:
            self.failures.append((leg.target, detail))
            text = response.reason.replace("\\", "").replace('"', "")
            self._device_failed(leg, cause_for_status(status), detail, f'SIP;cause={status};text="{text}"', now,
                                responded=True, final=status >= 600)
            self._repoint_op_media(now)

    def _device_failed(self, leg: Leg, cause: Cause, detail: str, reason: str, now: float, *,
                       responded: bool, final: bool = False) -> None:
        """One device of a position failed (``leg`` has ended): fail the position, unless another of its
        devices may still take the call.

        * A 6xx (``final``) is the position's answer everywhere (RFC 3261 §16.7): its devices still ringing
          are cancelled; one that already answered and waits to confirm keeps its chance.
        * After a failure response (``responded``), a device that rang or answered keeps the position
          alive; one that has sent nothing at all is a stale binding (a restarted softphone's old contact)
          once :data:`STALE_AFTER` has passed since its INVITE: it is cancelled and the position fails
          with this device's cause.  Until then the failure is held, and looked at again then.
        * After a timeout or transport error every device not ended keeps the position alive.
        """
        self._held_failures.pop(leg.target, None)
        alive = [other for other in self.legs.values()
                 if other is not leg and other.target == leg.target and other.state is not LegState.ENDED
                 and other.cancel_reason is None]
        if final:
            for other in alive:
                if other.state in (LegState.CALLING, LegState.EARLY):
                    self._end_leg(other, reason, now)
            alive = [other for other in alive if other.state is LegState.ANSWERED]
        elif responded and not any(other.state is not LegState.CALLING for other in alive):
            young = [other for other in alive if now - other.started_at < STALE_AFTER]
            if young:
                self._held_failures[leg.target] = (leg, cause, detail, reason)
                due = min(other.started_at for other in young) + STALE_AFTER
                self._stale_check_at = due if self._stale_check_at is None else min(self._stale_check_at, due)
                return
            for other in alive:
                self._log(now, "leg-stale", leg=other.id, target=other.target)
                self._end_leg(other, reason, now)
            alive = []
        if not alive:
            self._run_plan(self.plan.handle(plan_ev.LegFailed(leg.target, cause, detail), now), now)

    def _leg_answered(self, leg: Leg, response: Response, now: float) -> None:
        had_dialog = leg.dialog is not None
        try:
            dialog = leg.dialog or Dialog.from_uac(leg.invite, response, self.config.contact)
            if leg.dialog is None and leg.pracks is not None:
                dialog = leg.pracks.confirmed(dialog)  # our CSeq goes on above the PRACKs' (§12.2.1.1)
        except RemoteProtocolError as exc:
            self._log(now, "leg-bad-answer", leg=leg.id, why=str(exc))
            return
        leg.dialog = dialog
        _, ack = dialog.create_request("ACK", cseq=response.cseq[0])
        self._emit(ce.SendAck(ack, leg.dest))
        if leg.state in (LegState.ANSWERED, LegState.BRIDGED):
            offer = self._pending_offer.pop("op", None) if response.cseq[0] > leg.invite.cseq[0] else None
            if offer is not None and response.body:
                self._connect_answer("op", offer, response.body, now)
            return  # a retransmitted 2xx (or the answer to our hold re-INVITE): ACK again
        if had_dialog and leg.state is LegState.ENDED:
            return  # a retransmitted 2xx of a leg we already hung up: ACKed again, its BYE already sent
        if (leg.state is LegState.ENDED or leg.cancel_reason is not None or self.ended_at is not None
                or self.bridged is not None):
            # Answered after we gave up on it (a CANCEL crossed the 200), or after another leg was
            # bridged: hang it up at once, never touching the bridged call's media.
            leg.state = LegState.ANSWERED
            self._end_leg(leg, leg.cancel_reason or _CANCEL_REASONS["answered-elsewhere"], now)
            return
        try:
            negotiated = self.negotiator.accept_operator_answer(response.body)
        except SdpError as exc:
            self._log(now, "leg-bad-sdp", leg=leg.id, why=str(exc))
            leg.state = LegState.ANSWERED
            reason = 'SIP;cause=488;text="Not acceptable SDP"'
            self._end_leg(leg, reason, now)
            self.failures.append((leg.target, "488 Not Acceptable Here"))
            self._device_failed(leg, "server_error", "488", reason, now, responded=True)
            self._repoint_op_media(now)
            return
        leg.state = LegState.ANSWERED
        leg.media = negotiated
        switch = self._op_media is not None and self._op_media is not leg
        self._op_media = leg
        self._log(now, "leg-answered", leg=leg.id, target=leg.target, room=self.room_of(leg.target))
        self._emit(ce.ConnectMedia("op", negotiated, switch=switch))
        mark = len(self._actions)
        self._run_plan(self.plan.handle(plan_ev.LegAnswered(leg.target), now), now)
        if (leg.state is LegState.ANSWERED and leg.target in self._confirm_targets
                and not any(isinstance(a, ce.PlayPrompt) and a.side == "op" for a in self._actions[mark:])):
            # Another device of a position already asked to confirm: the plan asks once per position,
            # but this phone has the audio now and must hear the question too.
            self._emit(ce.PlayPrompt("op", "confirm-operator"))

    def _leg_timeout(self, event: ce.LegTimedOut, now: float) -> None:
        if event.leg == "hp":
            self._hp_response(event, now)
            return
        leg = self.legs.get(event.leg)
        if leg is None or event.method != "INVITE" or leg.state is LegState.ENDED:
            return
        leg.state = LegState.ENDED
        why = "transport error" if event.transport_error else "no final response"
        self._log(now, "leg-failed", leg=leg.id, status=408, reason=why)
        if leg.cancel_reason is None:
            self.failures.append((leg.target, f"408 {why}"))
            self._device_failed(leg, "unreachable", why, f'SIP;cause=408;text="{why}"', now, responded=False)
            self._repoint_op_media(now)

    def _end_leg(self, leg: Leg, reason: str, now: float) -> None:
        """CANCEL a ringing leg, BYE an answered one (once)."""
        if leg.state in (LegState.CALLING, LegState.EARLY) and leg.cancel_reason is None:
            leg.cancel_reason = reason
            self._emit(ce.SendCancel(leg.id, reason))
            self._log(now, "leg-cancelled", leg=leg.id, reason=reason)
        elif leg.state in (LegState.ANSWERED, LegState.BRIDGED) and leg.dialog is not None:
            leg.dialog, bye = leg.dialog.create_request("BYE", (("Reason", reason),))
            self._emit(ce.SendRequest(leg.id, bye, leg.dest))
            self._log(now, "leg-bye-sent", leg=leg.id, reason=reason)
            leg.state = LegState.ENDED
            leg.cancel_reason = reason

    def _in_dialog(self, event: ce.InDialogRequest, now: float) -> None:
        request = event.request
        method = request.method
        if method == "ACK":
            return
        ok = build_response(request, 200)
        if event.side == "hp":
            if method == "BYE":
                self._answer(event, ok)
                self._log(now, "hp-bye")
                self._caller_gone(now, "bye")
            elif method in ("INVITE", "UPDATE"):
                self._refresh(event, self.hp_sdp, now)
            elif method == "INFO":
                self._answer(event, ok)
            elif method == "PRACK":
                self._prack(event, now)
            else:
                self._answer(event, build_response(request, 405, headers=(("Allow", HP_ALLOW),)))
            return
        leg = self.legs.get(event.side)
        if leg is None:
            self._answer(event, build_response(request, 481))
            return
        if method == "BYE":
            self._answer(event, ok)
            self._operator_bye(leg, now)
        elif method == "INFO":
            self._answer(event, ok)
            digit = _info_digit(request)
            if digit:
                self._digit(leg.id, digit, now)
        elif method in ("INVITE", "UPDATE"):
            self._refresh(event, self.negotiator.operator_offer() if method == "INVITE" else b"", now)
        else:
            self._answer(event, build_response(request, 405))

    def _prack(self, event: ce.InDialogRequest, now: float) -> None:
        """RFC 3262 §3: 200 to a PRACK matching our reliable 183 (then a held 200 goes out), else 481."""
        request = event.request
        if self._reliable is None or not self._reliable.receive_prack(request.headers.get("RAck")):
            self._answer(event, build_response(request, 481, "Call/Transaction Does Not Exist"))
            return
        self._answer(event, build_response(request, 200))
        if self._answer_held and self.ended_at is None and not self._reliable.holds_answer:
            self._answer_hp(now)

    def _answer(self, event: ce.InDialogRequest, response: Response) -> None:
        if event.transaction is not None:
            self._emit(ce.SendResponse(event.transaction, response))

    def _digit(self, side: str, digit: str, now: float, source: tuple[str, int] | None = None) -> None:
        if self.bridged is not None and side != "hp":
            self._operator_command(digit, now)
            return
        leg = self.legs.get(side)
        if side == "op":
            # RFC 4733 digits arrive on the one operator-side RTP port, from whichever phone it latched:
            # with one phone answered it is that one; with several, only the one whose SDP address sent it
            # (a phone behind NAT cannot be told apart: its digit is ignored, SIP INFO still works).
            answered = [lg for lg in self.legs.values() if lg.state is LegState.ANSWERED]
            if len(answered) > 1:
                answered = [lg for lg in answered if source is not None and _media_address(lg.media) == source]
                if len(answered) != 1:
                    self._log(now, "digit-ignored", digit=digit, why="several phones answered; source unknown")
                    return
            leg = answered[0] if answered else None
        if leg is None or leg.state is not LegState.ANSWERED:
            return
        self._log(now, "digit", leg=leg.id, digit=digit)
        self._digit_leg = leg
        try:
            self._run_plan(self.plan.handle(plan_ev.DigitReceived(leg.target, digit), now), now)
        finally:
            self._digit_leg = None

    def _repoint_op_media(self, now: float) -> None:
        """After the leg the operator side's media pointed at ended unbridged, point it at another answered
        leg (one still waiting to confirm) and ask that operator to confirm again."""
        current = self._op_media
        if self.bridged is not None or self.ended_at is not None or (
                current is not None and current.state is LegState.ANSWERED):
            return
        waiting = next((lg for lg in self.legs.values() if lg.state is LegState.ANSWERED), None)
        self._op_media = waiting
        if waiting is not None:
            self._log(now, "op-media-moved", leg=waiting.id)
            self._emit(ce.ConnectMedia("op", waiting.media, switch=True))
            self._emit(ce.PlayPrompt("op", "confirm-operator"))

    def _operator_command(self, digit: str, now: float) -> None:
        """Digits from the bridged operator: ``*1``/``*2`` play warning 1/2 to the help point's speaker."""
        previous, self._last_digit = self._last_digit, digit
        if previous == "*" and digit in WARNING_DIGITS:
            self._last_digit = ""
            self._warning(int(digit), now, by="operator-dtmf")
        elif previous == "#" and digit in CLASSIFY_DIGITS:
            self._last_digit = ""
            self.classification = CLASSIFY_DIGITS[digit]
            by = self.bridged.target if self.bridged else None
            self._log(now, "classified", classification=self.classification, by=by)

    def play_warning(self, number: int, now: float, by: str = "api") -> list[ce.CallAction]:
        """Play warning ``number`` into the help point's speaker (the API's entry point)."""
        self._actions = []
        self._warning(number, now, by)
        return self._flush()

    def _warning(self, number: int, now: float, by: str) -> None:
        if self.ended_at is not None or self.hp_dialog is None:
            return
        self._log(now, "warning", number=number, by=by)
        self._emit(ce.PlayPrompt("hp", f"warning-{number}"))

    def _operator_bye(self, leg: Leg, now: float) -> None:
        if leg.state is LegState.ENDED:
            return  # it crossed our own BYE (or CANCEL): that leg's fate was already decided
        was_bridged = leg is self.bridged
        leg.state = LegState.ENDED
        self._log(now, "operator-bye", leg=leg.id)
        if was_bridged:
            self._hang_up_everything(now, by="operator", reason=None)
        else:
            self._device_failed(leg, "unconfirmed", "hung up before confirming", _CANCEL_REASONS["unconfirmed"],
                                now, responded=True)
            self._repoint_op_media(now)

    def _caller_gone(self, now: float, how: str) -> None:
        if self.ended_at is not None:
            return
        if self.hp_answered_at is None:
            # A CANCEL, or a BYE in the early dialog our 183 created (RFC 3261 §15.1.2): the INVITE still
            # needs its final response, or its transaction would wait forever.
            self._respond(487, "Request Terminated")
        self._run_plan(self.plan.handle(plan_ev.CallerHungUp(), now), now)
        for leg in self.legs.values():
            if leg.state is not LegState.ENDED:
                self._end_leg(leg, _CANCEL_REASONS["caller-hung-up"], now)
        self._finish(now, "answered" if self.bridged else "abandoned", by="hp")

    def _hang_up_everything(self, now: float, by: str, reason: str | None,
                            unanswered: tuple[int, str] = (480, "Temporarily Unavailable"),
                            outcome: str = "unanswered") -> None:
        if self.ended_at is not None:
            return
        for leg in self.legs.values():
            if leg.state is not LegState.ENDED:
                self._end_leg(leg, reason or 'SIP;cause=200;text="Call ended"', now)
        if by != "hp" and self.hp_dialog is not None:
            if self.hp_answered_at is not None:
                self.hp_dialog, bye = self.hp_dialog.create_request(
                    "BYE", (("Reason", reason),) if reason else ())
                self._emit(ce.SendRequest("hp", bye, self.source))
            else:
                self._respond(*unanswered)
        self._finish(now, "answered" if self.bridged else outcome, by=by)

    def _finish(self, now: float, outcome: str, by: str | None) -> None:
        if self.ended_at is not None:
            return
        self.ended_at = now
        self.ended_by = by
        self.outcome = outcome
        self.session_deadline = None
        self.refresh_at = None
        self._held_failures, self._stale_check_at = {}, None
        self._log(now, "ended", outcome=outcome, by=by)
        self._emit(ce.StopMedia())
        self._emit(ce.CallEnded(self.summary()))

    def summary(self) -> ce.CallSummary:
        """The activation record as a value."""
        end = self.ended_at if self.ended_at is not None else self.started
        bridged_at = self.hp_answered_at
        return ce.CallSummary(
            activation_id=self.id,
            help_point=self.help_point.id,
            started_at=self.wall.replace(tzinfo=self.wall.tzinfo or UTC).timestamp(),
            outcome=self.outcome or "in-progress",
            answered_by=self.bridged.target if self.bridged else None,
            answered_room=self.room_of(self.bridged.target) if self.bridged else None,
            ended_by=self.ended_by,
            duration=round(end - self.started, 3),
            talk_time=round(end - bridged_at, 3) if bridged_at is not None else 0.0,
            dialplan=self.plan.dialplan.name,
            dialplan_version=self.dialplan_version,
            timeline=list(self.timeline),
            silent=self.silent,
            routing=plan_ev.timeline_to_builtins(self.plan.timeline),
            classification=self.classification,
        )


def _media_address(media: Any) -> tuple[str, int] | None:
    """The ``(host, port)`` a negotiated media description sends to, if it has one."""
    host, port = getattr(media, "remote_address", None), getattr(media, "remote_port", None)
    return (host, port) if host is not None and port is not None else None


def _info_digit(request: Request) -> str | None:
    """The digit of a SIP INFO (application/dtmf-relay ``Signal=1`` or application/dtmf ``1``)."""
    ctype = (request.headers.get("Content-Type") or "").lower()
    text = request.body.decode("ascii", "replace").strip()
    if "dtmf-relay" in ctype:
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip().lower() == "signal":
                return value.strip()[:1] or None
        return None
    if ctype.startswith("application/dtmf"):
        return text[:1] or None
    return None
