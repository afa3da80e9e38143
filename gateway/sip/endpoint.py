"""The sans-IO SIP endpoint: transport layer rules plus the transaction layer (§17, §18).

Rules (aioquic ``QuicConnection`` style):

* Input: ``receive(data, peer, now)`` for each datagram or stream frame, and
  ``handle_timer(now)`` when ``get_timer()`` is due.  Peer garbage never raises:
  it becomes a :class:`MessageRejected` event (and a stateless 4xx/5xx when the
  request is routable).
* Output: ``next_event()`` for the transaction user, ``datagrams_to_send()``
  for the shell, which writes them to ``(transport, host, port)``.
* Commands from the TU: ``send_request``, ``send_response``, ``send_cancel``,
  ``send_stateless`` (ACK for 2xx), ``transport_failed``.
* Server transactions are matched by branch, sent-by and method (§17.2.3);
  client transactions by branch and CSeq method (§17.1.3).  Requests get
  ``received``/``rport`` on their top Via (§18.2.1, RFC 3581) and responses go
  back where §18.2.2 says.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import events as ev
from .errors import RemoteProtocolError
from .events import Peer
from .message import (
    ACCEPTED_TYPES,
    Headers,
    Request,
    Response,
    build_response,
    parse_message,
    validate_request,
)
from .transaction import (
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    State,
    TimedOut,
    Transaction,
)
from .uri import Params, split_unquoted

#: States in which a transaction still waits for (or owes) a final response.
_IN_PROGRESS = frozenset((State.CALLING, State.TRYING, State.PROCEEDING))
#: An INVITE of ours that nothing has answered after this many T1 (4 s by default: sent 4 times over UDP)
#: goes to a contact that is gone, as far as a drain is concerned (:meth:`SipEndpoint.in_progress`).
UNANSWERED_AFTER = 8

#: RFC 3261 §8.1.1.7 magic cookie that marks an RFC 3261 branch.
MAGIC_COOKIE = "z9hG4bK"


class RandomTokens:
    """Random hex ids (branches, tags) cut from one ``os.urandom`` read per ``batch`` ids.

    The same kernel CSPRNG as :func:`secrets.token_hex`, without a system call per id (one per id
    showed in the call-path profiles).  A forked child starts a fresh batch, never the parent's.
    """

    def __init__(self, nbytes: int, batch: int = 512) -> None:
        self.nbytes = nbytes
        self.size = nbytes * batch
        self._buffer = b""
        self._pos = 0
        _TOKEN_POOLS.add(self)

    def _discard(self) -> None:
        self._buffer, self._pos = b"", 0

    def __call__(self) -> str:
        pos = self._pos
        if pos + self.nbytes > len(self._buffer):
            self._buffer, pos = os.urandom(self.size), 0
        self._pos = pos + self.nbytes
        return self._buffer[pos:pos + self.nbytes].hex()


_TOKEN_POOLS: weakref.WeakSet[RandomTokens] = weakref.WeakSet()


def _discard_token_pools() -> None:
    for pool in list(_TOKEN_POOLS):
        pool._discard()


os.register_at_fork(after_in_child=_discard_token_pools)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What the endpoint needs to know about itself."""

    #: ``transport -> (host, port)`` written in the Via sent-by of our requests.
    local: dict[str, tuple[str, int]]
    #: Server / User-Agent header value.
    user_agent: str = "helppoint-gateway"
    #: Option tags we support (anything else in Require gets a 420).
    supported: frozenset[str] = frozenset({"timer", "replaces", "100rel"})
    #: Largest message accepted, in bytes.
    max_message_size: int = 65536
    #: Most header fields accepted in one message.
    max_headers: int = 256
    #: RFC 3261 T1, T2, T4 in seconds.
    timers: tuple[float, float, float] = (0.5, 4.0, 5.0)
    #: Random id source (branch, tags); replaced in tests for determinism.
    token: Callable[[], str] = field(default_factory=lambda: RandomTokens(8))


