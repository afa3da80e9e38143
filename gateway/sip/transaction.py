"""RFC 3261 §17 transactions as transition tables, with Timers A–M.

Rules (h11 ``_state.py`` style):

* A transaction is a state machine over ``(State, Input)``.  The table
  ``TRANSITIONS`` maps each pair to ``(effect, next_state)``; a pair missing
  from the table is ignored for wire input (a stray retransmission) and is a
  :class:`LocalProtocolError` for input from our own TU.
* Transactions never touch sockets or clocks.  Every entry point takes ``now``
  and returns a list of :class:`Output` values: bytes to send, a message for
  the TU, or a timeout.  ``deadline()`` is the earliest armed timer.
* Timers follow §17 and RFC 6026: A/B/D (INVITE client), E/F/K (non-INVITE
  client), G/H/I/L (INVITE server), J (non-INVITE server), M (INVITE client
  after a 2xx).  Retransmission timers run only over unreliable transports.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from .errors import LocalProtocolError
from .message import Headers, Request, Response

#: RFC 3261 §17.1.1.1 timer values in seconds.
T1 = 0.5
T2 = 4.0
T4 = 5.0


class State(enum.Enum):
    """Transaction states (§17.1.1, §17.1.2, §17.2.1, §17.2.2, RFC 6026)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    """What can happen to a transaction."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST_RETRANSMITTED = "request retransmitted"
    ACK = "ACK"
    SEND_PROVISIONAL = "TU sends 1xx"
    SEND_SUCCESS = "TU sends 2xx"
    SEND_FAILURE = "TU sends 300-699"
    TIMER_RETRANSMIT = "Timer A/E/G"
    TIMER_TIMEOUT = "Timer B/F/H"
    TIMER_LINGER = "Timer D/I/J/K/L/M"
    TRANSPORT_ERROR = "transport error"


@dataclass(frozen=True, slots=True)
class Send:
    """Put these bytes on the wire to the transaction's peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pass this message up to the transaction user."""

    message: Request | Response


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The transaction failed: Timer B/F/H fired, or the transport failed."""

    transport_error: bool = False


Output = Send | Deliver | TimedOut


def status_input(status: int) -> Input:
    """Classify a response status as a wire input."""
    if status < 200:
        return Input.PROVISIONAL
    if status < 300:
        return Input.SUCCESS
    return Input.FAILURE


def build_ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300–699 (§17.1.1.3)."""
    headers: list[tuple[str, str]] = []
    top_via = invite.headers.get_all("Via")[0]
    headers.append(("Via", top_via))
    for name, value in invite.headers:
        low = name.lower()
        if low in ("route",):
            headers.append((name, value))
    headers.append(("Max-Forwards", "70"))
    headers.append(("From", invite.headers.get("From") or ""))
    headers.append(("To", response.headers.get("To") or ""))
    headers.append(("Call-ID", invite.call_id))
    headers.append(("CSeq", f"{invite.cseq[0]} ACK"))
    return Request("ACK", invite.uri, Headers(headers))


