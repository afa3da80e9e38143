"""Round-trips: (value, exact bytes) pairs checked both ways, after h11 ``test_io.py``.

``SIMPLE_CASES`` hold canonical messages: ``bytes(value) == data`` and
``parse_message(data) == value``.  ``PARSE_ONLY_CASES`` hold non-canonical input and
the value it must parse to (folding, odd spacing), plus the canonical bytes that value
serialises to.  Then Headers lookups, and URI / name-addr / Via parse-and-str cases.
"""

from __future__ import annotations

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    Uri,
    Via,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)

SDP = (
    b"v=0\r\n"
    b"o=hp-outram-street 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)

INVITE = Request(
    "INVITE",
    "sip:council-cctv-1@gateway.example.net",
    Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport"),
            ("Max-Forwards", "70"),
            ("From", '"Outram Street" <sip:hp-outram-street@gateway.example.net>;tag=9fxced76sl'),
            ("To", "<sip:council-cctv-1@gateway.example.net>"),
            ("Call-ID", "3848276298220188511@192.0.2.10"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:hp-outram-street@192.0.2.10:5060>"),
            ("Content-Type", "application/sdp"),
            ("Content-Length", str(len(SDP))),
        ]
    ),
    SDP,
)
INVITE_BYTES = (
    b"INVITE sip:council-cctv-1@gateway.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Outram Street" <sip:hp-outram-street@gateway.example.net>;tag=9fxced76sl\r\n'
    b"To: <sip:council-cctv-1@gateway.example.net>\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:hp-outram-street@192.0.2.10:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

REGISTER = Request(
    "REGISTER",
    "sip:gateway.example.net",
    Headers(
        [
            ("Via", "SIP/2.0/TCP 192.0.2.20:50314;branch=z9hG4bKnashds7"),
            ("Max-Forwards", "70"),
            ("To", "<sip:police-control-1@gateway.example.net>"),
            ("From", "<sip:police-control-1@gateway.example.net>;tag=456248"),
            ("Call-ID", "843817637684230@998sdasdh09"),
            ("CSeq", "1826 REGISTER"),
            ("Contact", "<sip:police-control-1@192.0.2.20:50314;transport=tcp>;expires=3600"),
            ("Expires", "7200"),
            ("User-Agent", "softphone/1.0"),
            ("Content-Length", "0"),
        ]
    ),
)
REGISTER_BYTES = (
    b"REGISTER sip:gateway.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.20:50314;branch=z9hG4bKnashds7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:police-control-1@gateway.example.net>\r\n"
    b"From: <sip:police-control-1@gateway.example.net>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:police-control-1@192.0.2.20:50314;transport=tcp>;expires=3600\r\n"
    b"Expires: 7200\r\n"
    b"User-Agent: softphone/1.0\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

OK_200 = Response(
    200,
    "OK",
    Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=5060;received=192.0.2.10"),
            ("From", '"Outram Street" <sip:hp-outram-street@gateway.example.net>;tag=9fxced76sl'),
            ("To", "<sip:council-cctv-1@gateway.example.net>;tag=8321234356"),
            ("Call-ID", "3848276298220188511@192.0.2.10"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:council-cctv-1@192.0.2.1:5060>"),
            ("Content-Type", "application/sdp"),
            ("Content-Length", str(len(SDP))),
        ]
    ),
    SDP,
)
OK_200_BYTES = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=5060;received=192.0.2.10\r\n"
    b'From: "Outram Street" <sip:hp-outram-street@gateway.example.net>;tag=9fxced76sl\r\n'
    b"To: <sip:council-cctv-1@gateway.example.net>;tag=8321234356\r\n"
    b"Call-ID: 3848276298220188511@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:council-cctv-1@192.0.2.1:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

CHALLENGE_SHA256 = (
    'Digest realm="gateway.example.net", nonce="7U5YeDzCzJYjYq0Vd2lRdmRfQ1R", '
    'algorithm=SHA-256, qop="auth", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
CHALLENGE_MD5 = (
    'Digest realm="gateway.example.net", nonce="7U5YeDzCzJYjYq0Vd2lRdmRfQ1R", algorithm=MD5, qop="auth"'
)
UNAUTHORIZED = Response(
    401,
    "Unauthorized",
    Headers(
        [
            ("Via", "SIP/2.0/TCP 192.0.2.20:50314;branch=z9hG4bKnashds7;received=192.0.2.20"),
            ("From", "<sip:police-control-1@gateway.example.net>;tag=456248"),
            ("To", "<sip:police-control-1@gateway.example.net>;tag=2493k59kd"),
            ("Call-ID", "843817637684230@998sdasdh09"),
            ("CSeq", "1826 REGISTER"),
            ("WWW-Authenticate", CHALLENGE_SHA256),
            ("WWW-Authenticate", CHALLENGE_MD5),
            ("Content-Length", "0"),
        ]
    ),
)
UNAUTHORIZED_BYTES = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.20:50314;branch=z9hG4bKnashds7;received=192.0.2.20\r\n"
    b"From: <sip:police-control-1@gateway.example.net>;tag=456248\r\n"
    b"To: <sip:police-control-1@gateway.example.net>;tag=2493k59kd\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"WWW-Authenticate: " + CHALLENGE_SHA256.encode() + b"\r\n"
    b"WWW-Authenticate: " + CHALLENGE_MD5.encode() + b"\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# Compact forms (RFC 3261 §7.3.3) are kept as sent: names as received.
COMPACT = Request(
    "OPTIONS",
    "sip:gateway.example.net",
    Headers(
        [
            ("v", "SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKprobe1"),
            ("f", "<sip:lb@probe.example.net>;tag=a1"),
            ("t", "<sip:gateway.example.net>"),
            ("i", "probe-1@192.0.2.30"),
            ("CSeq", "7 OPTIONS"),
            ("m", "<sip:lb@192.0.2.30>"),
            ("k", "path"),
            ("s", "keepalive"),
            ("l", "0"),
        ]
    ),
)
COMPACT_BYTES = (
    b"OPTIONS sip:gateway.example.net SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKprobe1\r\n"
    b"f: <sip:lb@probe.example.net>;tag=a1\r\n"
    b"t: <sip:gateway.example.net>\r\n"
    b"i: probe-1@192.0.2.30\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"m: <sip:lb@192.0.2.30>\r\n"
    b"k: path\r\n"
    b"s: keepalive\r\n"
    b"l: 0\r\n"
    b"\r\n"
)

# Several Via values in one header field (§7.3.1 list), kept as one field.
MULTI_VIA = Request(
    "BYE",
    "sip:hp-portland-square@192.0.2.11:5060",
    Headers(
        [
            (
                "Via",
                "SIP/2.0/UDP proxy.example.net;branch=z9hG4bK2, SIP/2.0/TCP [2001:db8::5]:5061;branch=z9hG4bK1",
            ),
            ("Max-Forwards", "69"),
            ("From", "<sip:council-cctv-2@gateway.example.net>;tag=c2"),
            ("To", "<sip:hp-portland-square@gateway.example.net>;tag=hp"),
            ("Call-ID", "bye-1@gateway.example.net"),
            ("CSeq", "2 BYE"),
            ("Content-Length", "0"),
        ]
    ),
)
MULTI_VIA_BYTES = (
    b"BYE sip:hp-portland-square@192.0.2.11:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.example.net;branch=z9hG4bK2, SIP/2.0/TCP [2001:db8::5]:5061;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 69\r\n"
    b"From: <sip:council-cctv-2@gateway.example.net>;tag=c2\r\n"
    b"To: <sip:hp-portland-square@gateway.example.net>;tag=hp\r\n"
    b"Call-ID: bye-1@gateway.example.net\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# A provisional response with an empty reason phrase, and a body with NULs and CRLFs.
TRYING_EMPTY_REASON = Response(
    100,
    "",
    Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx"),
            ("Call-ID", "a@b"),
            ("CSeq", "1 INVITE"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:c@d>"),
            ("Content-Length", "0"),
        ]
    ),
)
TRYING_EMPTY_REASON_BYTES = (
    b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx\r\nCall-ID: a@b\r\nCSeq: 1 INVITE\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n"
)
BINARY_BODY = b"\x00\x01\r\n\r\n\xff\xfeSIP/2.0 200 OK\r\n\x00"
MESSAGE_BINARY = Request(
    "MESSAGE",
    "sip:police-control-1@gateway.example.net",
    Headers(
        [
            ("Via", "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKm"),
            ("Max-Forwards", "70"),
            ("From", "<sip:a@gateway.example.net>;tag=m"),
            ("To", "<sip:police-control-1@gateway.example.net>"),
            ("Call-ID", "m@1"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(BINARY_BODY))),
        ]
    ),
    BINARY_BODY,
)
MESSAGE_BINARY_BYTES = (
    b"MESSAGE sip:police-control-1@gateway.example.net SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKm\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@gateway.example.net>;tag=m\r\nTo: <sip:police-control-1@gateway.example.net>\r\n"
    b"Call-ID: m@1\r\nCSeq: 1 MESSAGE\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Length: " + str(len(BINARY_BODY)).encode() + b"\r\n\r\n" + BINARY_BODY
)

SIMPLE_CASES = [
    pytest.param(INVITE, INVITE_BYTES, id="invite-with-sdp"),
    pytest.param(REGISTER, REGISTER_BYTES, id="register"),
    pytest.param(OK_200, OK_200_BYTES, id="200-ok-with-sdp"),
    pytest.param(UNAUTHORIZED, UNAUTHORIZED_BYTES, id="401-www-authenticate"),
    pytest.param(COMPACT, COMPACT_BYTES, id="compact-headers"),
    pytest.param(MULTI_VIA, MULTI_VIA_BYTES, id="multiple-via-one-field"),
    pytest.param(TRYING_EMPTY_REASON, TRYING_EMPTY_REASON_BYTES, id="100-empty-reason"),
    pytest.param(MESSAGE_BINARY, MESSAGE_BINARY_BYTES, id="binary-body"),
]


@pytest.mark.parametrize(("value", "data"), SIMPLE_CASES)
def test_simple_cases_serialise(value: Request | Response, data: bytes) -> None:
    assert bytes(value) == data


@pytest.mark.parametrize(("value", "data"), SIMPLE_CASES)
def test_simple_cases_parse(value: Request | Response, data: bytes) -> None:
    assert parse_message(data) == value


@pytest.mark.parametrize(("value", "data"), SIMPLE_CASES)
def test_canonical_bytes_survive_parse_and_serialise(value: Request | Response, data: bytes) -> None:
    assert bytes(parse_message(data)) == data


# (non-canonical input, value it parses to, canonical bytes of that value)
FOLDED = (
    b"OPTIONS sip:gateway.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.30\r\n"
    b" ;branch=z9hG4bKfold\r\n"
    b"Subject: I know you're there,\r\n"
    b"         pick up the phone\r\n"
    b"\t and talk to me!\r\n"
    b"From: <sip:a@probe.example.net>;tag=f\r\n"
    b"To: <sip:gateway.example.net>\r\n"
    b"Call-ID: fold@1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
FOLDED_VALUE = Request(
    "OPTIONS",
    "sip:gateway.example.net",
    Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.30 ;branch=z9hG4bKfold"),
            ("Subject", "I know you're there, pick up the phone and talk to me!"),
            ("From", "<sip:a@probe.example.net>;tag=f"),
            ("To", "<sip:gateway.example.net>"),
            ("Call-ID", "fold@1"),
            ("CSeq", "1 OPTIONS"),
            ("Content-Length", "0"),
        ]
    ),
)
SPACED = (
    b"OPTIONS sip:gateway.example.net SIP/2.0\r\n"
    b"Via   :   SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKsp   \r\n"
    b"From:<sip:a@probe.example.net>;tag=f\r\n"
    b"To:\t<sip:gateway.example.net>\r\n"
    b"Call-ID: sp@1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
SPACED_VALUE = Request(
    "OPTIONS",
    "sip:gateway.example.net",
    Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKsp"),
            ("From", "<sip:a@probe.example.net>;tag=f"),
            ("To", "<sip:gateway.example.net>"),
            ("Call-ID", "sp@1"),
            ("CSeq", "1 OPTIONS"),
            ("Content-Length", "0"),
        ]
    ),
)
# RFC 3261 §7.5: CRLFs before the start line are ignored.
LEADING_CRLF = b"\r\n\r\n" + REGISTER_BYTES
# §18.3 over UDP: octets after Content-Length are discarded.
TRAILING_JUNK = REGISTER_BYTES + b"garbage after the message"

