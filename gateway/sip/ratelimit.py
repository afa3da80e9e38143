"""Per-source request budgets: the scanner defence (pure).

Rules:

* Every source address gets a token bucket (``rate`` requests per second,
  ``burst`` at once).  A request over budget is dropped without an answer: a
  reply would only help a scanner map us, or amplify a spoofed flood.
* Nothing is ever banned: a bucket refills by itself, so a real device that
  misbehaved for a moment (a reboot storm, a wrong password loop) recovers.
  fail2ban-style bans on 401s lock out real help points; this does not.
* The User-Agent is never consulted (scanners lie about it).
* Memory is bounded: the least recently seen sources are forgotten first.
* An IPv6 source is its /64: a host is handed at least that much (RFC 4291 §2.5.1), so per-address
  buckets would give a scanner a fresh burst for every address it hops to.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict


def _bucket(source: str) -> str:
    """The key a source's requests are counted under: the address, or for IPv6 its /64."""
    if ":" not in source:
        return source
    try:
        address = ipaddress.IPv6Address(source)
    except ValueError:
        return source
    if address.ipv4_mapped is not None:  # an IPv4 peer on a dual-stack socket: its own bucket
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class SourceLimiter:
    """Token buckets keyed by source address, driven by ``now``."""

    def __init__(self, rate: float = 20.0, burst: float = 60.0, capacity: int = 65536) -> None:
        #: Tokens added per second.
        self.rate = rate
        #: Bucket size: requests a quiet source may send at once.
        self.burst = burst
        #: Sources remembered at most.
        self.capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        """Take one token for ``source``; False when its budget is spent."""
        source = _bucket(source)
        tokens, last = self._buckets.pop(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        if len(self._buckets) > self.capacity:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
