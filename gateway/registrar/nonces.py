"""Digest nonces: stateless, HMAC-signed, time-limited; nonce-count replay tracking. Sans-IO.

Rules of this module:

- Pure: ``now`` is passed in (float seconds, the same clock for issuing and checking).
- A nonce is ``base64url(issued || salt || HMAC-SHA256(secret, realm || 0 || issued || salt)[:16])``:
  the server keeps no per-nonce state to validate it, and a restart with the same secret keeps
  every outstanding nonce valid.
- Replay state is bounded (:class:`NonceCounter`): a nonce it had to forget is never trusted again.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["NonceCodec", "NonceCounter", "NonceState"]


class NonceState(enum.Enum):
    """Verdict on a nonce presented by a client."""

    VALID = "valid"
    EXPIRED = "expired"
    """Ours, but older than the lifetime (or issued in the future after a clock step)."""
    FOREIGN = "foreign"
    """Not signed by our secret: another server, an older secret, or a forgery."""


_ISSUED = struct.Struct(">d")
_SALT_BYTES = 8
_MAC_BYTES = 16


@dataclass(frozen=True)
class NonceCodec:
    """Issues and checks HMAC-signed nonces that carry their issue time.

    ``secret`` is the HMAC key; ``lifetime`` is how long (seconds of ``now``) a nonce stays fresh.
    """

    realm: str
    secret: bytes
    lifetime: float = 300.0
    random_bytes: Callable[[int], bytes] = field(default=os.urandom, compare=False, repr=False)

    def _mac(self, payload: bytes) -> bytes:
        message = self.realm.encode("utf-8", "surrogateescape") + b"\0" + payload
        return hmac.new(self.secret, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def issue(self, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        payload = _ISSUED.pack(now) + self.random_bytes(_SALT_BYTES)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).rstrip(b"=").decode("ascii")

    def issued_at(self, nonce: str) -> float | None:
        """The issue time of one of our nonces, or ``None`` if the signature does not verify."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _ISSUED.size + _SALT_BYTES + _MAC_BYTES:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        (issued,) = _ISSUED.unpack(payload[: _ISSUED.size])
        return float(issued)

    def check(self, nonce: str, now: float) -> NonceState:
        """Is ``nonce`` ours and still fresh at ``now``?"""
        issued = self.issued_at(nonce)
        if issued is None:
            return NonceState.FOREIGN
        if not (issued <= now <= issued + self.lifetime):
            return NonceState.EXPIRED
        return NonceState.VALID


class NonceCounter:
    """Last nonce-count seen per nonce, in an LRU bounded to ``capacity`` entries (RFC 7616 §3.4).

    Entries for nonces past their lifetime are dropped first: those nonces are rejected as
    expired anyway.  When a live entry must be evicted, its issue time raises a high-water mark,
    and any *unknown* nonce issued at or before that mark is refused (:meth:`accept` returns
    ``None``): a forgotten nonce is never trusted again, the client just gets a fresh one.
    """

    def __init__(self, capacity: int = 65536, lifetime: float = 300.0) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.lifetime = lifetime
        self._entries: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._forgotten_up_to = float("-inf")
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def accept(self, nonce: str, issued: float, nc: int | None) -> bool | None:
        """True if ``nc`` is above the last count seen for ``nonce``; False for a replay.

        ``None`` means the nonce may have been forgotten (evicted), so it cannot be trusted.
        ``nc=None`` (no qop) makes the nonce single-use.  Nothing is recorded: call
        :meth:`record` once the response has verified.
        """
        entry = self._entries.get(nonce)
        if entry is None:
            return None if issued <= self._forgotten_up_to else True
        last = entry[1]
        return nc is not None and nc > last

    def record(self, nonce: str, issued: float, nc: int | None, now: float) -> None:
        """Remember ``nc`` as the last count used with ``nonce``."""
        # No qop: remember an unbeatable count, so the nonce cannot be used again.
        count = nc if nc is not None else 0xFFFFFFFF
        self._entries[nonce] = (issued, count)
        self._entries.move_to_end(nonce)
        self._prune(now)

    def _prune(self, now: float) -> None:
        if len(self._entries) <= self.capacity:
            return
        if now >= self._next_sweep:  # a full sweep at most every lifetime/8: amortised O(1)
            self._next_sweep = now + self.lifetime / 8
            expired = [n for n, (issued, _) in self._entries.items() if issued + self.lifetime < now]
            for nonce in expired:
                del self._entries[nonce]
        while len(self._entries) > self.capacity:
            _nonce, (issued, _count) = self._entries.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, issued)