PARSE_ONLY_CASES = [
    pytest.param(FOLDED, FOLDED_VALUE, id="folded-continuation-lines"),
    pytest.param(SPACED, SPACED_VALUE, id="whitespace-around-colon"),
    pytest.param(LEADING_CRLF, REGISTER, id="leading-crlf"),
    pytest.param(TRAILING_JUNK, REGISTER, id="octets-after-content-length"),
]


@pytest.mark.parametrize(("data", "value"), PARSE_ONLY_CASES)
def test_parse_only_cases(data: bytes, value: Request) -> None:
    parsed = parse_message(data)
    assert parsed == value
    assert parse_message(bytes(parsed)) == value  # the canonical form parses back the same


def test_folded_via_and_subject_read_as_joined_text() -> None:
    msg = parse_message(FOLDED)
    assert msg.top_via.branch == "z9hG4bKfold"
    assert msg.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert b"\r\n " not in bytes(msg) and b"\r\n\t" not in bytes(msg)  # unfolded on output


def test_multiple_via_in_one_field_reads_as_two() -> None:
    msg = parse_message(MULTI_VIA_BYTES)
    assert len(msg.headers) == 7  # still one header field ...
    assert msg.headers.get_all("Via") == [  # ... holding two values
        "SIP/2.0/UDP proxy.example.net;branch=z9hG4bK2",
        "SIP/2.0/TCP [2001:db8::5]:5061;branch=z9hG4bK1",
    ]
    assert [(v.transport, v.port, v.branch) for v in msg.vias] == [
        ("UDP", None, "z9hG4bK2"),
        ("TCP", 5061, "z9hG4bK1"),
    ]
    assert msg.top_via.host == "proxy.example.net"


