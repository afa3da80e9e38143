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
