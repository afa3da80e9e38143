"""Hypothesis over the SIP parser and stream framer.

* Arbitrary bytes (and mutations of real messages) never raise anything but
  RemoteProtocolError, and never take long.
* Generated well-formed messages round-trip exactly: value -> bytes -> value and
  bytes -> value -> bytes.
* A stream of valid messages cut at arbitrary points comes out of StreamFramer as
  the same messages.
* Oversized messages (> 64 KiB) are refused with 513; header floods with 400 or 513.
"""

from __future__ import annotations

import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import Headers, Request, Response, StreamFramer, parse_message

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rfc4475"
MAX_SIZE = 65536

FUZZ = settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])

SEEDS = [p.read_bytes() for p in sorted(VECTORS.glob("*.dat"))]


def parse_safely(data: bytes) -> Request | Response | None:
    """parse_message, where only RemoteProtocolError may come out; also exercise accessors."""
    try:
        msg = parse_message(data)
    except RemoteProtocolError as exc:
        assert 400 <= exc.status <= 599, exc.status
        return None
    assert isinstance(msg, (Request, Response))
    # The accessors a transaction layer calls first: same rule, only RemoteProtocolError.
    for accessor in ("call_id", "cseq", "top_via", "vias", "from_", "to", "contacts", "expires"):
        try:
            getattr(msg, accessor)
        except RemoteProtocolError:
            pass
    bytes(msg)  # whatever parsed can be written back
    return msg


# --------------------------------------------------------------------------------- garbage in


