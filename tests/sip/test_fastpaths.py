"""The parser's fast paths give exactly what the general code gives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip import grammar
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import Headers, parse_message
from gateway.sip.uri import _split_walk, split_unquoted


@given(st.text(alphabet='ab,;<>"\\ ', max_size=30), st.sampled_from([",", ";"]))
def test_split_unquoted_fast_paths_equal_the_walk(text: str, sep: str) -> None:
    assert split_unquoted(text, sep) == _split_walk(text, sep)


LINE = st.text(alphabet="Via:;\t \r-x!", max_size=20)


@given(st.lists(LINE, min_size=1, max_size=5))
def test_header_lines_equal_header_re(lines: list[str]) -> None:
    lines = [ln for ln in lines if ln and ln[:1] not in (" ", "\t") and "\r" not in ln]  # no end, folding, bare CR
    data = ("OPTIONS sip:a@b SIP/2.0\r\n" + "".join(ln + "\r\n" for ln in lines) + "\r\n").encode()
    expected: list[tuple[str, str]] | None = []
    for line in lines:
        m = grammar.HEADER_RE.match(line)
        if not m:
            expected = None
            break
        assert expected is not None
        expected.append((m.group(1), m.group(2)))
    if expected is None:
        with pytest.raises(RemoteProtocolError):
            parse_message(data)
    else:
        assert list(parse_message(data).headers) == expected


def test_headers_index_and_compact_forms() -> None:
    h = Headers([("Via", "a"), ("v", "b"), ("To", "<sip:x@y>"), ("Content-Length", "0")])
    assert h.get("via") == "a" and h.values("Via") == ["a", "b"] and h.count_of("v") == 2
    assert h.get("From") is None and h.values("From") == [] and h.count_of("From") == 0
    h.values("Via").append("c")  # a copy: the headers never change
    assert h.values("Via") == ["a", "b"]


def test_parsed_values_are_memoised_per_headers_and_errors_are_not() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h:1;branch=z9hG4bKx, SIP/2.0/UDP g\r\n"
                        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
    assert msg.top_via is msg.top_via and msg.from_ is msg.from_
    assert [v.host for v in msg.vias] == ["h", "g"]
    msg.vias.clear()  # a fresh list each time
    assert len(msg.vias) == 2
    bad = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: x OPTIONS\r\n\r\n")
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            _ = bad.cseq