class Transaction:
    """Common machinery: the table walk, the timers, the retransmission bookkeeping."""

    #: ``(state, input) -> (effect method name or None, next state)``; set by subclasses.
    TRANSITIONS: dict[tuple[State, Input], tuple[str | None, State]] = {}

    def __init__(self, key: str, request: Request, reliable: bool, now: float,
                 timers: tuple[float, float, float] = (T1, T2, T4)) -> None:
        #: Matching key (§17.1.3 / §17.2.3).
        self.key = key
        #: The request that created the transaction.
        self.request = request
        #: True over TCP/TLS: no retransmissions, zero linger timers.
        self.reliable = reliable
        self.state: State = State.TERMINATED
        self.created = now
        self.last_response: Response | None = None
        self._timers: dict[Input, float] = {}
        #: T1, T2, T4 for this transaction (RFC 3261 §17.1.1.1; configurable for slow 4G links).
        self.t1, self.t2, self.t4 = timers
        self._interval = self.t1
        self._outputs: list[Output] = []

    # -- timers ---------------------------------------------------------------
    def deadline(self) -> float | None:
        """The earliest armed timer, or None."""
        return min(self._timers.values()) if self._timers else None

    def _arm(self, which: Input, at: float) -> None:
        self._timers[which] = at

    def _disarm(self, *which: Input) -> None:
        for w in which:
            self._timers.pop(w, None)

    def handle_timer(self, now: float) -> list[Output]:
        """Fire every timer due at *now* (earliest first)."""
        out: list[Output] = []
        for which, at in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if at <= now and which in self._timers and self.state is not State.TERMINATED:
                del self._timers[which]
                out.extend(self._step(which, None, now, from_wire=True))
        return out

    # -- the table walk -------------------------------------------------------
    def _step(self, inp: Input, message: Request | Response | None, now: float, from_wire: bool) -> list[Output]:
        entry = self.TRANSITIONS.get((self.state, inp))
        if entry is None:
            if from_wire:
                return []
            raise LocalProtocolError(f"{type(self).__name__}: {inp.value} not allowed in state {self.state.value}")
        effect, next_state = entry
        self._outputs = []
        self.state = next_state
        if effect is not None:
            getattr(self, effect)(message, now)
        if self.state is State.TERMINATED:
            self._timers.clear()
        return self._outputs

    def _send(self, message: Request | Response) -> None:
        self._outputs.append(Send(bytes(message)))

    @property
    def terminated(self) -> bool:
        """True once the transaction can be forgotten."""
        return self.state is State.TERMINATED

    def transport_error(self, now: float) -> list[Output]:
        """The transport could not deliver our message (§17.1.4, §17.2.4)."""
        return self._step(Input.TRANSPORT_ERROR, None, now, from_wire=True)


class ClientTransaction(Transaction):
    """Shared parts of the two client transactions."""

    #: The state a new transaction starts in (Calling for INVITE, Trying otherwise).
    INITIAL = State.TRYING

    def start(self, now: float) -> list[Output]:
        """Send the request; arm Timer A/E (unreliable transports only) and Timer B/F at 64*T1."""
        self.state = self.INITIAL
        self._outputs = []
        self._send(self.request)
        if not self.reliable:
            self._arm(Input.TIMER_RETRANSMIT, now + self.t1)
        self._arm(Input.TIMER_TIMEOUT, now + 64 * self.t1)
        return self._outputs

    def receive_response(self, response: Response, now: float) -> list[Output]:
        """A response matched this transaction (§17.1.3)."""
        return self._step(status_input(response.status), response, now, from_wire=True)

    def _deliver(self, message: Request | Response | None, now: float) -> None:
        assert message is not None
        self._outputs.append(Deliver(message))

    def _timeout(self, message: Request | Response | None, now: float) -> None:
        self._outputs.append(TimedOut())

    def _transport_failed(self, message: Request | Response | None, now: float) -> None:
        self._outputs.append(TimedOut(transport_error=True))