def _server_key(request: Request) -> str:
    """§17.2.3 matching key: branch, sent-by and method (ACK matches INVITE)."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    host, port = via.sent_by
    if branch.startswith(MAGIC_COOKIE):
        return f"s|{branch}|{host}|{port}|{method}"
    # RFC 2543 peers: Request-URI, tags, Call-ID, CSeq number and top Via (§17.2.3).
    from_tag = request.from_.tag or ""
    return f"s2543|{request.uri}|{from_tag}|{request.call_id}|{request.cseq[0]}|{via}|{method}"


def _merge_key(request: Request) -> tuple[str, str | None, int, str] | None:
    """§8.2.2.2: From tag, Call-ID and CSeq of a request outside a dialog (None inside one)."""
    if request.to.tag is not None:
        return None
    return (request.call_id, request.from_.tag, request.cseq[0], request.method)


def _client_key(branch: str, method: str) -> str:
    return f"c|{branch}|{'INVITE' if method == 'ACK' else method}"


def _stamp_via(request: Request, peer: Peer) -> Request:
    """Add ``received`` and fill ``rport`` on the top Via (§18.2.1, RFC 3581 §4)."""
    via = request.top_via
    params: Params = via.params
    changed = False
    if via.host != peer[1]:
        params = tuple(p for p in params if p[0].lower() != "received") + (("received", peer[1]),)
        changed = True
    if via.rport is not None:
        params = tuple((k, str(peer[2]) if k.lower() == "rport" else v) for k, v in params)
        changed = True
    if not changed:
        return request
    # Only the first value of the first Via line changes: the values after it on that line (split outside
    # quotes, as top_via was) and every later Via line stay (Headers.replace would drop those lines).
    items = list(request.headers)
    index = next(i for i, (k, _) in enumerate(items) if k.lower() in ("via", "v"))
    first_name, first_value = items[index]
    rest = split_unquoted(first_value, ",")[1:]
    items[index] = (first_name, ",".join([str(via.with_params(params)), *rest]))
    return request.with_headers(Headers(items))


def response_destination(request: Request, source: Peer) -> Peer:
    """Where responses to *request* go (§18.2.2, RFC 3581 §4).

    Always the source address: it is what ``received`` holds whenever it differs from the sent-by host
    (§18.2.1).  The Via's own host, ``received`` and ``rport`` values are never trusted, nor is the
    request assumed stamped (a rejected one is not): they would let anyone aim our answers at a third party.
    """
    if source[0] != "UDP":
        return source
    via = request.top_via
    if via.rport is not None:
        return source
    return (source[0], source[1], via.port or 5060)


_ECHOED = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
           "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}


def lenient_error_response(data: bytes, status: int, reason: str, to_tag: str) -> Response | None:
    """An error response built from the readable lines of an unparseable request, or None."""
    text = data.decode("utf-8", "surrogateescape").lstrip("\r\n")
    head = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    lines = head.replace("\r\n", "\n").split("\n")
    start = lines[0].split(" ")
    if len(start) != 3 or not start[2].upper().startswith("SIP/") or start[0].upper().startswith("SIP/"):
        return None
    if start[0] == "ACK":
        return None  # an ACK is never answered (§17.2.1)
    found: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = _ECHOED.get(name.strip().lower())
        if colon and canonical and value.strip():
            found.append((canonical, value.strip()))
    names = {n for n, _ in found}
    if names != {"Via", "From", "To", "Call-ID", "CSeq"}:
        return None
    try:
        request = Request(start[0], start[1], Headers(found))
        _ = request.top_via  # must parse: responses are routed by it
        return build_response(request, status, reason, to_tag=to_tag)
    except RemoteProtocolError:
        return None


class SipEndpoint:
    """One shared, single-threaded SIP endpoint (transport + transaction layers)."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._events: deque[ev.Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []
        self._txs: dict[str, Transaction] = {}
        self._peers: dict[str, Peer] = {}
        self._sources: dict[str, Peer] = {}
        self._heap: list[tuple[float, int, str]] = []
        # The deadline each transaction last has a heap entry for.
        self._scheduled: dict[str, float | None] = {}
        self._seq = 0
        # ACKs for 2xx carry a new branch: match them to the INVITE by Call-ID and CSeq.
        self._accepted: dict[tuple[str, int], str] = {}
        # CANCELs we must hold until a provisional arrives (§9.1).
        self._pending_cancel: dict[str, Request] = {}
        # Keys the branch of each ACK we send for a 2xx (see send_stateless): unguessable, like a token.
        self._ack_branch_key = os.urandom(16)
        # Server transactions of requests without To tag, by what §8.2.2.2 compares to find merged ones.
        self._merge: dict[tuple[str, str | None, int, str], str] = {}

    # -- outputs -------------------------------------------------------------
    def next_event(self) -> ev.Event | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Peer]]:
        """Everything to put on the wire, with its destination."""
        out, self._out = self._out, []
        return out

    def get_timer(self) -> float | None:
        """The next time ``handle_timer`` must be called, or None."""
        heap = self._heap
        while heap:
            at, _, key = heap[0]
            tx = self._txs.get(key)
            if tx is not None and tx.deadline() == at:
                return at
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every transaction timer due at *now*."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            tx = self._txs.get(key)
            if tx is None or tx.deadline() != at:
                continue
            self._apply(tx, tx.handle_timer(now))

    def in_progress(self, now: float) -> int:
        """Transactions a graceful drain waits for at ``now``: requests we owe a final response, our
        non-INVITE requests (BYE, CANCEL) waiting for theirs, and our INVITEs still being settled (ringing,
        or cancelled and waiting for the 487, or waiting for the provisional response a held-back CANCEL
        needs, RFC 3261 §9.1).

        Left out: our INVITEs that no response has answered for ``UNANSWERED_AFTER`` retransmission
        intervals (4 s with T1 = 0.5 s; a live phone sends 100 Trying within milliseconds).  Those go to a
        contact that is gone (a dead softphone's stale binding); only Timer B ends them, 32 s on, and
        waiting for them would keep turning presses away for nothing.
        """
        count = 0
        for tx in self._txs.values():
            state = tx.state
            if state not in _IN_PROGRESS:
                continue
            if state is State.CALLING and now - tx.created >= UNANSWERED_AFTER * tx.t1:
                continue
            count += 1
        return count

    @property
    def transaction_count(self) -> int:
        """Number of live transactions (for metrics and drain)."""
        return len(self._txs)

    # -- input ---------------------------------------------------------------
    def receive(self, data: bytes, peer: Peer, now: float) -> None:
        """Feed one datagram or one framed stream message."""
        if data[:1] in (b"\r", b"\n") and not data.strip(b"\r\n"):
            return  # a CRLF keep-alive (RFC 5626 §3.5.1; sent over UDP by many phones behind NAT)
        try:
            message = parse_message(
                data, max_size=self.config.max_message_size, max_headers=self.config.max_headers
            )
        except RemoteProtocolError as exc:
            status = self._reject_unparsed(data, peer, exc)
            self._events.append(ev.MessageRejected(peer, status, str(exc)))
            return
        if isinstance(message, Response):
            self._receive_response(message, peer, now)
        else:
            self._receive_request(message, peer, now)

    def _reject_unparsed(self, data: bytes, peer: Peer, exc: RemoteProtocolError) -> int:
        """Answer a request that failed to parse when it is still routable (§8.2, §18.2.2).

        The Via, From, To, Call-ID and CSeq lines are read leniently; without all of
        them, or for a response, nothing can be sent back and 0 is returned.
        """
        response = lenient_error_response(data[:16384], exc.status, exc.reason, self.config.token())
        if response is None:
            return 0
        dest = peer
        if peer[0] == "UDP":
            try:
                dest = response_destination(Request("OPTIONS", "sip:x", response.headers), peer)
            except RemoteProtocolError:
                return 0
        self._out.append((bytes(self._decorate(response)), dest))
        return exc.status

    def _reject(self, request: Request, peer: Peer, status: int, reason: str) -> None:
        self._events.append(ev.MessageRejected(peer, status, reason))
        if request.method == "ACK":
            return
        extra: tuple[tuple[str, str], ...] = ()
        if status == 415:
            extra = (("Accept", ", ".join(sorted(ACCEPTED_TYPES))),)
        elif status == 420:
            extra = (("Unsupported", ", ".join(r for r in request.headers.get_all("Require")
                                              if r.lower() not in self.config.supported)),)
        try:
            response = build_response(request, status, reason, to_tag=self.config.token(), headers=extra)
            dest = response_destination(request, peer)
        except RemoteProtocolError:
            self._events.append(ev.MessageRejected(peer, 0, "unroutable: " + reason))
            return
        self._out.append((bytes(self._decorate(response)), dest))

    def _receive_request(self, request: Request, peer: Peer, now: float) -> None:
        verdict = validate_request(request, self.config.supported)
        if verdict is not None:
            status, reason = verdict
            self._reject(request, peer, status, reason)
            return
        try:
            request = _stamp_via(request, peer)
            key = _server_key(request)
        except RemoteProtocolError as exc:
            self._reject(request, peer, exc.status, str(exc))
            return
        tx = self._txs.get(key)
        if request.method == "ACK":
            if tx is not None and isinstance(tx, InviteServerTransaction) and tx.state.value != "Accepted":
                self._apply(tx, tx.receive_request(request, now))
                return
            accepted_key = self._accepted.get((request.call_id, request.cseq[0]))
            if accepted_key is not None and accepted_key in self._txs:
                self._apply(self._txs[accepted_key], self._txs[accepted_key].receive_request(request, now))
            self._events.append(ev.RequestReceived(request, peer, None))
            return
        if tx is not None:
            self._apply(tx, tx.receive_request(request, now))
            return
        reliable = peer[0] != "UDP"
        if request.method == "CANCEL":
            self._receive_cancel(request, peer, key, reliable, now)
            return
        merge = _merge_key(request)
        if merge is not None:
            other = self._txs.get(self._merge.get(merge, ""))
            if other is not None and other.state in _IN_PROGRESS:
                # §8.2.2.2: the same request by another path (a fork that came back): answered once.
                self._reject(request, peer, 482, "Loop Detected")
                return
            self._merge[merge] = key
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        tx = cls(key, request, reliable, now, self.config.timers)
        self._txs[key] = tx
        self._sources[key] = peer
        self._peers[key] = response_destination(request, peer)
        tx.start(now)
        if request.method == "INVITE":
            # §17.2.1: a 100 Trying stops the client's retransmissions at once.
            self._apply(tx, tx.send_response(self._decorate(build_response(request, 100)), now))
        self._events.append(ev.RequestReceived(request, peer, key))

    def _receive_cancel(self, cancel: Request, peer: Peer, key: str, reliable: bool, now: float) -> None:
        invite_key = key.rsplit("|", 1)[0] + "|INVITE"
        invite_tx = self._txs.get(invite_key)
        tx = NonInviteServerTransaction(key, cancel, reliable, now, self.config.timers)
        self._txs[key] = tx
        self._peers[key] = response_destination(cancel, peer)
        tx.start(now)
        pending = invite_tx is not None and invite_tx.state.value == "Proceeding"
        # §9.2: a CANCEL matching a transaction gets 200 even when a final response has gone already.
        status = 481 if invite_tx is None else 200
        self._apply(tx, tx.send_response(self._decorate(build_response(cancel, status, to_tag=self.config.token())), now))
        if pending:
            self._events.append(ev.CancelReceived(cancel, peer, invite_key))

    def _receive_response(self, response: Response, peer: Peer, now: float) -> None:
        try:
            via = response.top_via
            _, method = response.cseq
        except RemoteProtocolError as exc:
            self._events.append(ev.MessageRejected(peer, 0, str(exc)))
            return
        if _more_than_one_via(response.headers):
            return  # §18.1.2: a response with more than one Via is not for us (we send requests with one)
        key = _client_key(via.branch or "", method)
        tx = self._txs.get(key)
        if tx is None or not isinstance(tx, InviteClientTransaction | NonInviteClientTransaction):
            return  # §18.1.2: a response matching no transaction is discarded
        outputs = tx.receive_response(response, now)
        self._apply(tx, outputs, source=peer)
        if response.status >= 100 and response.status < 200 and key in self._pending_cancel:
            self._start_cancel(key, now)
        elif response.status >= 200:
            self._pending_cancel.pop(key, None)

    # -- commands from the TU --------------------------------------------------
    def _decorate(self, message: Response) -> Response:
        if message.headers.get("Server") is None:
            return message.with_headers(message.headers.add("Server", self.config.user_agent))
        return message

    def _via_for(self, transport: str, branch: str) -> str:
        host, port = self.config.local.get(transport) or next(iter(self.config.local.values()))
        return f"SIP/2.0/{transport} {host}:{port};branch={branch};rport"

    def send_request(self, request: Request, dest: Peer, now: float) -> str:
        """Start a client transaction for *request* towards *dest*; returns its key.

        A top Via with a fresh branch is added; everything else is the caller's.
        """
        branch = MAGIC_COOKIE + self.config.token()
        request = request.with_headers(request.headers.add("Via", self._via_for(dest[0], branch), first=True))
        key = _client_key(branch, request.method)
        reliable = dest[0] != "UDP"
        tx: InviteClientTransaction | NonInviteClientTransaction
        if request.method == "INVITE":
            tx = InviteClientTransaction(key, request, reliable, now, self.config.timers)
        else:
            tx = NonInviteClientTransaction(key, request, reliable, now, self.config.timers)
        self._txs[key] = tx
        self._peers[key] = dest
        self._apply(tx, tx.start(now))
        return key

    def send_response(self, transaction: str, response: Response, now: float, *, retransmit: bool = True) -> None:
        """Answer the server transaction *transaction* (ignored when it has ended).

        ``retransmit=False`` (an INVITE refused with 3xx-6xx, to a source that may be spoofed): the answer is
        sent again only for each retransmission of the request, never on Timer G, and an automatic 100
        Trying not yet sent is withdrawn: one packet out per packet in.
        """
        tx = self._txs.get(transaction)
        if tx is None or not isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
            return
        response = self._decorate(response)
        if not retransmit and isinstance(tx, InviteServerTransaction) and response.status >= 300:
            tx.quiet = True
            self._withdraw_trying(tx)
        if isinstance(tx, InviteServerTransaction) and 200 <= response.status < 300:
            self._accepted[(tx.request.call_id, tx.request.cseq[0])] = transaction
        self._apply(tx, tx.send_response(response, now))

    def send_stateless(self, message: Request | Response, dest: Peer) -> None:
        """Send outside any transaction: the ACK for a 2xx (§13.2.2.4), with a Via added.

        The ACK is a transaction of its own (a branch of its own), yet §13.2.2.4 passes *the* ACK to the
        transport again for each retransmission of its 2xx.  So its branch is derived from what names that
        2xx (Call-ID, tags, CSeq number), keyed with a secret of this endpoint: a 2xx that came again (we
        were slow to ACK it) gets the same ACK, byte for byte, which a peer absorbs as a copy where a new
        branch would be a second ACK (SIPp aborts the call on it); another INVITE's or another fork's 2xx
        gets another branch.  Any other request gets a fresh branch.
        """
        if isinstance(message, Request):
            if message.method == "ACK":
                branch = MAGIC_COOKIE + self._ack_branch(message)
            else:
                branch = MAGIC_COOKIE + self.config.token()
            message = message.with_headers(message.headers.add("Via", self._via_for(dest[0], branch), first=True))
        self._out.append((bytes(message), dest))

    def _ack_branch(self, ack: Request) -> str:
        """The same branch for every copy of the ACK of one 2xx (see :meth:`send_stateless`)."""
        names = "\0".join((ack.call_id, ack.from_.tag or "", ack.to.tag or "", str(ack.cseq[0])))
        return hashlib.blake2b(names.encode("utf-8", "surrogateescape"), key=self._ack_branch_key,
                               digest_size=12).hexdigest()

    def send_cancel(self, invite_transaction: str, now: float, reason: str | None = None) -> None:
        """CANCEL a pending client INVITE (§9.1): sent once a provisional has arrived.

        *reason* is an RFC 3326 Reason header value, e.g. ``SIP;cause=200;text="Call completed elsewhere"``.
        """
        tx = self._txs.get(invite_transaction)
        if not isinstance(tx, InviteClientTransaction) or tx.state.value not in ("Calling", "Proceeding"):
            return
        invite = tx.request
        headers = [("Via", invite.headers.get_all("Via")[0])]
        headers += [(k, v) for k, v in invite.headers if k.lower() == "route"]
        headers += [
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq[0]} CANCEL"),
        ]
        if reason:
            headers.append(("Reason", reason))
        self._pending_cancel[invite_transaction] = Request("CANCEL", invite.uri, Headers(headers))
        if tx.state.value == "Proceeding":
            self._start_cancel(invite_transaction, now)

    def _start_cancel(self, invite_key: str, now: float) -> None:
        cancel = self._pending_cancel.pop(invite_key)
        branch = cancel.top_via.branch or ""
        key = _client_key(branch, "CANCEL")
        dest = self._peers[invite_key]
        tx = NonInviteClientTransaction(key, cancel, dest[0] != "UDP", now, self.config.timers)
        self._txs[key] = tx
        self._peers[key] = dest
        self._apply(tx, tx.start(now))
        invite_tx = self._txs.get(invite_key)
        if isinstance(invite_tx, InviteClientTransaction):
            self._apply(invite_tx, invite_tx.cancel_sent(now))

    def drop(self, transaction: str) -> None:
        """Forget a server transaction without answering (a rate-limited request).

        An INVITE's automatic 100 Trying not yet taken by ``datagrams_to_send`` is withdrawn too.
        """
        tx = self._txs.get(transaction)
        if tx is not None:
            if isinstance(tx, InviteServerTransaction):
                self._withdraw_trying(tx)
            self._forget(tx)

    def _withdraw_trying(self, tx: InviteServerTransaction) -> None:
        """Take back the INVITE's automatic 100 Trying if ``datagrams_to_send`` has not taken it yet."""
        if tx.last_response is not None and tx.last_response.status == 100:
            trying = bytes(tx.last_response)
            self._out = [out for out in self._out if out[0] != trying]

    def transport_failed(self, dest: Peer, now: float) -> None:
        """The shell could not reach *dest*: fail every transaction waiting on it."""
        for key, peer in list(self._peers.items()):
            tx = self._txs.get(key)
            if peer == dest and tx is not None and not tx.terminated:
                self._apply(tx, tx.transport_error(now))

    # -- plumbing --------------------------------------------------------------
    def _apply(self, tx: Transaction, outputs: list, source: Peer | None = None) -> None:
        dest = self._peers.get(tx.key)
        for out in outputs:
            if isinstance(out, Send):
                if dest is not None:
                    self._out.append((out.data, dest))
            elif isinstance(out, Deliver):
                msg = out.message
                if isinstance(msg, Response):
                    self._events.append(ev.ResponseReceived(msg, tx.key, source or dest or ("UDP", "", 0)))
            elif isinstance(out, TimedOut):
                self._events.append(ev.TransactionTimedOut(tx.key, tx.request, out.transport_error))
        if tx.terminated:
            self._forget(tx)
        else:
            at = tx.deadline()
            # One heap entry per deadline, not per input: a flood of retransmissions absorbed by a
            # Completed transaction must not grow the heap until Timer J fires.
            if at != self._scheduled.get(tx.key):
                self._scheduled[tx.key] = at
                if at is not None:
                    self._seq += 1
                    heapq.heappush(self._heap, (at, self._seq, tx.key))

    def _forget(self, tx: Transaction) -> None:
        self._txs.pop(tx.key, None)
        self._peers.pop(tx.key, None)
        self._sources.pop(tx.key, None)
        self._scheduled.pop(tx.key, None)
        self._pending_cancel.pop(tx.key, None)
        merge = _merge_key(tx.request) if isinstance(tx, InviteServerTransaction | NonInviteServerTransaction) else None
        if merge is not None and self._merge.get(merge) == tx.key:
            del self._merge[merge]
        if isinstance(tx, InviteServerTransaction):
            self._accepted.pop((tx.request.call_id, tx.request.cseq[0]), None)


def _more_than_one_via(headers: Headers) -> bool:
    """True when a message carries more than one Via value (several lines, or one line with a comma outside
    quotes); the comma test runs only on the rare line that has one."""
    if headers.count_of("Via") != 1:
        return True
    first = headers.get("Via") or ""
    return "," in first and len(split_unquoted(first, ",")) > 1
