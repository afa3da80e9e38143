"""Registrar bindings: RFC 3261 §10.3 steps 6-8 on plain values, sans-IO.

Rules of this module:

- Pure and clock-agnostic: ``now`` and :attr:`Binding.expires_at` are seconds on one clock.
  The registrar uses wall-clock seconds so that persisted bindings survive a restart.
- A request is applied all-or-nothing (§10.3 step 7: "the update MUST be aborted").
- Contact URIs are compared as RFC 3261 §19.1.4 does for the parts that matter here: scheme and
  host case-insensitively, user part exactly, URI parameters as a set with case-insensitive names.
- Malformed ``expires`` values are treated as the default (RFC 3261 §20.19); a malformed ``q``
  is ignored.  Values above ``max_expires`` are shortened to it (§10.3 step 6 "MAY shorten").
- Bindings are kept in registration order: a binding added or refreshed moves to the end, so
  the last one of an AOR is the contact registered most recently (and the store, saving them in
  order, gives them back in that order after a restart).
- Too many contacts for one AOR: the least recently registered bindings that the request does not
  mention are evicted, so a help point that rebooted behind NAT (new port, new Contact) is never
  locked out, and a live contact refreshed often with a short expiry is never evicted in favour
  of a dead one that asked for an hour; with ``evict_oldest=False`` the request is refused with 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Binding",
    "BindingPolicy",
    "BindingRequest",
    "BindingUpdate",
    "ContactSpec",
    "Source",
    "active",
    "contact_key",
    "expired",
    "update_bindings",
]

_MAX_DELTA = 2**32 - 1  # RFC 3261 §20.19: delta-seconds above this are treated as this


@dataclass(frozen=True)
class Source:
    """Where a REGISTER was received from: the address to reach a NATed device (RFC 3581 spirit)."""

    host: str
    port: int
    transport: str = "UDP"


@dataclass(frozen=True)
class Binding:
    """One Contact bound to an address-of-record."""

    aor: str
    contact: str
    """The Contact URI (addr-spec, without angle brackets) as the device sent it."""
    expires_at: float
    """Expiry on the caller's clock (the registrar passes wall-clock seconds)."""
    call_id: str
    cseq: int
    source: Source
    user_agent: str | None = None
    q: float | None = None

    def remaining(self, now: float) -> int:
        """Whole seconds until expiry, at least 1 while the binding is live, 0 once expired."""
        left = self.expires_at - now
        return 0 if left <= 0 else max(1, round(left))

    def contact_value(self, now: float) -> str:
        """The Contact header value echoed in a 200 to REGISTER (§10.3 step 8)."""
        value = f"<{self.contact}>;expires={self.remaining(now)}"
        if self.q is not None:
            value += f";q={_format_q(self.q)}"
        return value


def _format_q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


@dataclass(frozen=True)
class ContactSpec:
    """One Contact of a REGISTER request: URI and the raw ``expires`` and ``q`` parameters."""

    uri: str
    expires: str | None = None
    q: str | None = None

    @property
    def is_wildcard(self) -> bool:
        """True for the ``Contact: *`` of a de-registration of all bindings."""
        return self.uri.strip() == "*"

    @classmethod
    def from_params(cls, uri: str, params: Iterable[tuple[str, str | None]]) -> ContactSpec:
        """Build from a URI and contact parameters as ``(name, value)`` pairs (names any case)."""
        found = {name.lower(): value for name, value in params}
        return cls(uri=uri, expires=found.get("expires"), q=found.get("q"))


@dataclass(frozen=True)
class BindingPolicy:
    """Registrar limits (seconds and counts)."""

    min_expires: int = 60
    """Shorter non-zero registrations get 423 Interval Too Brief with this Min-Expires."""
    max_expires: int = 3600
    """Longer registrations are shortened to this."""
    default_expires: int = 3600
    """Used when neither the contact nor the request says how long (§10.3 step 6)."""
    max_contacts: int = 10
    """Bindings kept per address-of-record."""
    evict_oldest: bool = True
    """Over ``max_contacts``: evict the least recently registered other bindings (True) or refuse (False)."""


@dataclass(frozen=True)
class BindingRequest:
    """The parts of a REGISTER that §10.3 steps 6-8 look at, after authentication."""

    aor: str
    contacts: tuple[ContactSpec, ...]
    expires: str | int | None
    """The Expires header value, raw, or None when absent."""
    call_id: str
    cseq: int
    source: Source
    user_agent: str | None = None


@dataclass(frozen=True)
class BindingUpdate:
    """What to answer, and the bindings of the AOR afterwards."""

    status: int
    reason: str
    bindings: tuple[Binding, ...]
    """Live bindings after the request (unchanged on failure), for the 200's Contact echo."""
    changed: bool = False
    """True when ``bindings`` differ from the live bindings given and must be persisted."""
    min_expires: int | None = None
    """Set on 423: the Min-Expires header value."""
    granted_expires: int | None = None
    """The expiry granted to a single-contact request (for an Expires header in the 200)."""

    @property
    def ok(self) -> bool:
        """True for a 2xx outcome."""
        return 200 <= self.status < 300