@FUZZ
@given(st.binary(max_size=4096))
@example(b"")
@example(b"\r\n\r\n")
@example(b"INVITE")
@example(b"SIP/2.0 200")
@example(b"SIP/2.0 200 OK\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999999999999999\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nl: \xff\xfe\r\n\r\n")
@example(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [::1\r\n\r\n")
@example(b"\x00" * 100)
def test_arbitrary_bytes_raise_only_remote_protocol_error(data: bytes) -> None:
    parse_safely(data)


@st.composite
def mutated_vector(draw: st.DrawFn) -> bytes:
    """A torture vector with a few bytes replaced, inserted, deleted or duplicated."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "replace" and data:
            data[pos] = draw(st.sampled_from(b'\x00\r\n :;,<>"\\%@[]=/\t\xff0123456789'))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            end = min(len(data), pos + draw(st.integers(1, 64)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


@FUZZ
@given(mutated_vector())
def test_mutated_torture_messages_raise_only_remote_protocol_error(data: bytes) -> None:
    parse_safely(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n" * 30000,
        b"OPTIONS sip:a@b SIP/2.0\r\n" + b" continuation\r\n" * 4000 + b"\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b'"' * 60000 + b"\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContact: " + b"<" * 30000 + b"\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h" + b";x" * 30000 + b"\r\n\r\n",
        b"OPTIONS sip:" + b"a" * 60000 + b"@b SIP/2.0\r\n\r\n",
        b"OPTIONS sip:a@b SIP/2.0\r\nContact: " + b'"\\' * 30000 + b"\r\n\r\n",
    ],
    ids=["crlf-flood", "fold-flood", "quotes", "brackets", "params", "long-uri", "backslashes"],
)
def test_pathological_inputs_finish_quickly(data: bytes) -> None:
    start = time.perf_counter()
    parse_safely(data)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------------- round trips

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=20)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["[::1]", "[2001:db8::10]"]),
)
users = st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/]{1,15}|%[0-9A-F]{2}[a-z]{1,5}", fullmatch=True)
ports = st.none() | st.integers(1, 65535)


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips"]))
    user = draw(st.none() | users)
    port = draw(ports)
    params = draw(st.lists(st.tuples(tokens, st.none() | tokens), max_size=3))
    text = f"{scheme}:{user + '@' if user else ''}{draw(hosts)}{'' if port is None else f':{port}'}"
    return text + "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def branch() -> st.SearchStrategy[str]:
    return tokens.map(lambda t: "z9hG4bK" + t)


# Values a canonical header may hold: no CR/LF, no leading/trailing white space.
header_values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"), max_size=60
).map(str.strip)
# Names that are neither compact forms nor Content-Length (which the serialiser owns).
RESERVED = {
    "content-length",
    "l",
    "i",
    "m",
    "e",
    "c",
    "f",
    "s",
    "k",
    "t",
    "v",
    "o",
    "r",
    "b",
    "u",
    "a",
    "j",
    "d",
    "x",
    "y",
}
extension_names = st.from_regex(r"X-[A-Za-z0-9\-]{1,15}", fullmatch=True).filter(
    lambda n: n.lower() not in RESERVED
)
methods = (
    st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "MESSAGE", "INFO"]) | tokens
)


@st.composite
def common_headers(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    vias = draw(
        st.lists(
            st.tuples(st.sampled_from(["UDP", "TCP", "TLS"]), hosts, ports, branch()), min_size=1, max_size=4
        )
    )
    out = [("Via", f"SIP/2.0/{t} {h}{'' if p is None else f':{p}'};branch={b}") for t, h, p, b in vias]
    out += [
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
        ("From", f"<{draw(sip_uris())}>;tag={draw(tokens)}"),
        ("To", f"<{draw(sip_uris())}>"),
        (
            "Call-ID",
            draw(
                st.from_regex(
                    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]{1,30}(@[a-z0-9.]{1,20})?", fullmatch=True
                )
            ),
        ),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    out += draw(st.lists(st.tuples(extension_names, header_values), max_size=6))
    return draw(st.permutations(out))


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    body = draw(st.binary(max_size=300))
    headers = draw(common_headers(method)) + [("Content-Length", str(len(body)))]
    return Request(method, draw(sip_uris()), Headers(headers), body)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    body = draw(st.binary(max_size=300))
    headers = draw(common_headers(draw(methods))) + [("Content-Length", str(len(body)))]
    reason = draw(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30).map(str.strip))
    return Response(draw(st.integers(100, 699)), reason, Headers(headers), body)


messages = st.one_of(requests(), responses())


@FUZZ
@given(messages)
def test_generated_messages_round_trip_exactly(msg: Request | Response) -> None:
    data = bytes(msg)
    parsed = parse_message(data)
    assert parsed == msg
    assert bytes(parsed) == data
    assert parsed.content_length == len(msg.body)


@FUZZ
@given(requests())
def test_generated_requests_expose_what_they_were_built_from(req: Request) -> None:
    parsed = parse_message(bytes(req))
    assert parsed.call_id == req.headers.get("Call-ID")
    assert parsed.cseq == (int(req.headers.get("CSeq").split()[0]), req.method)
    assert [str(v) for v in parsed.vias] == req.headers.get_all("Via")
    assert parsed.top_via.branch.startswith("z9hG4bK")
    assert str(parsed.request_uri) == req.uri


# --------------------------------------------------------------------------------- stream framing


@st.composite
def split_stream(draw: st.DrawFn) -> tuple[list[bytes], list[bytes], int]:
    wires = [bytes(m) for m in draw(st.lists(messages, min_size=1, max_size=5))]
    # keep-alive CRLFs between messages are allowed on a stream (RFC 5626 §3.5.1)
    pings = [draw(st.sampled_from([b"", b"\r\n\r\n", b"\r\n\r\n\r\n\r\n"])) for _ in wires]
    joined = b"".join(p + w for p, w in zip(pings, wires, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(joined)), max_size=12)))
    chunks = [joined[a:b] for a, b in zip([0, *cuts], [*cuts, len(joined)], strict=True)]
    return wires, chunks, sum(len(p) // 4 for p in pings)


@FUZZ
@given(split_stream())
def test_stream_framer_reassembles_messages_cut_anywhere(case: tuple[list[bytes], list[bytes], int]) -> None:
    """Messages and keep-alive pings (each wants its pong) are found however the stream is cut, a ping
    split across two reads included."""
    wires, chunks, pings = case
    framer = StreamFramer()
    out: list[bytes] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    assert out == wires
    assert framer.pings == pings
    assert [parse_message(w) for w in out] == [parse_message(w) for w in wires]


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_stream_framer_raises_only_remote_protocol_error(chunks: list[bytes]) -> None:
    framer = StreamFramer()
    try:
        for chunk in chunks:
            for frame in framer.feed(chunk):
                parse_safely(frame)
    except RemoteProtocolError:
        pass


def test_stream_framer_byte_at_a_time() -> None:
    wire = (VECTORS / "wsinv.dat").read_bytes()  # folded Content-Length name, body of 150
    framer = StreamFramer()
    out = [frame for byte in wire + wire for frame in framer.feed(bytes([byte]))]
    assert out == [wire, wire]


@pytest.mark.parametrize("name", ["mcl01.dat", "ncl.dat", "inv2543.dat"])
def test_stream_framer_refuses_what_cannot_be_framed(name: str) -> None:
    # RFC 4475 §3.1.2.3, §3.3.9: "If a request like this arrives over TCP, the framing
    # error is not recoverable"; and a stream message must carry Content-Length (§18.3).
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed((VECTORS / name).read_bytes())


# --------------------------------------------------------------------------------- limits


def options_with_body(size: int) -> bytes:
    head = (
        "OPTIONS sip:gateway.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbig\r\n"
        "From: <sip:a@example.net>;tag=1\r\nTo: <sip:gateway.example.net>\r\nCall-ID: big@1\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n"
    )
    # total = len(head with its Content-Length digits) + body: find the body length for *size*
    body_len = size - len(head.format(0))
    while len(head.format(body_len)) + body_len > size:
        body_len -= 1
    data = head.format(body_len).encode() + b"x" * body_len
    assert len(data) == size
    return data


def test_message_of_exactly_64_kib_is_accepted() -> None:
    assert len(parse_message(options_with_body(MAX_SIZE)).body) > 65000


@pytest.mark.parametrize("size", [MAX_SIZE + 1, 2 * MAX_SIZE, 1_000_000])
def test_oversized_datagram_is_refused_513(size: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(options_with_body(size))
    assert info.value.status == 513


@pytest.mark.parametrize("size", [MAX_SIZE + 1, 1_000_000])
def test_oversized_stream_message_is_refused_513_before_its_body_arrives(size: int) -> None:
    data = options_with_body(size)
    head = data[: data.index(b"\r\n\r\n") + 4]
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(head)  # the Content-Length alone says it is too big
    assert info.value.status == 513


def test_endless_header_block_on_a_stream_is_refused_513() -> None:
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError) as info:
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"y" * 1000 + b"\r\n")
    assert info.value.status == 513


def flood(count: int, folded: bool = False) -> bytes:
    lines = [f"X-H{i}: {i}" for i in range(count)]
    if folded:
        lines = [f"X-H{i}:\r\n {i}" for i in range(count)]
    return (
        "OPTIONS sip:gateway.example.net SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfl\r\n"
        "From: <sip:a@example.net>;tag=1\r\nTo: <sip:gateway.example.net>\r\nCall-ID: fl@1\r\n"
        "CSeq: 1 OPTIONS\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("count", [300, 1000, 5000])
def test_header_flood_is_refused(count: int) -> None:
    data = flood(count)
    assert len(data) <= MAX_SIZE or count == 5000
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status in (400, 513)


def test_folded_header_flood_is_refused() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(flood(1000, folded=True))
    assert info.value.status in (400, 513)


def test_a_hundred_headers_are_fine() -> None:
    msg = parse_message(flood(100))
    assert msg.headers.get("X-H99") == "99"


def test_list_flood_in_one_header_is_bounded() -> None:
    # 1500 Via values in one field: must either parse quickly or be refused, not hang.
    data = (
        "OPTIONS sip:gateway.example.net SIP/2.0\r\nVia: "
        + ", ".join(f"SIP/2.0/UDP h{i};branch=z9hG4bK{i}" for i in range(1500))
        + "\r\nFrom: <sip:a@example.net>;tag=1\r\nTo: <sip:g@example.net>\r\nCall-ID: v@1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert len(data) <= MAX_SIZE
    start = time.perf_counter()
    try:
        msg = parse_message(data)
        msg.vias  # noqa: B018
    except RemoteProtocolError as exc:
        assert exc.status in (400, 513)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_keepalive_ping_split_across_reads_still_wants_its_pong(cut: int) -> None:
    """RFC 5626 §4.4.1: a double-CRLF ping cut by TCP into two reads is one ping (the client declares the
    flow dead without its pong); the CRLFs around a message are not pings."""
    framer = StreamFramer()
    ping = b"\r\n\r\n"
    assert framer.feed(ping[:cut]) == []
    assert framer.feed(ping[cut:]) == []
    assert framer.pings == 1
    framer.feed(b"\r\n")
    assert framer.pings == 1
