"""The call shell: routes SIP endpoint events to pure :class:`Call` objects and executes their actions.

One shared endpoint, one event loop, no locks.  The runner keeps three indexes:
the help point's INVITE server transaction, operator client transactions, and
dialog ids (Call-ID, local tag, remote tag) of both legs.  Each call's actions
are executed in order; media operations go through the :class:`CallMedia`
seam.  A bug inside one call is caught here (the one catch-all of the call
layer): logged with the activation id, the call torn down, counted.

Tear-down after a bug (:func:`close_on_wire`, :func:`record_internal_error`):

* It trusts what went on the wire, not the call's own state (its code is what
  failed, perhaps half-way through a step whose actions were never executed):
  the runner notes the final response it sent the help point's INVITE and the
  legs it sent BYE or CANCEL to (:class:`WireState`).
* The help point gets a 500 if its INVITE has no final response yet, a BYE if
  it was answered; every operator leg still open gets a CANCEL (ringing) or a
  BYE (answered).  Nobody is left ringing or off-hook.
* A call still in progress ends ``failed``, ended by the ``gateway``, with an
  ``internal-error`` entry in its timeline; its record is handed on exactly
  once, then the call is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway import metrics
from gateway.sip import events as ev
from gateway.sip.endpoint import RandomTokens, SipEndpoint
from gateway.sip.message import Request, build_response

from . import events as ce
from .call import Call, LegState, Negotiator
from .talkdown import Talkdown

log = logging.getLogger(__name__)

#: Seconds an ended call keeps receiving late messages (64 * T1).
LINGER = 32.0

#: A call's timer that fires this many seconds late means the event loop was stalled (the VM paused, the host
#: overloaded, the process stopped): the responses and requests that arrived meanwhile (a 180, the operator's
#: 200, the confirm digit, a CANCEL) wait in the sockets, and the timer would otherwise decide the call before
#: them (ring and connect timeouts would fail over from a room that has answered).  Such a timer waits
#: ``STALL_DEFER`` seconds once, so that the loop reads its sockets first; its call is then decided on all it
#: was sent.
STALL_GRACE = 0.25
STALL_DEFER = 0.02

#: RFC 3326 Reason of everything a tear-down after a bug sends.
INTERNAL_ERROR_REASON = 'SIP;cause=500;text="Gateway internal error"'


class CallMedia(Protocol):
    """The media of one call, as the runner drives it (implemented over gateway.media)."""

    negotiator: Negotiator

    def connect(self, side: str, negotiated: Any, switch: bool = False) -> None:
        """Point ``side`` ("hp"/"op") at its negotiated remote (``switch``: another operator's phone)."""

    def play(self, side: str, prompt: str, on_done: Callable[[], None] | None) -> None:
        """Play a prompt to ``side``; call ``on_done`` when it ends (if given)."""

    def bridge(self) -> None:
        """Relay help point <-> operator and record."""

    def close(self) -> None:
        """Release everything; seal the recording."""


class CallRunner:
    """Owns every live call."""

    def __init__(self, endpoint: SipEndpoint, transmit_soon: Callable[[], None],
                 on_summary: Callable[[ce.CallSummary], None],
                 count_error: Callable[[], None] = lambda: None,
                 on_started: Callable[[Call | Talkdown], None] = lambda call: None,
                 on_progress: Callable[[str, dict[str, Any]], None] = lambda activation_id, entry: None) -> None:
        self.endpoint = endpoint
        #: Called once when a call starts (the records layer writes its row at once).
        self.on_started = on_started
        #: Called with each new timeline entry as the call progresses.
        self.on_progress = on_progress
        self._reported: dict[str, int] = {}
        self.transmit_soon = transmit_soon
        self.on_summary = on_summary
        self.count_error = count_error
        self.loop = asyncio.get_running_loop()
        self.calls: dict[str, Call | Talkdown] = {}
        #: Ids of the calls not yet ended (``calls`` also holds ended calls lingering for late messages).
        self._live: set[str] = set()
        #: Calls ever started (the heap upkeep's measure of load).
        self.started = 0
        self.media: dict[str, CallMedia] = {}
        self._by_server_tx: dict[str, str] = {}
        self._by_client_tx: dict[str, tuple[str, str, str]] = {}  # tx -> (call id, leg, method)
        self._by_dialog: dict[tuple[str, str], tuple[str, str]] = {}  # (Call-ID, our tag) -> (call, side)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: Call id -> the instant its timer was due when it fired stalled and was deferred (see STALL_GRACE).
        self._deferred: dict[str, float] = {}
        #: Timers deferred after a stall (see STALL_GRACE), for the logs and tests.
        self.stalled_timers = 0
        #: Every index key a call owns, so forgetting a call costs O(its keys), not O(all calls).
        self._keys: dict[str, set[tuple[str, Any]]] = {}
        #: What each call has put on the wire, for a tear-down after a bug.
        self._wire: dict[str, WireState] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def add(self, call: Call | Talkdown, media: CallMedia) -> None:
        """Start a call created for a new INVITE."""
        self.started += 1
        self.calls[call.id] = call
        self._live.add(call.id)
        self.media[call.id] = media
        self._wire[call.id] = WireState()
        if call.transaction is not None:
            self._by_server_tx[call.transaction] = call.id
        self._index_dialog((call.invite.call_id, call.local_tag), call.id, "hp")
        try:
            self.on_started(call)
        except Exception:
            # The records must never stop a press being answered (its end still writes the whole record).
            log.exception("call %s: recording its start failed; the call goes on", call.id)
        self._run(call, lambda: call.start(self.loop.time()))

    @property
    def active(self) -> int:
        """Calls in progress (ended calls lingering for late messages are not counted)."""
        # Kept as calls start and end (CallEnded, or forgotten after a bug), never by a scan of the
        # lingering calls: /metrics, /health, the heap upkeep and drain read it often.
        return len(self._live)

    # -- endpoint events ------------------------------------------------------------------------
    def on_cancel(self, event: ev.CancelReceived) -> bool:
        """The help point cancelled its INVITE; True when it was ours."""
        call_id = self._by_server_tx.get(event.invite_transaction)
        if call_id is None:
            return False
        call = self.calls[call_id]
        self._run(call, lambda: call.handle(ce.CallerCancelled(), self.loop.time()))
        return True

    def on_in_dialog(self, event: ev.RequestReceived) -> bool:
        """A request with a To tag: route it to its call by dialog; True when it was ours."""
        request = event.request
        to_tag = request.to.tag
        if to_tag is None:
            return False
        found = self._by_dialog.get((request.call_id, to_tag))
        if found is None:
            return False
        call_id, side = found
        call = self.calls.get(call_id)
        if call is None:
            return False
        self._run(call, lambda: call.handle(ce.InDialogRequest(side, request, event.transaction), self.loop.time()))
        return True

    def on_response(self, event: ev.ResponseReceived) -> bool:
        """A response to one of our legs' requests; True when it was ours."""
        found = self._by_client_tx.get(event.transaction)
        if found is None:
            return False
        call_id, leg, method = found
        if event.response.status >= 200 and method != "INVITE":
            del self._by_client_tx[event.transaction]
        call = self.calls.get(call_id)
        if call is None:
            return True
        if event.response.status >= 200 and method == "INVITE" and event.response.to.tag:
            # Index the operator dialog so its BYE/INFO find the call.
            self._index_dialog((event.response.call_id, event.response.from_.tag or ""), call_id, leg)
        self._run(call, lambda: call.handle(ce.LegResponded(leg, event.response, method), self.loop.time()))
        return True

    def on_timeout(self, event: ev.TransactionTimedOut) -> bool:
        """A leg's request timed out, or our 2xx to the help point was never ACKed; True when ours."""
        server_call = self._by_server_tx.get(event.transaction)
        if server_call is not None and server_call in self.calls:
            call = self.calls[server_call]
            self._run(call, lambda: call.handle(ce.AckTimedOut(), self.loop.time()))
            return True
        found = self._by_client_tx.pop(event.transaction, None)
        if found is None:
            return False
        call_id, leg, method = found
        call = self.calls.get(call_id)
        if call is not None:
            self._run(call, lambda: call.handle(
                ce.LegTimedOut(leg, event.transport_error, method), self.loop.time()))
        return True

    def play_warning(self, activation_id: str, number: int) -> bool:
        """Play warning ``number`` into a live call (the API's function); False when not live."""
        call = self.calls.get(activation_id)
        if not isinstance(call, Call) or call.ended_at is not None:
            return False
        self._run(call, lambda: call.play_warning(number, self.loop.time()))
        self.transmit_soon()
        return True

    def stop_all(self) -> int:
        """End every call in progress now (the gateway stops and its drain time is over): BYE, CANCEL or 503
        on the wire, recordings sealed, each record written with outcome ``interrupted`` (or ``answered`` for
        a call an operator had taken).  Returns how many calls were ended."""
        now = self.loop.time()
        live = [self.calls[call_id] for call_id in list(self._live) if call_id in self.calls]
        for call in live:
            self._run(call, lambda call=call: call.handle(ce.GatewayStopping(), now))
        self.transmit_soon()
        return len(live)

    def deliver(self, call_id: str, event: ce.CallEvent) -> None:
        """Media-plane events (digits, prompt ends, silence) come back here."""
        call = self.calls.get(call_id)
        if call is not None:
            self._run(call, lambda: call.handle(event, self.loop.time()))
            self.transmit_soon()

    # -- executing actions ------------------------------------------------------------------------
    def _run(self, call: Call | Talkdown, step: Callable[[], list[ce.CallAction]]) -> None:
        try:
            actions = step()
            for action in actions:
                self._execute(call, action)
            # Inside the catch-all too: get_timer is the call's code, and a call whose timer was never
            # re-armed would never ring out or fail over.
            self._report(call)
            self._rearm(call)
        except Exception as exc:
            self.count_error()
            log.exception("call %s failed; tearing it down", call.id)
            self._tear_down(call, type(exc).__name__)
            return  # reported and forgotten

    def _report(self, call: Call | Talkdown) -> None:
        """Hand new timeline entries to the records layer (written as the call progresses)."""
        done = self._reported.get(call.id, 0)
        if done < 0 or self.calls.get(call.id) is not call:
            return  # the record is closed, or the call forgotten: nothing may be written twice
        for entry in call.timeline[done:]:
            self.on_progress(call.id, entry)
        self._reported[call.id] = len(call.timeline)

    def _execute(self, call: Call | Talkdown, action: ce.CallAction) -> None:
        now = self.loop.time()
        media = self.media.get(call.id)
        wire = self._wire.get(call.id)
        if isinstance(action, ce.SendResponse):
            self.endpoint.send_response(action.transaction, action.response, now)
            if (wire is not None and wire.hp_final is None and action.transaction == call.transaction
                    and action.response.status >= 200):
                wire.hp_final = action.response.status
        elif isinstance(action, ce.SendRequest):
            key = self.endpoint.send_request(action.request, action.dest, now)
            if wire is not None and action.request.method == "BYE":
                wire.bye_sent.add(action.leg)
            self._by_client_tx[key] = (call.id, action.leg, action.request.method)
            self._keys.setdefault(call.id, set()).add(("tx", key))
            leg = call.legs.get(action.leg)
            if action.request.method == "INVITE" and leg is not None and leg.invite_tx is None:
                leg.invite_tx = key
                self._index_dialog((action.request.call_id, action.request.from_.tag or ""), call.id, action.leg)
        elif isinstance(action, ce.SendCancel):
            leg = call.legs.get(action.leg)
            if leg is not None and leg.invite_tx is not None:
                self.endpoint.send_cancel(leg.invite_tx, now, reason=action.reason)
                if wire is not None:
                    wire.cancel_sent.add(action.leg)
        elif isinstance(action, ce.SendAck):
            self.endpoint.send_stateless(action.request, action.dest)
        elif isinstance(action, ce.ConnectMedia) and media is not None:
            media.connect(action.side, action.negotiated, action.switch)
        elif isinstance(action, ce.PlayPrompt) and media is not None:
            done = None
            if action.report:
                side, prompt = action.side, action.prompt
                done = lambda: self.deliver(call.id, ce.PromptDone(side, prompt))  # noqa: E731
            media.play(action.side, action.prompt, done)
        elif isinstance(action, ce.BridgeMedia) and media is not None:
            media.bridge()
        elif isinstance(action, ce.StopMedia) and media is not None:
            media.close()
        elif isinstance(action, ce.CallEnded):
            # Every entry so far goes out before the summary; nothing after it (the record is closed).
            self._report(call)
            self._reported[call.id] = -1
            self._live.discard(call.id)
            # StopMedia came first and closed the media: the linger needs only the call's SIP state.
            self.media.pop(call.id, None)
            # Keep routing late messages (a 200 crossing our CANCEL, BYE retransmissions) to the
            # ended call for a while: it answers them properly.  64*T1 covers every retransmission.
            self.loop.call_later(LINGER, self._forget, call)
            self.on_summary(action.summary)
        self.transmit_soon()

    def _rearm(self, call: Call | Talkdown) -> None:
        handle = self._timers.get(call.id)
        at = call.get_timer() if call.id in self.calls else None
        if handle is not None:
            if at is not None and handle.when() == at:
                return  # already armed for that instant: keep the handle
            del self._timers[call.id]
            handle.cancel()
        if self._deferred.get(call.id, at) != at:  # a deferred timer the call has since moved: new timer
            del self._deferred[call.id]
        if at is not None:
            self._timers[call.id] = self.loop.call_at(at, self._fire, call.id)

    def _fire(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        call = self.calls.get(call_id)
        if call is None:
            self._deferred.pop(call_id, None)
            return
        now = self.loop.time()
        due = self._deferred.pop(call_id, None)
        if due is None:
            try:
                due = call.get_timer()
            except Exception:  # the call's bug: handle_timer below meets it under the call's own catch-all
                due = None
            if due is not None and now - due > STALL_GRACE:
                self.stalled_timers += 1
                metrics.CALL_TIMERS_STALLED.inc()
                log.warning("call %s: its timer fired %.2f s late (the event loop was stalled); the messages "
                            "that arrived meanwhile are read first", call_id, now - due)
                self._deferred[call_id] = due
                self._timers[call_id] = self.loop.call_later(STALL_DEFER, self._fire, call_id)
                return
        self._run(call, lambda: call.handle_timer(self.loop.time()))
        self.transmit_soon()

    def _index_dialog(self, key: tuple[str, str], call_id: str, side: str) -> None:
        self._by_dialog[key] = (call_id, side)
        self._keys.setdefault(call_id, set()).add(("dialog", key))

    def _forget(self, call: Call | Talkdown) -> None:
        if self.calls.get(call.id) is not call:
            return
        self.calls.pop(call.id, None)
        self._live.discard(call.id)
        self._reported.pop(call.id, None)
        self._wire.pop(call.id, None)
        # Each index entry is removed only while it is still this call's: a key the peer chose (its INVITE's
        # branch and sent-by) may have been taken over meanwhile by a new call, whose routing must survive.
        if call.transaction is not None and self._by_server_tx.get(call.transaction) == call.id:
            del self._by_server_tx[call.transaction]
        handle = self._timers.pop(call.id, None)
        if handle is not None:
            handle.cancel()
        self._deferred.pop(call.id, None)
        for kind, key in self._keys.pop(call.id, ()):
            index: dict[Any, Any] = self._by_dialog if kind == "dialog" else self._by_client_tx
            owner = index.get(key)
            if owner is not None and owner[0] == call.id:
                del index[key]
        self.media.pop(call.id, None)

    def _tear_down(self, call: Call | Talkdown, error: str = "error") -> None:
        """After a bug: close what is open on the wire, write the record once, forget the call.

        Each step is guarded on its own: a second bug must cost neither the BYE nor the record.
        """
        if self.calls.get(call.id) is not call:
            return  # already forgotten
        now = self.loop.time()
        try:
            actions = close_on_wire(call, self._wire.get(call.id) or WireState())
        except Exception:
            log.exception("tear-down of call %s: could not work out what to close", call.id)
            actions = []
        for action in actions:
            try:
                self._execute(call, action)
            except Exception:
                log.exception("tear-down of call %s: %s failed", call.id, type(action).__name__)
        media = self.media.get(call.id)
        if media is not None:
            try:
                media.close()
            except Exception:
                log.exception("tear-down of call %s: closing its media failed", call.id)
        # CallEnded already handed the record on (the bug came later, e.g. while lingering): it is closed.
        summary: ce.CallSummary | None = None
        if self._reported.get(call.id) != -1:
            try:
                record_internal_error(call, error, now)
            except Exception:
                log.exception("tear-down of call %s: could not mark its record failed", call.id)
            try:
                summary = call.summary()
            except Exception:
                log.exception("tear-down of call %s: its summary failed; writing a bare one", call.id)
                summary = _bare_summary(call, now)
            try:
                self._report(call)
            except Exception:
                log.exception("tear-down of call %s: writing its timeline failed", call.id)
        self._forget(call)
        if summary is not None:
            try:
                self.on_summary(summary)
            except Exception:
                log.exception("tear-down of call %s: handing its record on failed", call.id)


@dataclass
class WireState:
    """What the runner put on the wire for one call: what a tear-down after a bug must still close."""

    #: Status of the final response sent to the help point's INVITE (None: not answered yet).
    hp_final: int | None = None
    #: Sides (``"hp"`` or a leg id) we sent a BYE to.
    bye_sent: set[str] = field(default_factory=set)
    #: Legs whose INVITE we CANCELled.
    cancel_sent: set[str] = field(default_factory=set)


def close_on_wire(call: Call | Talkdown, wire: WireState) -> list[ce.CallAction]:
    """The requests and responses that end what is still open after a bug (no I/O: updates the dialogs).

    The help point's INVITE gets a 500 if nothing answered it, a BYE if a 2xx did (unless the help point
    hung up itself); an operator leg (or a talk-down's INVITE) gets a BYE once it has a dialog, a CANCEL
    while it rings.  A leg that already failed gets a CANCEL the endpoint ignores; one the operator hung
    up may get a BYE answered 481: harmless, where a guess from the call's state could leave one open.
    """
    actions: list[ce.CallAction] = []
    reason = (("Reason", INTERNAL_ERROR_REASON),)
    hp_hung_up = call.ended_by == "hp"  # its BYE (or CANCEL) arrived: its side is over
    if isinstance(call, Call):
        if wire.hp_final is None:
            actions.append(ce.SendResponse(call.transaction, build_response(
                call.invite, 500, "Server Internal Error", to_tag=call.local_tag, headers=reason)))
        elif (wire.hp_final < 300 and "hp" not in wire.bye_sent and not hp_hung_up
              and call.hp_dialog is not None):
            call.hp_dialog, bye = call.hp_dialog.create_request("BYE", reason)
            actions.append(ce.SendRequest("hp", bye, call.source))
    for leg in call.legs.values():
        if leg.invite_tx is None or leg.id in wire.bye_sent or (isinstance(call, Talkdown) and hp_hung_up):
            continue  # never sent, already hung up, or the talk-down's help point hung up
        dialog = call.dialog if isinstance(call, Talkdown) else leg.dialog
        if dialog is not None:
            dialog, bye = dialog.create_request("BYE", reason)
            if isinstance(call, Talkdown):
                call.dialog = dialog
            else:
                leg.dialog = dialog
            leg.state = LegState.ENDED
            actions.append(ce.SendRequest(leg.id, bye, leg.dest))
        elif leg.id not in wire.cancel_sent:
            leg.cancel_reason = leg.cancel_reason or INTERNAL_ERROR_REASON
            actions.append(ce.SendCancel(leg.id, INTERNAL_ERROR_REASON))
    return actions


def record_internal_error(call: Call | Talkdown, error: str, now: float) -> None:
    """Write the bug into the call's timeline; a call still in progress ends ``failed`` by the gateway."""
    call._log(now, "internal-error", error=error)
    if call.ended_at is not None:
        return  # it had ended (its own outcome stands); the bug came while carrying that out
    call.ended_at = now
    call.ended_by = "gateway"
    call.outcome = "failed"
    call._log(now, "ended", outcome="failed", by="gateway")


def _bare_summary(call: Call | Talkdown, now: float) -> ce.CallSummary:
    """The record of a call whose own ``summary()`` failed: only what the runner can vouch for."""
    talkdown = isinstance(call, Talkdown)
    end = call.ended_at if call.ended_at is not None else now
    return ce.CallSummary(
        activation_id=call.id, help_point=call.help_point.id,
        started_at=call.wall.replace(tzinfo=call.wall.tzinfo or UTC).timestamp(),
        outcome=("talkdown-" if talkdown else "") + (call.outcome or "failed"), answered_by=None,
        answered_room=None, ended_by=call.ended_by, duration=round(end - call.started, 3), talk_time=0.0,
        dialplan="", dialplan_version=0, timeline=list(call.timeline),
        kind="talkdown" if talkdown else "activation",
    )


_ID_TOKENS = RandomTokens(4)


def new_activation_id() -> str:
    """A sortable, unique activation id: UTC time plus randomness."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + _ID_TOKENS()


def is_initial_invite(request: Request) -> bool:
    """An INVITE without a To tag starts a new call."""
    return request.method == "INVITE" and request.to.tag is None
