"""The registrar's shell: SIP REGISTER in, response out, bindings persisted behind.

The pure :class:`~gateway.registrar.registrar.Registrar` decides.  This module
translates SIP messages to its plain values and back, keeps a credentials
cache (positive and negative, so a scanner guessing user names cannot load the
database), and hands changed binding sets to a write-behind sink.  It never
imports the store: ``__main__``/``service`` pass the store's functions in.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.events import Peer
from gateway.sip.message import Request, Response, build_response, parse_uri

from .bindings import Binding, ContactSpec, Source
from .digest import AuthResult, DigestCredentials
from .errors import DigestParseError
from .registrar import Decision, Ha1Credentials, RegisterOutcome, RegisterRequest, Registrar

log = logging.getLogger(__name__)

#: ``await lookup(user, realm)`` -> the credentials record, or None for an unknown user.
CredentialLookup = Callable[[str, str], Awaitable[Ha1Credentials | None]]
#: Called with ``(aor, bindings)`` whenever an AOR's binding set changed.
BindingSink = Callable[[str, tuple[Binding, ...]], None]


@dataclass(frozen=True)
class _Cached:
    record: Ha1Credentials | None
    at: float


class CredentialCache:
    """Bounded LRU of credential look-ups; unknown users are remembered for ``negative_ttl``."""

    def __init__(self, lookup: CredentialLookup, realm: str, capacity: int = 4096,
                 negative_ttl: float = 30.0, positive_ttl: float = 300.0) -> None:
        self._lookup = lookup
        self.realm = realm
        self.capacity = capacity
        self.negative_ttl = negative_ttl
        self.positive_ttl = positive_ttl
        self._items: OrderedDict[str, _Cached] = OrderedDict()

    def peek(self, user: str, now: float) -> tuple[bool, Ha1Credentials | None]:
        """``(hit, record)`` without touching the database."""
        item = self._items.get(user)
        if item is None:
            return False, None
        ttl = self.positive_ttl if item.record is not None else self.negative_ttl
        if now - item.at > ttl:
            del self._items[user]
            return False, None
        self._items.move_to_end(user)
        return True, item.record

    def put(self, user: str, record: Ha1Credentials | None, now: float) -> None:
        """Remember a look-up result."""
        self._items[user] = _Cached(record, now)
        self._items.move_to_end(user)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    async def fetch(self, user: str, now: float) -> Ha1Credentials | None:
        """Look *user* up in the database and cache the answer."""
        record = await self._lookup(user, self.realm)
        self.put(user, record, now)
        return record

    def clear(self) -> None:
        """Forget everything (after ``gateway credentials set`` and SIGHUP)."""
        self._items.clear()


def register_request(request: Request, source: Peer) -> RegisterRequest:
    """The registrar's view of a SIP REGISTER (raises RemoteProtocolError when malformed)."""
    to_uri = request.to.uri
    to_user = getattr(to_uri, "user", None)
    contacts = []
    for contact in request.contacts:
        if contact.uri == "*":
            contacts.append(ContactSpec(uri="*", expires=contact.param("expires")))
        else:
            contacts.append(ContactSpec.from_params(str(contact.uri), contact.params))
    return RegisterRequest(
        request_uri=request.uri,
        to_user=to_user,
        call_id=request.call_id,
        cseq=request.cseq[0],
        contacts=tuple(contacts),
        source=Source(host=source[1], port=source[2], transport=source[0]),
        expires=request.headers.get("Expires"),
        authorization=tuple(request.headers.values("Authorization")),
        user_agent=request.headers.get("User-Agent"),
    )


