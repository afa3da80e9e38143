"""The registrar (RFC 3261 §10.3) as a pure object: REGISTER fields in, a :class:`Decision` out.

Rules of this module:

- Sans-IO: no sockets, clocks or database.  ``now`` is **wall-clock** seconds since the epoch
  (``time.time()`` in the shell): bindings and nonces outlive a restart, and the 200 carries a
  ``Date`` header computed from it.
- Peer input never raises: malformed credentials or contacts become a 400, and every decision
  carries a ``counter`` label (:class:`RegisterOutcome`) for ``gateway_registrations_total``.
- The credential store is async, so the shell looks credentials up between two pure calls::

      user = registrar.username_to_look_up(request)
      creds = await store.get_credentials(user, registrar.realm) if user else None
      decision = registrar.handle_register(request, creds, now)
      if decision.persist is not None:
          await store.save_bindings(decision.aor, decision.persist)

- Unknown users and wrong passwords get 403 (counted), missing credentials a 401 challenge,
  correct credentials over an old nonce or a reused nonce-count a 401 with ``stale=true``.
- A help point whose inventory entry lists source networks is admitted without digest only when
  the REGISTER came from inside one of them; from anywhere else it must authenticate.
- One registrar domain: the AOR is ``sip:<To user>@<domain>`` whatever host the To URI names.
"""

from __future__ import annotations

import enum
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .bindings import (
    Binding,
    BindingPolicy,
    BindingRequest,
    ContactSpec,
    Source,
    active,
    expired,
    update_bindings,
)
from .digest import Algorithm, AuthResult, DigestAuthenticator
from .errors import DigestParseError

__all__ = ["Decision", "Ha1Credentials", "RegisterOutcome", "RegisterRequest", "Registrar"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RegisterOutcome(enum.StrEnum):
    """The ``counter`` label of a decision (a bounded set: safe as a metric label)."""

    OK = "ok"
    CHALLENGED = "challenged"
    """No credentials for our realm: 401 with a fresh challenge."""
    UNKNOWN_USER = "unknown_user"
    BAD_PASSWORD = "bad_password"
    STALE_NONCE = "stale_nonce"
    REPLAY = "replay"
    MALFORMED = "malformed"
    INTERVAL_TOO_BRIEF = "interval_too_brief"
    FORBIDDEN = "forbidden"
    """Authenticated, but as another user than the AOR being registered."""
    REJECTED = "rejected"
    """Refused by registrar policy: out-of-order CSeq, too many contacts."""
    UNAVAILABLE = "unavailable"
    """The credentials could not be read (the store failed): 503, the device retries."""


class Ha1Credentials(Protocol):
    """What the registrar needs from a credentials record (``gateway.store`` rows fit)."""

    @property
    def ha1_md5(self) -> str | None:
        """``MD5(user:realm:password)`` in hex."""
        ...

    @property
    def ha1_sha256(self) -> str | None:
        """``SHA-256(user:realm:password)`` in hex."""
        ...


@dataclass(frozen=True)
class RegisterRequest:
    """The REGISTER fields the registrar decides on, as plain values."""

    request_uri: str
    to_user: str | None
    """User part of the To URI: names the address-of-record."""
    call_id: str
    cseq: int
    contacts: tuple[ContactSpec, ...]
    source: Source
    expires: str | None = None
    """Raw Expires header value, if any."""
    authorization: tuple[str, ...] = ()
    """Every Authorization header value, in order."""
    user_agent: str | None = None


@dataclass(frozen=True)
class Decision:
    """How to answer one REGISTER, and what to persist."""

    status: int
    reason: str
    counter: RegisterOutcome
    headers: tuple[tuple[str, str], ...] = ()
    """Headers to add to the response: WWW-Authenticate (one per algorithm), Contact (one per
    binding), Expires, Min-Expires, Date."""
    aor: str | None = None
    bindings: tuple[Binding, ...] = ()
    """Live bindings of the AOR after the request (what the 200 echoes)."""
    persist: tuple[Binding, ...] | None = None
    """The AOR's complete new binding set to save, or None when nothing changed."""
    username: str | None = None
    """The authenticated user (the To user when admitted by source network)."""
    detail: str = ""
    """Why, in words, for the log (never contains credentials)."""


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _sip_date(now: float) -> str:
    """RFC 3261 §20.17 SIP-date (RFC 1123 form, always GMT), locale-independent."""
    t = datetime.fromtimestamp(now, UTC)
    return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year} {t:%H:%M:%S} GMT"