class InviteClientTransaction(ClientTransaction):
    """§17.1.1 (with RFC 6026 Accepted): Calling → Proceeding → Completed/Accepted."""

    S, In = State, Input
    TRANSITIONS = {
        (S.CALLING, In.TIMER_RETRANSMIT): ("_retransmit", S.CALLING),
        (S.CALLING, In.TIMER_TIMEOUT): ("_timeout", S.TERMINATED),
        (S.CALLING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.CALLING, In.PROVISIONAL): ("_provisional", S.PROCEEDING),
        (S.CALLING, In.SUCCESS): ("_accepted", S.ACCEPTED),
        (S.CALLING, In.FAILURE): ("_completed", S.COMPLETED),
        (S.PROCEEDING, In.PROVISIONAL): ("_deliver", S.PROCEEDING),
        (S.PROCEEDING, In.SUCCESS): ("_accepted", S.ACCEPTED),
        (S.PROCEEDING, In.FAILURE): ("_completed", S.COMPLETED),
        (S.PROCEEDING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.PROCEEDING, In.TIMER_TIMEOUT): ("_timeout", S.TERMINATED),  # armed only by cancel_sent()
        (S.COMPLETED, In.FAILURE): ("_resend_ack", S.COMPLETED),
        (S.COMPLETED, In.TIMER_LINGER): (None, S.TERMINATED),
        (S.ACCEPTED, In.SUCCESS): ("_deliver", S.ACCEPTED),
        (S.ACCEPTED, In.TIMER_LINGER): (None, S.TERMINATED),
    }
    del S, In

    #: The state a new transaction starts in.
    INITIAL = State.CALLING

    def _retransmit(self, message: Request | Response | None, now: float) -> None:
        self._send(self.request)
        self._interval *= 2
        self._arm(Input.TIMER_RETRANSMIT, now + self._interval)

    def _provisional(self, message: Request | Response | None, now: float) -> None:
        # Timers A and B stop (§17.1.1.2: B runs in Calling only): a phone may ring for as long as the
        # TU's ring timer allows, and the TU ends the ringing with a CANCEL (see cancel_sent).
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)
        self._deliver(message, now)

    def cancel_sent(self, now: float) -> list[Output]:
        """A CANCEL for this INVITE went out (§9.1): without a final response within 64*T1 the
        transaction ends with a timeout, rather than waiting forever for a 487 from a peer that died."""
        self._outputs = []
        if self.state is State.PROCEEDING:
            self._arm(Input.TIMER_TIMEOUT, now + 64 * self.t1)
        return self._outputs

    def _completed(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)
        self.last_response = message
        self._send(build_ack_for_failure(self.request, message))
        self._arm(Input.TIMER_LINGER, now + (0.0 if self.reliable else 32.0))  # Timer D
        self._deliver(message, now)

    def _resend_ack(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self._send(build_ack_for_failure(self.request, message))

    def _accepted(self, message: Request | Response | None, now: float) -> None:
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)
        self._arm(Input.TIMER_LINGER, now + 64 * self.t1)  # Timer M (RFC 6026 §8.4)
        self._deliver(message, now)


class NonInviteClientTransaction(ClientTransaction):
    """§17.1.2: Trying → Proceeding → Completed → Terminated."""

    S, In = State, Input
    TRANSITIONS = {
        (S.TRYING, In.TIMER_RETRANSMIT): ("_retransmit", S.TRYING),
        (S.TRYING, In.TIMER_TIMEOUT): ("_timeout", S.TERMINATED),
        (S.TRYING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.TRYING, In.PROVISIONAL): ("_deliver", S.PROCEEDING),
        (S.TRYING, In.SUCCESS): ("_completed", S.COMPLETED),
        (S.TRYING, In.FAILURE): ("_completed", S.COMPLETED),
        (S.PROCEEDING, In.TIMER_RETRANSMIT): ("_retransmit", S.PROCEEDING),
        (S.PROCEEDING, In.TIMER_TIMEOUT): ("_timeout", S.TERMINATED),
        (S.PROCEEDING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.PROCEEDING, In.PROVISIONAL): ("_deliver", S.PROCEEDING),
        (S.PROCEEDING, In.SUCCESS): ("_completed", S.COMPLETED),
        (S.PROCEEDING, In.FAILURE): ("_completed", S.COMPLETED),
        (S.COMPLETED, In.TIMER_LINGER): (None, S.TERMINATED),
    }
    del S, In

    INITIAL = State.TRYING

    def _retransmit(self, message: Request | Response | None, now: float) -> None:
        self._send(self.request)
        # §17.1.2.2: doubling up to T2 in Trying; always T2 in Proceeding.
        self._interval = self.t2 if self.state is State.PROCEEDING else min(self._interval * 2, self.t2)
        self._arm(Input.TIMER_RETRANSMIT, now + self._interval)

    def _completed(self, message: Request | Response | None, now: float) -> None:
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)
        assert isinstance(message, Response)
        self.last_response = message
        self._arm(Input.TIMER_LINGER, now + (0.0 if self.reliable else self.t4))  # Timer K
        self._deliver(message, now)