def contact_key(uri: str) -> tuple[str, str, str, frozenset[tuple[str, str]]]:
    """Comparison key for Contact URIs (RFC 3261 §19.1.4, simplified: params as a set)."""
    text = uri.strip().strip("<>")
    text, _, _headers = text.partition("?")
    scheme, _, rest = text.partition(":")
    hostport_params = rest
    user = ""
    if "@" in rest:
        user, _, hostport_params = rest.rpartition("@")
    hostport, *params = hostport_params.split(";")
    normalised: set[tuple[str, str]] = set()
    for param in params:
        name, _, value = param.partition("=")
        normalised.add((name.lower(), value.lower()))
    return scheme.lower(), user, hostport.lower(), frozenset(normalised)


def _parse_delta(value: str | int | None) -> int | None:
    """delta-seconds, or None when absent or malformed."""
    if value is None:
        return None
    if isinstance(value, int):
        return min(max(value, 0), _MAX_DELTA)
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return min(int(text), _MAX_DELTA)


def _parse_q(value: str | None) -> float | None:
    """qvalue 0..1 with at most three decimals (RFC 3261 §25.1), or None."""
    if value is None:
        return None
    try:
        q = float(value.strip())
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None


def active(bindings: Iterable[Binding], now: float) -> tuple[Binding, ...]:
    """Bindings still live at ``now``."""
    return tuple(b for b in bindings if b.expires_at > now)


def expired(bindings: Iterable[Binding], now: float) -> tuple[Binding, ...]:
    """Bindings whose expiry is at or before ``now`` (the sweep's victims)."""
    return tuple(b for b in bindings if b.expires_at <= now)


def _fail(
    status: int, reason: str, live: tuple[Binding, ...], min_expires: int | None = None
) -> BindingUpdate:
    return BindingUpdate(status, reason, live, min_expires=min_expires)


def update_bindings(
    existing: Sequence[Binding],
    request: BindingRequest,
    now: float,
    policy: BindingPolicy | None = None,
) -> BindingUpdate:
    """Apply a REGISTER to the bindings of one AOR (RFC 3261 §10.3 steps 6-8)."""
    policy = policy or BindingPolicy()
    live = active(existing, now)
    header_expires = _parse_delta(request.expires)
    contacts = request.contacts

    if any(c.is_wildcard for c in contacts):
        return _wildcard(live, request, header_expires)
    if not contacts:  # a query: §10.3 step 8 with nothing changed
        return BindingUpdate(200, "OK", live, changed=len(live) != len(existing))

    # Step 6: the expiration interval of every contact, and 423 before touching anything.
    wanted: list[tuple[ContactSpec, int]] = []
    for spec in contacts:
        if not spec.uri.strip() or ":" not in spec.uri:
            return _fail(400, "Bad Request", live)
        seconds = _parse_delta(spec.expires)
        if seconds is None:
            seconds = header_expires if header_expires is not None else policy.default_expires
        if 0 < seconds < policy.min_expires:
            return _fail(423, "Interval Too Brief", live, min_expires=policy.min_expires)
        wanted.append((spec, min(seconds, policy.max_expires)))

    # Step 7: per contact, add, refresh or remove, with the Call-ID/CSeq ordering check.
    before = {contact_key(b.contact): b for b in live}
    current = dict(before)
    touched: set[tuple[str, str, str, frozenset[tuple[str, str]]]] = set()
    for spec, seconds in wanted:
        key = contact_key(spec.uri)
        old = before.get(key)  # a contact listed twice in one request is not "out of order"
        if old is not None and old.call_id == request.call_id and request.cseq <= old.cseq:
            return _fail(400, "Invalid CSeq Number", live)
        touched.add(key)
        current.pop(key, None)  # re-inserted at the end: the most recently registered
        if seconds == 0:
            continue
        current[key] = Binding(
            aor=request.aor,
            contact=spec.uri.strip().strip("<>"),
            expires_at=now + seconds,
            call_id=request.call_id,
            cseq=request.cseq,
            source=request.source,
            user_agent=request.user_agent,
            q=_parse_q(spec.q),
        )

    if len(current) > policy.max_contacts:
        others = [k for k in current if k not in touched]  # least recently registered first
        if not policy.evict_oldest or len(current) - len(others) > policy.max_contacts:
            return _fail(403, "Too Many Contacts", live)
        for key in others[: len(current) - policy.max_contacts]:
            del current[key]

    granted = wanted[0][1] if len(wanted) == 1 else None
    return BindingUpdate(200, "OK", tuple(current.values()), changed=True, granted_expires=granted)


def _wildcard(
    live: tuple[Binding, ...], request: BindingRequest, header_expires: int | None
) -> BindingUpdate:
    """``Contact: *`` removes every binding, only with ``Expires: 0`` and alone (§10.2.2, §10.3 step 6)."""
    if len(request.contacts) != 1 or header_expires != 0 or request.contacts[0].expires not in (None, "0"):
        return _fail(400, "Bad Request", live)
    for binding in live:
        if binding.call_id == request.call_id and request.cseq <= binding.cseq:
            return _fail(400, "Invalid CSeq Number", live)
    return BindingUpdate(200, "OK", (), changed=True, granted_expires=0)
