"""The per-source budget: burst, refill, independence of sources, bounded memory."""

from gateway.sip.ratelimit import SourceLimiter


def test_burst_then_refill_at_rate():
    lim = SourceLimiter(rate=10.0, burst=5.0)
    assert [lim.allow("198.51.100.7", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert lim.allow("198.51.100.7", 0.05) is False  # half a token
    assert lim.allow("198.51.100.7", 0.1) is True  # one token after 0.1 s at 10/s


def test_sources_are_independent_and_nothing_is_banned():
    lim = SourceLimiter(rate=1.0, burst=2.0)
    assert lim.allow("a", 0.0) and lim.allow("a", 0.0) and not lim.allow("a", 0.0)
    assert lim.allow("b", 0.0)
    assert lim.allow("a", 100.0)  # a misbehaving device recovers by itself


def test_memory_is_bounded():
    lim = SourceLimiter(capacity=3)
    for i in range(10):
        lim.allow(f"10.0.0.{i}", 0.0)
    assert len(lim) == 3


def test_an_ipv6_scanner_cannot_refill_its_budget_by_hopping_addresses_in_its_64():
    # A host is given a /64 (RFC 4291 §2.5.1): one address per request would mean a fresh burst each time.
    lim = SourceLimiter(rate=1.0, burst=2.0)
    answered = [lim.allow(f"2001:db8:1:2::{i:x}", 0.0) for i in range(1, 11)]
    assert answered == [True, True] + [False] * 8
    assert lim.allow("2001:db8:1:3::1", 0.0)  # the next /64 is someone else
    assert lim.allow("2001:db8:1:2::1", 2.0)  # and the scanner's own budget still refills


def test_ipv4_peers_on_a_dual_stack_socket_keep_their_own_buckets():
    lim = SourceLimiter(rate=1.0, burst=1.0)
    assert lim.allow("::ffff:198.51.100.7", 0.0) and not lim.allow("198.51.100.7", 0.0)
    assert lim.allow("::ffff:198.51.100.8", 0.0)  # not one ::/64 bucket for every IPv4 peer