def test_accessors_on_a_typical_invite() -> None:
    msg = parse_message(INVITE_BYTES)
    assert msg.call_id == "3848276298220188511@192.0.2.10"
    assert msg.cseq == (1, "INVITE")
    assert msg.from_.display == "Outram Street" and msg.from_.tag == "9fxced76sl"
    assert msg.to.tag is None
    assert msg.top_via.rport == ""  # requested, not yet filled (RFC 3581)
    assert [str(c.uri) for c in msg.contacts] == ["sip:hp-outram-street@192.0.2.10:5060"]
    assert msg.content_length == len(SDP)
    assert parse_message(REGISTER_BYTES).expires == 7200


def test_compact_and_long_names_are_the_same_header() -> None:
    msg = parse_message(COMPACT_BYTES)
    for long, short in [
        ("Via", "v"),
        ("From", "f"),
        ("To", "t"),
        ("Call-ID", "i"),
        ("Contact", "m"),
        ("Supported", "k"),
        ("Subject", "s"),
        ("Content-Length", "l"),
    ]:
        assert msg.headers.get(long) == msg.headers.get(short) is not None, long
    assert msg.call_id == "probe-1@192.0.2.30"
    assert msg.from_.tag == "a1"
    assert msg.top_via.branch == "z9hG4bKprobe1"