class ServerTransaction(Transaction):
    """Shared parts of the two server transactions."""

    def send_response(self, response: Response, now: float) -> list[Output]:
        """The TU answers (§17.2.1, §17.2.2)."""
        inp = status_input(response.status)
        tu_input = {
            Input.PROVISIONAL: Input.SEND_PROVISIONAL,
            Input.SUCCESS: Input.SEND_SUCCESS,
            Input.FAILURE: Input.SEND_FAILURE,
        }[inp]
        self._pending = response
        return self._step(tu_input, response, now, from_wire=False)

    def receive_request(self, request: Request, now: float) -> list[Output]:
        """A retransmission of the request (or an ACK) matched this transaction."""
        inp = Input.ACK if request.method == "ACK" else Input.REQUEST_RETRANSMITTED
        return self._step(inp, request, now, from_wire=True)

    def _respond(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self.last_response = message
        self._send(message)

    def _resend_last(self, message: Request | Response | None, now: float) -> None:
        if self.last_response is not None:
            self._send(self.last_response)

    def _transport_failed(self, message: Request | Response | None, now: float) -> None:
        self._outputs.append(TimedOut(transport_error=True))


class InviteServerTransaction(ServerTransaction):
    """§17.2.1 (with RFC 6026 Accepted): Proceeding → Completed → Confirmed, or Accepted."""

    S, In = State, Input
    TRANSITIONS = {
        (S.PROCEEDING, In.REQUEST_RETRANSMITTED): ("_resend_last", S.PROCEEDING),
        (S.PROCEEDING, In.SEND_PROVISIONAL): ("_respond", S.PROCEEDING),
        (S.PROCEEDING, In.SEND_SUCCESS): ("_accept", S.ACCEPTED),
        (S.PROCEEDING, In.SEND_FAILURE): ("_complete", S.COMPLETED),
        (S.PROCEEDING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.COMPLETED, In.REQUEST_RETRANSMITTED): ("_resend_last", S.COMPLETED),
        (S.COMPLETED, In.TIMER_RETRANSMIT): ("_retransmit", S.COMPLETED),
        (S.COMPLETED, In.TIMER_TIMEOUT): ("_timeout", S.TERMINATED),
        (S.COMPLETED, In.ACK): ("_confirm", S.CONFIRMED),
        (S.COMPLETED, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.CONFIRMED, In.ACK): (None, S.CONFIRMED),
        (S.CONFIRMED, In.REQUEST_RETRANSMITTED): (None, S.CONFIRMED),
        (S.CONFIRMED, In.TIMER_LINGER): (None, S.TERMINATED),
        # RFC 6026 §7.1: 2xx retransmissions are sent by the core; we do them here,
        # with Timer G pacing, until the ACK (matched by the endpoint) or Timer L.
        (S.ACCEPTED, In.REQUEST_RETRANSMITTED): (None, S.ACCEPTED),
        (S.ACCEPTED, In.SEND_SUCCESS): ("_respond", S.ACCEPTED),
        (S.ACCEPTED, In.TIMER_RETRANSMIT): ("_retransmit", S.ACCEPTED),
        (S.ACCEPTED, In.ACK): ("_ack_2xx", S.ACCEPTED),
        (S.ACCEPTED, In.TIMER_TIMEOUT): ("_timeout_2xx", S.ACCEPTED),
        (S.ACCEPTED, In.TIMER_LINGER): (None, S.TERMINATED),
    }
    del S, In

    #: Set when the 2xx went unacknowledged for 64*self.t1 (the TU must end the dialog, §13.3.1.4).
    ack_missing = False
    #: Set by the TU for a refusal to a source that may be spoofed: the non-2xx final response is sent again
    #: only when the request is retransmitted (one for one), never on Timer G.  The client's own Timer A
    #: retransmissions still recover a lost response (§17.2.1 resends it for each), so nothing is lost.
    quiet = False

    def start(self, now: float) -> list[Output]:
        """Enter Proceeding; the TU (or the endpoint's 100 rule) sends the first response."""
        self.state = State.PROCEEDING
        return []

    def _accept(self, message: Request | Response | None, now: float) -> None:
        self._respond(message, now)
        if not self.reliable:
            self._interval = self.t1
            self._arm(Input.TIMER_RETRANSMIT, now + self.t1)
        self._arm(Input.TIMER_TIMEOUT, now + 64 * self.t1)
        self._arm(Input.TIMER_LINGER, now + 64 * self.t1 + 0.001)  # Timer L

    def _ack_2xx(self, message: Request | Response | None, now: float) -> None:
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)

    def _timeout_2xx(self, message: Request | Response | None, now: float) -> None:
        self._disarm(Input.TIMER_RETRANSMIT)
        self.ack_missing = True
        self._outputs.append(TimedOut())

    def _complete(self, message: Request | Response | None, now: float) -> None:
        self._respond(message, now)
        if not self.reliable and not self.quiet:
            self._interval = self.t1
            self._arm(Input.TIMER_RETRANSMIT, now + self.t1)  # Timer G
        self._arm(Input.TIMER_TIMEOUT, now + 64 * self.t1)  # Timer H

    def _retransmit(self, message: Request | Response | None, now: float) -> None:
        self._resend_last(None, now)
        self._interval = min(self._interval * 2, self.t2)
        self._arm(Input.TIMER_RETRANSMIT, now + self._interval)

    def _timeout(self, message: Request | Response | None, now: float) -> None:
        self._outputs.append(TimedOut())

    def _confirm(self, message: Request | Response | None, now: float) -> None:
        self._disarm(Input.TIMER_RETRANSMIT, Input.TIMER_TIMEOUT)
        self._arm(Input.TIMER_LINGER, now + (0.0 if self.reliable else self.t4))  # Timer I