class RegistrarService:
    """Answers REGISTER requests; calls ``respond`` with the response (maybe after a DB look-up)."""

    def __init__(self, registrar: Registrar, credentials: CredentialCache, sink: BindingSink,
                 spawn: Callable[[Awaitable[None]], None], clock: Callable[[], float] = time.time) -> None:
        self.registrar = registrar
        self.credentials = credentials
        self.sink = sink
        self.spawn = spawn
        self.clock = clock

    def handle(self, request: Request, source: Peer, respond: Callable[[Response, Decision | None], None],
               to_tag: str) -> None:
        """Decide a REGISTER now when possible, else after an async credentials look-up."""
        try:
            reg = register_request(request, source)
        except RemoteProtocolError as exc:
            respond(build_response(request, exc.status, exc.reason, to_tag=to_tag), None)
            return
        now = self.clock()
        user = self.registrar.username_to_look_up(reg)
        if user is None:
            self._decide(request, reg, None, respond, to_tag)
            return
        hit, record = self.credentials.peek(user, now)
        if hit:
            self._decide(request, reg, record, respond, to_tag)
            return

        async def later() -> None:
            try:
                rec = await self.credentials.fetch(user, self.clock())
            except Exception:  # the store failed: answer, never leave the device waiting for nothing
                log.exception("REGISTER from %s:%s: credentials could not be read; answered 503",
                              reg.source.host, reg.source.port)
                headers = (("Retry-After", "5"),)
                respond(build_response(request, 503, "Service Unavailable", to_tag=to_tag, headers=headers),
                        Decision(503, "Service Unavailable", RegisterOutcome.UNAVAILABLE, headers))
                return
            self._decide(request, reg, rec, respond, to_tag)

        self.spawn(later())

    def _decide(self, request: Request, reg: RegisterRequest, record: Ha1Credentials | None,
                respond: Callable[[Response, Decision | None], None], to_tag: str) -> None:
        decision = self.registrar.handle_register(reg, record, self.clock())
        if decision.persist is not None and decision.aor is not None:
            self.sink(decision.aor, decision.persist)
        if decision.counter.value not in ("ok", "challenged"):
            # Never log credentials: the detail names the user and the reason only.
            log.info("REGISTER from %s:%s refused (%s): %s", reg.source.host, reg.source.port,
                     decision.counter.value, decision.detail)
        response = build_response(request, decision.status, decision.reason, to_tag=to_tag,
                                  headers=decision.headers)
        respond(response, decision)


class Admission(enum.Enum):
    """The verdict on a request that must come from a known, authenticated user (INVITE)."""

    OK = "ok"
    CHALLENGE = "challenge"
    STALE = "stale"
    FORBIDDEN = "forbidden"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class Presented:
    """The credentials a request presents for our realm, parsed once (RFC 3261 §22.4).

    ``digest`` is None when there are none; ``error`` says why they are malformed.
    """

    digest: DigestCredentials | None
    error: str | None = None

    @property
    def username(self) -> str | None:
        """The user whose stored credentials :func:`admit` needs (None when none are needed)."""
        return self.digest.username if self.digest is not None else None


def presented_credentials(registrar: Registrar, request: Request) -> Presented:
    """Parse a request's ``Authorization`` values for our realm (once per request: hand the result on)."""
    try:
        return Presented(registrar.auth.select(request.headers.values("Authorization")))
    except DigestParseError as exc:  # malformed credentials
        return Presented(None, str(exc))


def admit(registrar: Registrar, request: Request, source: Peer, record: Ha1Credentials | None,
          now: float, presented: Presented | None = None) -> tuple[Admission, str]:
    """Authenticate a non-REGISTER request by source network or digest (RFC 3261 §22.2).

    ``presented`` is :func:`presented_credentials` of the request when the caller already has it.
    Returns the verdict and the authenticated user (or the reason, for logs).
    """
    user = getattr(request.from_.uri, "user", None) or ""
    if user and registrar.admitted_by_network(user, Source(source[1], source[2], source[0])):
        return Admission.OK, user
    if presented is None:
        presented = presented_credentials(registrar, request)
    if presented.error is not None:
        return Admission.MALFORMED, presented.error
    digest = presented.digest
    if digest is None:
        return Admission.CHALLENGE, "no credentials"
    if record is None:
        return Admission.FORBIDDEN, f"unknown user {digest.username!r}"
    ha1 = record.ha1_md5 if digest.algorithm.hash_name == "md5" else record.ha1_sha256
    result = registrar.auth.verify(digest, ha1, method=request.method, request_uri=request.uri, now=now)
    if result is AuthResult.OK:
        if user and digest.username != user:
            return Admission.FORBIDDEN, f"{digest.username!r} may not call as {user!r}"
        return Admission.OK, digest.username
    if result in (AuthResult.STALE, AuthResult.REPLAY):
        return Admission.STALE, result.value
    if result is AuthResult.BAD_RESPONSE:
        return Admission.FORBIDDEN, f"wrong password for {digest.username!r}"
    return Admission.MALFORMED, result.value


def digest_user(registrar: Registrar, request: Request) -> str | None:
    """The user whose credentials :func:`admit` will need (None when none is needed)."""
    return presented_credentials(registrar, request).username


def contact_destination(contact: str, source: Source) -> Peer:
    """Where to send requests for a registered contact.

    Over TCP, the connection the REGISTER came on (the flow).  Over UDP, the
    Contact's own address when the REGISTER came from that host (the device said
    where it listens), else the packet source: the contact sits behind NAT (4G
    help points) and only the NAT binding's public address and port reach it.
    """
    if source.transport != "UDP":
        return (source.transport, source.host, source.port)
    try:
        uri = parse_uri(contact)
    except RemoteProtocolError:
        return (source.transport, source.host, source.port)
    if uri.host.strip("[]") == source.host and (uri.param("transport") or "udp").lower() == "udp":
        return ("UDP", source.host, uri.port or 5060)
    return (source.transport, source.host, source.port)