# --------------------------------------------------------------------------------- Headers


def test_headers_get_is_case_insensitive_first_value_or_none() -> None:
    h = Headers([("Route", "<sip:a;lr>"), ("route", "<sip:b;lr>"), ("X-Thing", "1")])
    assert h.get("ROUTE") == "<sip:a;lr>"
    assert h.get("x-thing") == "1"
    assert h.get("Missing") is None
    assert h.get_all("Missing") == []
    assert h.get_all("Route") == ["<sip:a;lr>", "<sip:b;lr>"]


def test_headers_get_all_splits_lists_but_not_inside_quotes_or_brackets() -> None:
    h = Headers(
        [
            ("Contact", '"Doe, John" <sip:john@example.com;x=a,b>;q=0.5, <sip:jane@example.com>'),
            ("Contact", "<sip:third@example.com>"),
            ("Allow", "INVITE, ACK,CANCEL ,  BYE"),
        ]
    )
    assert h.get_all("contact") == [
        '"Doe, John" <sip:john@example.com;x=a,b>;q=0.5',
        "<sip:jane@example.com>",
        "<sip:third@example.com>",
    ]
    assert h.get_all("m") == h.get_all("Contact")
    assert h.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE"]


def test_headers_get_all_keeps_challenges_whole() -> None:
    # RFC 3261 §7.3.1: WWW-Authenticate, Authorization and kin carry commas in one value.
    msg = parse_message(UNAUTHORIZED_BYTES)
    assert msg.headers.get_all("www-authenticate") == [CHALLENGE_SHA256, CHALLENGE_MD5]


