"""Session upkeep of a call's help-point leg: RFC 4028 timers, refreshes, re-offers and hold (pure).

A mixin of :class:`~gateway.calls.call.Call` (it uses the call's state and its ``_emit``/``_log``
helpers), kept apart so call.py stays about routing and legs.

Rules:

* A help point that supports RFC 4028 refreshes the session itself (``refresher=uac``); without a refresh
  by ``interval - min(32, interval/3)`` it is gone (§10).  One that does not is re-INVITEd by us every
  half ``session_expires``; a 408/481 or no answer clears the call.  Silence never does.
* A re-INVITE or UPDATE with a new offer is answered on that side's own port (RFC 3264 §8); a change of
  hold state is passed on to the other side with a re-INVITE (``sendonly`` to hold, ``sendrecv`` to resume).
* The 2xx to our own re-INVITE of the help point (refresh or hold) is ACKed again each time it is
  retransmitted, with the same ACK (same CSeq): the help point retransmits it until an ACK arrives and
  ends the call after 64*T1 without one (RFC 3261 §13.3.1.4), and our first ACK can be lost on UDP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.media.errors import SdpError
from gateway.sip.message import build_response

from . import events as ce

if TYPE_CHECKING:
    from gateway.sip.dialog import Dialog
    from gateway.sip.events import Peer
    from gateway.sip.message import Request, Response

    from .call import CallConfig, Leg, Negotiator


class SessionUpkeep:
    """Session timers, refreshes and hold pass-through for :class:`~gateway.calls.call.Call`."""

    # State owned by Call (declared for type checkers).
    invite: Request
    config: CallConfig
    negotiator: Negotiator
    source: Peer
    hp_dialog: Dialog | None
    hp_sdp: bytes
    bridged: Leg | None
    ended_at: float | None
    session_deadline: float | None
    refresh_at: float | None
    _refresh_pending: bool
    _pending_offer: dict[str, bytes]
    _held: dict[str, bool]
    #: The ACK sent for the 2xx to our latest answered re-INVITE of the help point, re-sent for each
    #: retransmission of that 2xx (same CSeq).  Only the latest is kept, so the memory stays bounded; a 2xx
    #: still retransmitted for an older re-INVITE gets an ACK built again from the dialog with its CSeq.
    #: (A class-level default: :class:`~gateway.calls.call.Call` does not set it in ``__init__``.)
    _hp_reinvite_ack: Request | None = None

    def _log(self, now: float, event: str, **detail: Any) -> None: ...
    def _emit(self, action: ce.CallAction) -> None: ...
    def _answer(self, event: ce.InDialogRequest, response: Any) -> None: ...
    def _hang_up_everything(self, now: float, by: str, reason: str | None) -> None: ...

    def _session_expires_header(self) -> str | None:
        """RFC 4028: the help point refreshes when it supports timers (refresher=uac)."""
        asked = self.invite.headers.get("Session-Expires") or self.invite.headers.get("x")
        supported = [s.lower() for s in self.invite.headers.get_all("Supported")]
        if asked is None or "timer" not in supported or self.config.session_expires <= 0:
            return None
        try:
            interval = int(asked.split(";")[0].strip())
        except ValueError:
            return None
        interval = max(interval, self.config.min_se)
        return f"{interval};refresher=uac"

    def _arm_session_timer(self, now: float) -> None:
        se = self._session_expires_header()
        if se is None:
            # The help point does not do RFC 4028: we refresh with a re-INVITE every half interval;
            # a 408/481 or no answer at all proves it is gone (§10), whatever its audio did.
            if self.config.session_expires > 0:
                self.refresh_at = now + self.config.session_expires / 2
            return
        interval = int(se.split(";")[0])
        # RFC 4028 §10: without a refresh by interval - min(32, interval/3), the session is gone.
        self.session_deadline = now + interval - min(32.0, interval / 3)

    def _send_refresh(self, now: float) -> None:
        """Re-INVITE the help point with the SDP it already has (RFC 4028 §7.4, refresher=uas)."""
        if self.hp_dialog is None or self.ended_at is not None:
            return
        self.hp_dialog, reinvite = self.hp_dialog.create_request(
            "INVITE", (("Content-Type", "application/sdp"),), self.hp_sdp)
        self._refresh_pending = True
        self._log(now, "refresh-sent", side="hp")
        self._emit(ce.SendRequest("hp", reinvite, self.source))

    def _hp_response(self, event: ce.LegResponded | ce.LegTimedOut, now: float) -> None:
        """The help point answered (or did not answer) one of our in-dialog requests."""
        if event.method == "INVITE" and isinstance(event, ce.LegResponded) and self._ack_again(event.response):
            return
        if event.method == "INVITE" and "hp" in self._pending_offer and not self._refresh_pending:
            self._reinvite_answered("hp", event, now)
            return
        if event.method != "INVITE" or not self._refresh_pending:
            return
        status = event.response.status if isinstance(event, ce.LegResponded) else 408
        if status < 200:
            return
        self._refresh_pending = False
        if isinstance(event, ce.LegResponded) and status < 300:
            self._ack_reinvite(event.response)
        if status in (408, 481):
            self._log(now, "refresh-failed", side="hp", status=status)
            self._hang_up_everything(now, by="gateway", reason='SIP;cause=408;text="Help point unreachable"')
            return
        self.refresh_at = now + self.config.session_expires / 2

    def _refresh(self, event: ce.InDialogRequest, sdp: bytes, now: float) -> None:
        """A re-INVITE or UPDATE: session refresh (RFC 4028), re-negotiation or hold.

        A new offer is answered on that side's port (RFC 3264 §8); a change of hold state is passed on to
        the other side with a re-INVITE (``sendonly`` to hold, ``sendrecv`` to resume).
        """
        headers: list[tuple[str, str]] = [("Contact", f"<{self.config.contact}>")]
        body = b""
        if event.request.body:
            side = "hp" if event.side == "hp" else "op"
            try:
                body, negotiated = self.negotiator.answer_offer(side, event.request.body)
            except SdpError as exc:
                self._log(now, "reoffer-refused", side=event.side, why=str(exc))
                self._answer(event, build_response(event.request, exc.status, exc.reason))
                return
            self._emit(ce.ConnectMedia(side, negotiated))
            self._pass_hold(side, bool(getattr(negotiated, "on_hold", False)), now)
            headers.append(("Content-Type", "application/sdp"))
        elif event.request.method == "INVITE":
            # A re-INVITE without an offer: our 200 carries one (RFC 3264 §5); its answer comes in the ACK.
            body = sdp
            headers.append(("Content-Type", "application/sdp"))
        se = event.request.headers.get("Session-Expires") or event.request.headers.get("x")
        if se and event.side == "hp":
            headers.append(("Session-Expires", se.split(";")[0].strip() + ";refresher=uac"))
            self._arm_session_timer(now)
        self._log(now, "refresh", side=event.side, method=event.request.method)
        self._answer(event, build_response(event.request, 200, headers=headers, body=body))

    def _pass_hold(self, side: str, held: bool, now: float) -> None:
        """``side`` put the call on hold (or resumed): tell the other side, once bridged."""
        if self._held[side] == held:
            return
        self._held[side] = held
        self._log(now, "hold" if held else "resume", side=side)
        if self.bridged is None or self.ended_at is not None:
            return
        other = "op" if side == "hp" else "hp"
        offer = self.negotiator.offer_for(other, "sendonly" if held else "sendrecv")
        extra = (("Content-Type", "application/sdp"),)
        if other == "op" and self.bridged.dialog is not None:
            self.bridged.dialog, reinvite = self.bridged.dialog.create_request("INVITE", extra, offer)
            self._emit(ce.SendRequest(self.bridged.id, reinvite, self.bridged.dest))
        elif other == "hp" and self.hp_dialog is not None:
            self.hp_dialog, reinvite = self.hp_dialog.create_request("INVITE", extra, offer)
            self._emit(ce.SendRequest("hp", reinvite, self.source))
        else:
            return
        self._pending_offer[other] = offer

    def _reinvite_answered(self, side: str, event: ce.LegResponded | ce.LegTimedOut, now: float) -> None:
        """The help point answered the re-INVITE that passed hold on."""
        if isinstance(event, ce.LegTimedOut) or event.response.status < 200:
            if isinstance(event, ce.LegTimedOut):
                self._pending_offer.pop(side, None)
            return
        offer = self._pending_offer.pop(side)
        if event.response.status < 300 and self._ack_reinvite(event.response) and event.response.body:
            self._connect_answer(side, offer, event.response.body, now)

    def _ack_reinvite(self, response: Response) -> bool:
        """ACK the first 2xx to our re-INVITE of the help point, and keep the ACK for its retransmissions."""
        if self.hp_dialog is None:
            return False
        _, ack = self.hp_dialog.create_request("ACK", cseq=response.cseq[0])
        self._hp_reinvite_ack = ack
        self._emit(ce.SendAck(ack, self.source))
        return True

    def _ack_again(self, response: Response) -> bool:
        """A 2xx retransmitted for a re-INVITE we already ACKed (our ACK was lost): ACK it again (§13.3.1.4).

        The latest one gets the very ACK we sent; an older one (never the answer to a pending re-INVITE,
        whose CSeq is higher) gets the same ACK built again from the dialog.
        """
        last = self._hp_reinvite_ack
        cseq = response.cseq[0]
        if last is None or not 200 <= response.status < 300 or cseq > last.cseq[0]:
            return False
        ack = last
        if cseq != last.cseq[0] and self.hp_dialog is not None:
            _, ack = self.hp_dialog.create_request("ACK", cseq=cseq)
        self._emit(ce.SendAck(ack, self.source))
        return True

    def _connect_answer(self, side: str, offer: bytes, answer: bytes, now: float) -> None:
        try:
            self._emit(ce.ConnectMedia(side, self.negotiator.accept_answer_for(side, offer, answer)))
        except SdpError as exc:
            self._log(now, "reanswer-refused", side=side, why=str(exc))