def _parse_networks(entries: Iterable[str | IpNetwork]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _source_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Registrar:
    """Location service plus REGISTER handling for one realm; pure, driven by ``now``."""

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        domain: str | None = None,
        policy: BindingPolicy | None = None,
        admitted_networks: Mapping[str, Iterable[str | IpNetwork]] | None = None,
        algorithms: Iterable[Algorithm] = (Algorithm.SHA_256, Algorithm.MD5),
        nonce_lifetime: float = 300.0,
        replay_capacity: int = 65536,
        allow_rfc2069: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.realm = realm
        self.domain = domain or realm
        self.policy = policy or BindingPolicy()
        self.admitted_networks = {
            user: _parse_networks(nets) for user, nets in (admitted_networks or {}).items()
        }
        self.auth = DigestAuthenticator(
            realm,
            secret,
            algorithms=algorithms,
            nonce_lifetime=nonce_lifetime,
            replay_capacity=replay_capacity,
            allow_rfc2069=allow_rfc2069,
            random_bytes=random_bytes,
        )
        self._bindings: dict[str, tuple[Binding, ...]] = {}

    # -- location service ------------------------------------------------------------------

    def aor_for(self, user: str) -> str:
        """The address-of-record of ``user`` in our domain."""
        return f"sip:{user}@{self.domain}"

    def load(self, bindings: Iterable[Binding], now: float) -> None:
        """Replace the in-memory location table (at start-up, from the store); drops expired ones."""
        table: dict[str, list[Binding]] = {}
        for binding in active(bindings, now):
            table.setdefault(binding.aor, []).append(binding)
        self._bindings = {aor: tuple(group) for aor, group in table.items()}

    def lookup(self, aor: str, now: float) -> tuple[Binding, ...]:
        """Live bindings of ``aor`` (or of a bare user name): highest ``q`` first, then the most
        recently registered first (a unit that came back with a new Contact is reached there, not
        at the dead one still waiting to expire)."""
        if ":" not in aor:
            aor = self.aor_for(aor)
        newest_first = reversed(active(self._bindings.get(aor, ()), now))  # kept in registration order
        return tuple(sorted(newest_first, key=lambda b: -(b.q if b.q is not None else 1.0)))

    def all_bindings(self, now: float) -> tuple[Binding, ...]:
        """Every live binding, for the API and health views."""
        return tuple(b for group in self._bindings.values() for b in active(group, now))

    def sweep(self, now: float) -> tuple[Binding, ...]:
        """Forget bindings expired at ``now`` and return them (the shell also deletes them in the store)."""
        gone: list[Binding] = []
        for aor, group in list(self._bindings.items()):
            dead = expired(group, now)
            if dead:
                gone.extend(dead)
                left = active(group, now)
                if left:
                    self._bindings[aor] = left
                else:
                    del self._bindings[aor]
        return tuple(gone)

    # -- REGISTER ----------------------------------------------------------------------------

    def username_to_look_up(self, request: RegisterRequest) -> str | None:
        """The digest user whose credentials :meth:`handle_register` will need, if any."""
        if request.to_user and self.admitted_by_network(request.to_user, request.source):
            return None
        try:
            credentials = self.auth.select(request.authorization)
        except DigestParseError:
            return None
        return credentials.username if credentials is not None else None

    def handle_register(
        self, request: RegisterRequest, credentials: Ha1Credentials | None, now: float
    ) -> Decision:
        """Decide the response to a REGISTER (RFC 3261 §10.3), updating the location table on 200.

        ``credentials`` is the record of :meth:`username_to_look_up`'s user in our realm, or None.
        """
        if not request.to_user:
            return Decision(400, "Bad Request", RegisterOutcome.MALFORMED, detail="To URI has no user part")
        aor = self.aor_for(request.to_user)
        if self.admitted_by_network(request.to_user, request.source):
            return self._apply(request, aor, request.to_user, now, "admitted by source network")

        try:
            digest = self.auth.select(request.authorization)
        except DigestParseError as exc:
            return Decision(exc.status, exc.reason, RegisterOutcome.MALFORMED, aor=aor, detail=str(exc))
        if digest is None:
            return self._challenge(RegisterOutcome.CHALLENGED, aor, now, "no credentials for our realm")
        if credentials is None:
            return Decision(
                403,
                "Forbidden",
                RegisterOutcome.UNKNOWN_USER,
                aor=aor,
                detail=f"unknown user {digest.username!r}",
            )
        ha1 = credentials.ha1_md5 if digest.algorithm.hash_name == "md5" else credentials.ha1_sha256
        result = self.auth.verify(digest, ha1, method="REGISTER", request_uri=request.request_uri, now=now)
        if result is AuthResult.BAD_RESPONSE:
            return Decision(
                403,
                "Forbidden",
                RegisterOutcome.BAD_PASSWORD,
                aor=aor,
                detail=f"wrong response for {digest.username!r}",
            )
        if result is AuthResult.STALE:
            return self._challenge(RegisterOutcome.STALE_NONCE, aor, now, "stale nonce", stale=True)
        if result is AuthResult.REPLAY:
            return self._challenge(
                RegisterOutcome.REPLAY, aor, now, f"nonce-count {digest.nc_text} reused", stale=True
            )
        if result is AuthResult.UNSUPPORTED:
            return Decision(
                400,
                "Bad Request",
                RegisterOutcome.MALFORMED,
                aor=aor,
                detail=f"unsupported digest: algorithm {digest.algorithm.value}, qop {digest.qop}",
            )
        if result is AuthResult.URI_MISMATCH:
            return Decision(
                400,
                "Bad Request",
                RegisterOutcome.MALFORMED,
                aor=aor,
                detail=f"digest uri {digest.uri!r} is not the Request-URI",
            )
        if digest.username != request.to_user:
            return Decision(
                403,
                "Forbidden",
                RegisterOutcome.FORBIDDEN,
                aor=aor,
                username=digest.username,
                detail=f"{digest.username!r} may not register {aor}",
            )
        return self._apply(request, aor, digest.username, now, "digest")

    # -- helpers -----------------------------------------------------------------------------

    def admitted_by_network(self, user: str, source: Source) -> bool:
        networks = self.admitted_networks.get(user)
        if not networks:
            return False
        address = _source_ip(source.host)
        return address is not None and any(address in network for network in networks)

    def _challenge(
        self, counter: RegisterOutcome, aor: str, now: float, detail: str, *, stale: bool = False
    ) -> Decision:
        headers = tuple(("WWW-Authenticate", value) for value in self.auth.challenge(now, stale=stale))
        return Decision(401, "Unauthorized", counter, headers, aor=aor, detail=detail)

    def _apply(self, request: RegisterRequest, aor: str, username: str, now: float, how: str) -> Decision:
        update = update_bindings(
            self._bindings.get(aor, ()),
            BindingRequest(
                aor=aor,
                contacts=request.contacts,
                expires=request.expires,
                call_id=request.call_id,
                cseq=request.cseq,
                source=request.source,
                user_agent=request.user_agent,
            ),
            now,
            self.policy,
        )
        if update.status == 423:
            return Decision(
                423,
                update.reason,
                RegisterOutcome.INTERVAL_TOO_BRIEF,
                (("Min-Expires", str(update.min_expires)),),
                aor=aor,
                bindings=update.bindings,
                username=username,
                detail=f"expires below {update.min_expires}",
            )
        if not update.ok:
            counter = (
                RegisterOutcome.MALFORMED if update.reason == "Bad Request" else RegisterOutcome.REJECTED
            )
            return Decision(
                update.status,
                update.reason,
                counter,
                aor=aor,
                bindings=update.bindings,
                username=username,
                detail=update.reason,
            )
        if update.changed:
            if update.bindings:
                self._bindings[aor] = update.bindings
            else:
                self._bindings.pop(aor, None)
        headers = [("Contact", b.contact_value(now)) for b in update.bindings]
        if update.granted_expires is not None:
            headers.append(("Expires", str(update.granted_expires)))
        headers.append(("Date", _sip_date(now)))
        return Decision(
            200,
            "OK",
            RegisterOutcome.OK,
            tuple(headers),
            aor=aor,
            bindings=update.bindings,
            persist=update.bindings if update.changed else None,
            username=username,
            detail=how,
        )