def test_headers_edits_return_new_headers() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("CSeq", "1 INVITE"), ("Via", "SIP/2.0/UDP b")])
    added = h.add("Via", "SIP/2.0/UDP top;branch=z9hG4bK0", first=True)
    assert list(added)[0] == ("Via", "SIP/2.0/UDP top;branch=z9hG4bK0")
    assert list(h.add("X-Last", "1"))[-1] == ("X-Last", "1")
    assert h.remove("via") == Headers([("CSeq", "1 INVITE")])
    assert h.replace("cseq", "2 INVITE").get("CSeq") == "2 INVITE"
    assert h.replace("Max-Forwards", "70").get("Max-Forwards") == "70"  # absent: appended
    assert list(h) == [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
        ("CSeq", "1 INVITE"),
        ("Via", "SIP/2.0/UDP b"),
    ]
    assert len(h) == 3 and h[1] == ("CSeq", "1 INVITE")


def test_headers_are_immutable_values() -> None:
    h = Headers([("A", "1")])
    assert h == Headers([("A", "1")]) and hash(h) == hash(Headers([("A", "1")]))
    with pytest.raises((TypeError, AttributeError)):
        h[0] = ("B", "2")  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        h.append(("B", "2"))  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------- URIs

# (text, expected fields, str() of the parsed value)
URI_CASES = [
    (
        "sip:alice@atlanta.example.com",
        dict(scheme="sip", user="alice", host="atlanta.example.com", port=None),
        None,
    ),
    (
        "sips:alice@atlanta.example.com:5061;transport=tcp",
        dict(scheme="sips", user="alice", port=5061, params=(("transport", "tcp"),)),
        None,
    ),
    ("sip:[::1]:5060", dict(host="[::1]", port=5060, user=None), None),
    ("sip:alice@[2001:db8::10];lr", dict(host="[2001:db8::10]", port=None, params=(("lr", None),)), None),
    (
        "sip:gateway.example.net;lr;maddr=239.255.255.1;ttl=15",
        dict(user=None, params=(("lr", None), ("maddr", "239.255.255.1"), ("ttl", "15"))),
        None,
    ),
    ("sip:%61lice%20smith@example.com", dict(host="example.com"), None),
    (
        "sip:alice;day=tuesday@example.com",
        dict(user="alice;day=tuesday", host="example.com", params=()),
        None,
    ),
    (
        "sip:+1-212-555-1212:1234@gateway.example.com;user=phone",
        dict(user="+1-212-555-1212", password="1234", params=(("user", "phone"),)),
        None,
    ),
    (
        "sip:alice@example.com?subject=project%20x&priority=urgent",
        dict(user="alice", headers="subject=project%20x&priority=urgent"),
        None,
    ),
    ("SIP:Alice@Example.COM", dict(user="Alice"), None),
    ("sip:192.0.2.4", dict(host="192.0.2.4", port=None, user=None), None),
]


