"""RFC 3262 reliable provisional responses (sans-IO): :class:`ReliableProvisionals` for the UAS side (our
183 to a help point), :class:`ReliableProvisionalAcks` for the UAC side (our INVITEs: talk-down, operators).

Rules of the UAS side:

* A 1xx (other than 100) answering an INVITE whose ``Require`` lists ``100rel`` is sent reliably (§3): it
  carries ``Require: 100rel`` and an ``RSeq`` (the first one random in [1, 2**31 - 1], §3, then one higher
  for each), and is passed to the transaction layer again every T1, 2*T1, 4*T1... (no T2 cap) until a PRACK
  whose ``RAck`` matches it arrives, or for 64*T1 in all.
* A PRACK matching the reliable 1xx (``RAck: <RSeq> <CSeq number> <method>``) gets 200; one matching nothing
  gets 481 (§3).  A PRACK for a 1xx already acknowledged (a retransmitted PRACK, or one for the 1xx we
  stopped retransmitting) still gets 200: it matches what we sent.
* At most one reliable 1xx is unacknowledged at a time (§3); the gateway only ever sends one (the 183).
* A 2xx to the INVITE is held while a reliable 1xx carrying SDP waits for its PRACK (§3: the UAC must see
  the answer before the 2xx).  ``holds_answer`` tells the caller.
* Deviation from §3, by the product's safety rule (no activation may ever be lost): when 64*T1 pass without
  a PRACK the retransmissions stop (``gave_up``) and the call carries on (the held 2xx is sent); the INVITE
  is never rejected with a 5xx as the RFC suggests.

Like the rest of ``gateway.sip``: no I/O, every entry point takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .dialog import Dialog
from .errors import RemoteProtocolError
from .message import Request, Response

#: The option tag (RFC 3262 §10).
OPTION_TAG = "100rel"
#: Largest RSeq (RFC 3262 §7.1: 1 to 2**32 - 1; the first one is chosen below 2**31, §3).
MAX_FIRST_RSEQ = 2**31 - 1


def requires_100rel(request: Request) -> bool:
    """True when *request* lists ``100rel`` in a ``Require`` header (several headers or a comma list)."""
    for value in request.headers.get_all("Require"):
        if any(tag.strip().lower() == OPTION_TAG for tag in value.split(",")):
            return True
    return False


def parse_rack(value: str | None) -> tuple[int, int, str] | None:
    """``RAck: 776656 1 INVITE`` -> ``(776656, 1, "INVITE")`` (RFC 3262 §7.2), None when malformed."""
    if value is None:
        return None
    parts = value.split()
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return int(parts[0]), int(parts[1]), parts[2]


@dataclass
class _Pending:
    """The reliable 1xx retransmitted until PRACKed."""

    response: Response
    rseq: int
    has_sdp: bool
    next_at: float
    interval: float
    give_up_at: float


class ReliableProvisionals:
    """The UAS side of RFC 3262 for one INVITE server transaction.

    ``send(response, now)`` returns the 1xx to put on the wire (with ``Require`` and ``RSeq``); then
    ``get_timer()``/``handle_timer(now)`` give the retransmissions, ``receive_prack(rack, now)`` says whether
    a PRACK matches (answer 200) or not (481), and ``stop()`` ends it all when the final response is sent.
    """

    def __init__(self, invite: Request, first_rseq: int, t1: float = 0.5) -> None:
        if not 1 <= first_rseq <= MAX_FIRST_RSEQ:
            raise ValueError(f"first RSeq {first_rseq} out of [1, 2**31 - 1] (RFC 3262 §3)")
        self.cseq = invite.cseq[0]
        self.method = invite.method
        self.t1 = t1
        self._next_rseq = first_rseq
        self._pending: _Pending | None = None
        #: RSeq values sent so far (a PRACK for any of them is answered 200).
        self._sent: set[int] = set()
        #: Set when a reliable 1xx went 64*T1 without a PRACK and its retransmissions stopped.
        self.gave_up = False

    @property
    def unacknowledged(self) -> bool:
        """A reliable 1xx is still waiting for its PRACK."""
        return self._pending is not None

    @property
    def holds_answer(self) -> bool:
        """A 2xx must wait: the reliable 1xx waiting for its PRACK carried SDP (RFC 3262 §3)."""
        return self._pending is not None and self._pending.has_sdp

    def send(self, response: Response, now: float) -> Response:
        """Make *response* (a 101-199) reliable and start retransmitting it; returns what to send."""
        if not 100 < response.status < 200:
            raise ValueError(f"only a 101-199 is sent reliably, not {response.status}")
        if self._pending is not None:
            raise ValueError("a reliable provisional response is still unacknowledged (RFC 3262 §3)")
        rseq = self._next_rseq
        self._next_rseq += 1
        headers = response.headers.add("Require", OPTION_TAG).add("RSeq", str(rseq))
        reliable = response.with_headers(headers)
        self._sent.add(rseq)
        self._pending = _Pending(reliable, rseq, bool(response.body), now + self.t1, self.t1,
                                 now + 64 * self.t1)
        self.gave_up = False
        return reliable

    def get_timer(self) -> float | None:
        """When ``handle_timer`` is due next, or None."""
        pending = self._pending
        return None if pending is None else min(pending.next_at, pending.give_up_at)

    def handle_timer(self, now: float) -> Response | None:
        """The 1xx to send again, or None (nothing due, or 64*T1 passed: then ``gave_up`` is set)."""
        pending = self._pending
        if pending is None:
            return None
        if now >= pending.give_up_at:
            self._pending = None
            self.gave_up = True
            return None
        if now < pending.next_at:
            return None
        pending.interval *= 2  # T1, 2*T1, 4*T1, ... (§3: doubles each time, no T2 cap)
        pending.next_at = now + pending.interval
        return pending.response

    def receive_prack(self, rack: str | None) -> bool:
        """True when a PRACK with this ``RAck`` matches a reliable 1xx we sent (answer 200), else False (481)."""
        parsed = parse_rack(rack)
        if parsed is None:
            return False
        rseq, cseq, method = parsed
        if cseq != self.cseq or method != self.method or rseq not in self._sent:
            return False
        if self._pending is not None and self._pending.rseq == rseq:
            self._pending = None
        return True

    def stop(self) -> None:
        """The final response went out: no more retransmissions (a late PRACK is still answered)."""
        self._pending = None


class ReliableProvisionalAcks:
    """The UAC side of RFC 3262 for one INVITE we sent (§4): the PRACK for each reliable 1xx.

    ``receive(response)`` returns the PRACK to send for a reliable 1xx (``Require: 100rel`` and a new
    ``RSeq``), or None: an unreliable 1xx, a retransmission (an ``RSeq`` not above the last one PRACKed: our
    PRACK's own transaction retransmits it) or a malformed one (``malformed`` says why).  The PRACK goes in
    the early dialog the 1xx creates.  ``confirmed(dialog)`` gives the dialog of the 2xx a local CSeq above
    every PRACK's (§12.2.1.1: it only rises), so the ACK and BYE that follow are in order.
    """

    def __init__(self, invite: Request, local_contact: str) -> None:
        self.invite = invite
        self.local_contact = local_contact
        self._rseq: int | None = None
        self._early: Dialog | None = None
        self._local_cseq = invite.cseq[0]
        #: Why the last reliable 1xx got no PRACK, when it was malformed (for the timeline).
        self.malformed: str | None = None

    def receive(self, response: Response) -> Request | None:
        """The PRACK for *response* (a 1xx to our INVITE), or None."""
        self.malformed = None
        if not 100 < response.status < 200 or not requires_100rel(response):
            return None
        rseq_text = (response.headers.get("RSeq") or "").strip()
        if not rseq_text.isdigit():
            self.malformed = "reliable 1xx without a valid RSeq"
            return None
        rseq = int(rseq_text)
        if self._rseq is not None and rseq <= self._rseq:
            return None
        try:
            early = Dialog.from_uac(self.invite, response, self.local_contact)
        except RemoteProtocolError as exc:
            self.malformed = str(exc)
            return None
        if self._early is not None and self._early.id == early.id:
            early = self._early
        rack = f"{rseq} {self.invite.cseq[0]} {self.invite.method}"
        self._early, prack = early.create_request(
            "PRACK", (("RAck", rack),), cseq=max(early.local_cseq, self._local_cseq) + 1)
        self._local_cseq = prack.cseq[0]
        self._rseq = rseq
        return prack

    def confirmed(self, dialog: Dialog) -> Dialog:
        """*dialog* (made from the 2xx) with a local CSeq above the PRACKs'."""
        return replace(dialog, local_cseq=max(dialog.local_cseq, self._local_cseq))