class NonInviteServerTransaction(ServerTransaction):
    """§17.2.2: Trying → Proceeding → Completed → Terminated."""

    S, In = State, Input
    TRANSITIONS = {
        (S.TRYING, In.REQUEST_RETRANSMITTED): (None, S.TRYING),
        (S.TRYING, In.SEND_PROVISIONAL): ("_respond", S.PROCEEDING),
        (S.TRYING, In.SEND_SUCCESS): ("_complete", S.COMPLETED),
        (S.TRYING, In.SEND_FAILURE): ("_complete", S.COMPLETED),
        (S.PROCEEDING, In.REQUEST_RETRANSMITTED): ("_resend_last", S.PROCEEDING),
        (S.PROCEEDING, In.SEND_PROVISIONAL): ("_respond", S.PROCEEDING),
        (S.PROCEEDING, In.SEND_SUCCESS): ("_complete", S.COMPLETED),
        (S.PROCEEDING, In.SEND_FAILURE): ("_complete", S.COMPLETED),
        (S.PROCEEDING, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
        (S.COMPLETED, In.REQUEST_RETRANSMITTED): ("_resend_last", S.COMPLETED),
        (S.COMPLETED, In.TIMER_LINGER): (None, S.TERMINATED),
        (S.COMPLETED, In.TRANSPORT_ERROR): ("_transport_failed", S.TERMINATED),
    }
    del S, In

    def start(self, now: float) -> list[Output]:
        """Enter Trying."""
        self.state = State.TRYING
        return []

    def _complete(self, message: Request | Response | None, now: float) -> None:
        self._respond(message, now)
        self._arm(Input.TIMER_LINGER, now + (0.0 if self.reliable else 64 * self.t1))  # Timer J


TransactionFactory = Callable[[str, Request, bool, float], Transaction]