@pytest.mark.parametrize(("text", "fields", "canonical"), URI_CASES, ids=[c[0] for c in URI_CASES])
def test_uri_parse_and_str(text: str, fields: dict, canonical: str | None) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, Uri)
    for name, expected in fields.items():
        actual = getattr(uri, name)
        if name == "params":
            actual = tuple(actual)
        if name == "scheme":
            actual = actual.lower()
        assert actual == expected, name
    assert str(uri) == (canonical or text)
    assert parse_uri(str(uri)) == uri


def test_escaped_user_part_reads_back_the_same_user() -> None:
    from urllib.parse import unquote

    uri = parse_uri("sip:%61lice%20smith@example.com")
    assert unquote(uri.user) == "alice smith"


def test_tel_uri_round_trips() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=+1")
    assert uri.scheme == "tel"
    assert str(uri) == "tel:+1-201-555-0123;phone-context=+1"
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:host:99999",
        "sip:host:0x50",
        "sip:[::1",
        "sip:[::1]x",
        "no-scheme",
        "sip:a b@example.com",
        "sip:alice@exa mple.com",
        ":nothing",
        "sip:alice@example.com;;lr",
    ],
)
def test_bad_uris_raise_remote_protocol_error(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uri(text)


# --------------------------------------------------------------------------------- name-addr

NAME_ADDR_CASES = [
    # (text, display, uri str, params, canonical str)
    (
        '"Alice" <sip:alice@example.com>;tag=1928301774',
        "Alice",
        "sip:alice@example.com",
        (("tag", "1928301774"),),
        '"Alice" <sip:alice@example.com>;tag=1928301774',
    ),
    ("<sip:bob@example.com>", None, "sip:bob@example.com", (), "<sip:bob@example.com>"),
    # addr-spec: parameters belong to the header field (RFC 3261 §20.10)
    (
        "sip:carol@example.com;tag=abc",
        None,
        "sip:carol@example.com",
        (("tag", "abc"),),
        "<sip:carol@example.com>;tag=abc",
    ),
    (
        '"A \\"quoted\\" name" <sip:a@example.com>',
        'A "quoted" name',
        "sip:a@example.com",
        (),
        '"A \\"quoted\\" name" <sip:a@example.com>',
    ),
    (
        '"Bell, Alexander" <sips:bell@[::1]:5061;transport=tls>;expires=60;+sip.instance="<urn:uuid:00000000-0000>"',
        "Bell, Alexander",
        "sips:bell@[::1]:5061;transport=tls",
        (("expires", "60"), ("+sip.instance", '"<urn:uuid:00000000-0000>"')),
        '"Bell, Alexander" <sips:bell@[::1]:5061;transport=tls>;expires=60;+sip.instance="<urn:uuid:00000000-0000>"',
    ),
    (
        "Operator <sip:council-cctv-1@gateway.example.net>",
        "Operator",
        "sip:council-cctv-1@gateway.example.net",
        (),
        '"Operator" <sip:council-cctv-1@gateway.example.net>',
    ),
    ("<tel:+441234567890>", None, "tel:+441234567890", (), "<tel:+441234567890>"),
    (
        "<sip:a@example.com;lr>;flag",
        None,
        "sip:a@example.com;lr",
        (("flag", None),),
        "<sip:a@example.com;lr>;flag",
    ),
]


@pytest.mark.parametrize(
    ("text", "display", "uri", "params", "canonical"),
    NAME_ADDR_CASES,
    ids=[c[0][:40] for c in NAME_ADDR_CASES],
)
def test_name_addr_parse_and_str(
    text: str, display: str | None, uri: str, params: tuple, canonical: str
) -> None:
    na = parse_name_addr(text)
    assert isinstance(na, NameAddr)
    assert na.display == display
    assert str(na.uri) == uri
    assert tuple(na.params) == params
    assert str(na) == canonical
    assert parse_name_addr(str(na)) == na


def test_star_contact() -> None:
    na = parse_name_addr("*")
    assert na.uri == "*" and str(na) == "*"


@pytest.mark.parametrize(
    "text", ['"unterminated <sip:a@b>', "<sip:a@b", "<sip:a@b> junk", '"x" sip:a@b', "<>"]
)
def test_bad_name_addrs_raise_remote_protocol_error(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(text)


# --------------------------------------------------------------------------------- Via

VIA_CASES = [
    # (text, transport, host, port, params, canonical str)
    (
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        "UDP",
        "pc33.atlanta.example.com",
        None,
        (("branch", "z9hG4bK776asdhds"),),
        None,
    ),
    (
        "SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKx;rport;received=192.0.2.1",
        "TCP",
        "[2001:db8::1]",
        5061,
        (("branch", "z9hG4bKx"), ("rport", None), ("received", "192.0.2.1")),
        None,
    ),
    (
        "SIP/2.0/TLS gateway.example.net:5061;branch=z9hG4bKy;rport=5061",
        "TLS",
        "gateway.example.net",
        5061,
        (("branch", "z9hG4bKy"), ("rport", "5061")),
        None,
    ),
    ("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKz", "UDP", "[::1]", 5060, (("branch", "z9hG4bKz"),), None),
    (
        "SIP  /   2.0 /UDP 192.0.2.2 ; branch = 390skdjuw",
        "UDP",
        "192.0.2.2",
        None,
        (("branch", "390skdjuw"),),
        "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw",
    ),
    (
        "SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
        "UNKNOWN",
        "t4.example.com",
        None,
        (("branch", "z9hG4bKasd0f3en"),),
        None,
    ),
]


@pytest.mark.parametrize(
    ("text", "transport", "host", "port", "params", "canonical"),
    VIA_CASES,
    ids=[c[0][:40] for c in VIA_CASES],
)
def test_via_parse_and_str(
    text: str, transport: str, host: str, port: int | None, params: tuple, canonical: str | None
) -> None:
    via = parse_via(text)
    assert isinstance(via, Via)
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", transport, host, port)
    assert tuple(via.params) == params
    assert str(via) == (canonical or text)
    assert parse_via(str(via)) == via


def test_via_parameter_accessors() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc;rport;received=198.51.100.7")
    assert via.branch == "z9hG4bKabc"
    assert via.received == "198.51.100.7"
    assert via.rport == ""  # present without a value
    assert parse_via("SIP/2.0/UDP 192.0.2.1").branch is None


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0 host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP host;;branch=x",
        "UDP host",
    ],
)
def test_bad_vias_raise_remote_protocol_error(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_via(text)


@pytest.mark.parametrize(("value", "data"), SIMPLE_CASES[:2])
def test_leading_crlf_and_bytes_beyond_content_length_are_dropped(value: Request | Response, data: bytes) -> None:
    # RFC 3261 §7.5 (CRLFs before the start line are ignored) and §18.3 (a datagram's bytes
    # beyond Content-Length are discarded): what remains serialises back to the canonical bytes.
    wire = b"\r\n" + data + b"trailing"
    assert parse_message(wire) == value
    assert bytes(parse_message(wire)) == data
