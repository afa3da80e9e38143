"""Random ids for branches and tags: hex, the requested size, never repeated, never shared with a fork."""

from __future__ import annotations

from gateway.sip.endpoint import EndpointConfig, RandomTokens, _discard_token_pools


def test_tokens_are_hex_of_the_requested_size_across_batches() -> None:
    tokens = RandomTokens(6, batch=3)
    drawn = [tokens() for _ in range(1000)]
    assert len(set(drawn)) == len(drawn)
    assert all(len(t) == 12 and int(t, 16) >= 0 for t in drawn)


def test_a_forked_child_draws_a_fresh_batch() -> None:
    tokens = RandomTokens(8, batch=4)
    tokens()
    buffered = tokens._buffer
    _discard_token_pools()  # what os.register_at_fork runs in the child
    tokens()
    assert tokens._buffer != buffered and tokens._pos == 8


def test_endpoints_get_a_pool_each_by_default() -> None:
    a, b = EndpointConfig(local={}), EndpointConfig(local={})
    assert a.token is not b.token and len(a.token()) == 16
