"""RFC 4475 torture messages, each held to the verdict the RFC gives it.

One table (``TORTURE``): file, RFC section, verdict, and the RFC's words the verdict
comes from.  The .dat files are in tests/vectors/rfc4475 (see its README for where
they come from).  Verdicts:

``parses``
    ``parse_message`` returns a message; the fields the RFC talks about are checked
    in ``CHECKS``.
``parses+accept``
    As ``parses``, and ``validate_request`` (RFC 3261 §8.2 checks) returns None: the
    RFC says the request is to be processed normally.
``parses+respond:N[|M]``
    As ``parses`` (the RFC insists a parser must accept it), and ``validate_request``
    returns status N (or M where the RFC offers a choice).
``reject:N``
    ``parse_message`` itself raises ``RemoteProtocolError`` with ``.status == N``:
    the framing or the start line is broken, so there is no message to validate.
``refuse:N[|M]``
    The RFC names only the answer, not the layer: either ``parse_message`` raises
    with status N, or it parses and ``validate_request`` returns N.
``lenient:N``
    The RFC calls rejecting with N "reasonable"/"acceptable" and also allows a
    liberal element to accept.  Refusing with N (either layer) passes, and so does
    accepting (``validate_request`` returns None) provided a re-serialised message
    no longer carries the defect where the RFC says so.  Any other status fails.
``drop``
    A response the RFC says to discard: ``parse_message`` raises, or the fields a
    transaction layer matches on (top Via, CSeq, Call-ID) raise RemoteProtocolError.

Whatever the verdict, nothing but ``RemoteProtocolError`` may escape.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import Request, Response, parse_message, validate_request

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "rfc4475"

# (file, RFC 4475 section, verdict, the RFC's words behind the verdict)
TORTURE: list[tuple[str, str, str, str]] = [
    # 3.1.1 Valid messages
    ("wsinv.dat", "3.1.1.1", "parses+accept", "All elements should treat this as a well-formed request."),
    (
        "intmeth.dat",
        "3.1.1.2",
        "parses+respond:501",
        "Endpoints will generate a 501 listing the methods they understand in an Allow header field.",
    ),
    ("esc01.dat", "3.1.1.3", "parses+accept", "A parser must accept this as a well-formed message."),
    (
        "escnull.dat",
        "3.1.1.4",
        "parses+accept",
        "The message is well formed - parsers must accept this message. ... registers two distinct contact URIs.",
    ),
    (
        "esc02.dat",
        "3.1.1.5",
        "parses+respond:501",
        "A parser should accept this message as well formed. ... An endpoint would reject this message with a 501.",
    ),
    ("lwsdisp.dat", "3.1.1.6", "parses+accept", "Elements should accept this request as well formed."),
    (
        "longreq.dat",
        "3.1.1.7",
        "parses+accept",
        "This well-formed request contains header fields with many values",
    ),
    (
        "dblreq.dat",
        "3.1.1.8",
        "parses+accept",
        "would handle the REGISTER request normally and ignore the extra bits that look like an INVITE",
    ),
    (
        "semiuri.dat",
        "3.1.1.9",
        "parses+accept",
        'Receiving elements will accept this as a well-formed message. ... user part is "user;par=u@example.net".',
    ),
    (
        "transports.dat",
        "3.1.1.10",
        "parses+accept",
        "Parsers must accept this message as well formed. Elements ... would process it exactly as if ... UDP",
    ),
    (
        "mpart01.dat",
        "3.1.1.11",
        "parses",
        "Receivers must take care to frame the received message properly. Parsers must accept this message",
    ),
    (
        "unreason.dat",
        "3.1.1.12",
        "parses",
        "This response is well formed. A parser must accept this message.",
    ),
    ("noreason.dat", "3.1.1.13", "parses", "This well-formed response contains no reason phrase."),
    # 3.1.2 Invalid messages
    (
        "badinv01.dat",
        "3.1.2.1",
        "refuse:400",
        "An element receiving this request should respond with a 400 Bad Request",
    ),
    (
        "clerr.dat",
        "3.1.2.2",
        "reject:400",
        "When sent over UDP (as this message ostensibly was), the receiving element should respond with a 400",
    ),
    (
        "ncl.dat",
        "3.1.2.3",
        "reject:400",
        "An element receiving this message should respond with an error. ... the remainder of the datagram can simply be discarded.",
    ),
    (
        "scalar02.dat",
        "3.1.2.4",
        "refuse:400",
        "An element receiving this request should respond with a 400 Bad Request due to the CSeq error.",
    ),
    ("scalarlg.dat", "3.1.2.5", "drop", "An element receiving this response will simply discard it."),
    (
        "quotbal.dat",
        "3.1.2.6",
        "refuse:400",
        "An element receiving this request should return a 400 Bad Request error.",
    ),
    (
        "ltgtruri.dat",
        "3.1.2.7",
        "lenient:400",
        "It is reasonable always to reject a request with this error with a 400 Bad Request. ... may choose to ignore the brackets.",
    ),
    (
        "lwsruri.dat",
        "3.1.2.8",
        "refuse:400",
        "An element receiving this request should respond with a 400 Bad Request.",
    ),
    (
        "lwsstart.dat",
        "3.1.2.9",
        "lenient:400",
        "It is acceptable to reject this request as malformed. ... must not include these extra SP characters in the messages it sends.",
    ),
    (
        "trws.dat",
        "3.1.2.10",
        "lenient:400",
        "It is acceptable to reject this request as malformed. ... must not include these extra SP characters in the messages it sends.",
    ),
    (
        "escruri.dat",
        "3.1.2.11",
        "lenient:400",
        "It is acceptable for an element to reject this request with a 400 Bad Request. An element could choose to be liberal",
    ),
    (
        "baddate.dat",
        "3.1.2.12",
        "parses+accept",
        "acceptable to reject ... (though an element shouldn't do that unless the contents of the Date header field were "
        "actually important to its processing)",
    ),
    (
        "regbadct.dat",
        "3.1.2.13",
        "lenient:400",
        "It is reasonable for an element receiving this request to respond with a 400 Bad Request. ... could infer the angle brackets",
    ),
    (
        "badaspec.dat",
        "3.1.2.14",
        "lenient:400",
        "Parsers receiving this request must not break. It is reasonable to reject this request with a 400 Bad Request",
    ),
    (
        "baddn.dat",
        "3.1.2.15",
        "lenient:400",
        "It is reasonable always to reject this kind of error with a 400 Bad Request response.",
    ),
    (
        "badvers.dat",
        "3.1.2.16",
        "refuse:505",
        "The element should respond to the request with a 505 Version Not Supported error.",
    ),
    (
        "mismatch01.dat",
        "3.1.2.17",
        "refuse:400",
        "Any element receiving this request will respond with a 400 Bad Request.",
    ),
    (
        "mismatch02.dat",
        "3.1.2.18",
        "refuse:501|400",
        "should respond with a 501 Not Implemented. A 400 Bad Request is also acceptable",
    ),
    ("bigcode.dat", "3.1.2.19", "drop", "An element receiving this response should simply drop it."),
    # 3.2 Transaction layer semantics
    (
        "badbranch.dat",
        "3.2.1",
        "lenient:400",
        "A parser must not break ... could reject the request with a 400 Response ... or it could fall back to the RFC "
        "2543-style transaction identifier.",
    ),
    # 3.3 Application layer semantics
    (
        "insuf.dat",
        "3.3.1",
        "refuse:400",
        "must not break because of the missing information. Ideally, it will respond with a 400 Bad Request error.",
    ),
    (
        "unkscm.dat",
        "3.3.2",
        "parses+respond:416",
        "A parser must accept this as a well-formed SIP request. An element receiving this request will reject it with a 416",
    ),
    (
        "novelsc.dat",
        "3.3.3",
        "parses+respond:416",
        "A parser must accept this as a well-formed SIP request. If an element will never accept this scheme ... 416",
    ),
    (
        "unksm2.dat",
        "3.3.4",
        "parses+respond:400",
        "Parsers must not fail when receiving this message. ... A registrar would reject this request with a 400 Bad Request",
    ),
    (
        "bext01.dat",
        "3.3.5",
        "parses+respond:420",
        "Any element receiving this request will respond with a 420 Bad Extension",
    ),
    (
        "invut.dat",
        "3.3.6",
        "parses+respond:415",
        "A parser must not fail when receiving it. ... An endpoint receiving this request would reject it with a 415",
    ),
    (
        "regaut01.dat",
        "3.3.7",
        "parses+accept",
        "The request is well formed. A parser must not fail ... A registrar that does care about challenge-response "
        "authentication will reject this request with a 401 (the registrar's job, not §8.2 validation).",
    ),
    (
        "multi01.dat",
        "3.3.8",
        "refuse:400",
        "An element receiving this request would respond with a 400 Bad Request error.",
    ),
    (
        "mcl01.dat",
        "3.3.9",
        "reject:400",
        "equivalent to an invalid Content-Length value ... should respond with an error ... over UDP ... discarded",
    ),
    (
        "bcast.dat",
        "3.3.10",
        "parses",
        "The message is well formed; parsers must not fail when receiving it. ... an endpoint ... should simply discard it.",
    ),
    (
        "zeromf.dat",
        "3.3.11",
        "parses+accept",
        "An endpoint should process the request as if the Max-Forwards field value were still positive.",
    ),
    (
        "cparam01.dat",
        "3.3.12",
        "parses+accept",
        "'unknownparam' parameter must be interpreted as a contact-param and not a url-param. This REGISTER should succeed.",
    ),
    (
        "cparam02.dat",
        "3.3.13",
        "parses+accept",
        "contains a contact where the URI has an unknown parameter. The REGISTER should succeed.",
    ),
    (
        "regescrt.dat",
        "3.3.14",
        "parses+accept",
        "contains a contact where the URI has an escaped header. The REGISTER should succeed.",
    ),
    (
        "sdp01.dat",
        "3.3.15",
        "parses+respond:406|400",
        "could respond with a 406 Not Acceptable ... It is also appropriate to respond with a 400 Bad Request",
    ),
    # 3.4 Backward compatibility
    (
        "inv2543.dat",
        "3.4.1",
        "parses",
        "a legal message per RFC 2543 ... that should be accepted by RFC 3261 elements that want to maintain backwards "
        "compatibility.",
    ),
    # In the RFC's archive, referred to by no section: no SIP-Version, a header line without a colon.
    ("test.dat", "-", "reject:400", "(not referenced by RFC 4475; malformed request line)"),
]


def load(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def parse_or_error(data: bytes) -> Request | Response | RemoteProtocolError:
    """parse_message, turning its one allowed exception into a value."""
    try:
        return parse_message(data)
    except RemoteProtocolError as exc:
        return exc


def validate_or_error(req: Request) -> tuple[int, str] | None:
    """validate_request; a RemoteProtocolError escaping it counts as its status."""
    try:
        return validate_request(req)
    except RemoteProtocolError as exc:  # tolerated: the shell can answer exc.status
        return exc.status, exc.reason


def statuses(spec: str) -> set[int]:
    return {int(s) for s in spec.split("|")}


def param(params, name: str) -> str | None:
    """Header/URI parameter by case-insensitive name: value, '' for a flag, None when absent."""
    for k, v in params:
        if k.lower() == name.lower():
            return "" if v is None else v
    return None


def unq(text: str | None) -> str | None:
    """Compare escaped and unescaped spellings alike (the API leaves the choice open)."""
    return None if text is None else unquote(text, errors="surrogateescape")


# ---------------------------------------------------------------------------------
# What the RFC says about the content of each message that parses.


def check_wsinv(m: Request) -> None:
    assert m.method == "INVITE"
    ruri = m.request_uri
    assert (ruri.user, ruri.host) == ("vivekg", "chair-dnrc.example.com")
    assert param(ruri.params, "unknownparam") == ""  # "a uri parameter with no value"
    assert m.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert m.cseq == (9, "INVITE")  # leading zeros
    assert int(m.headers.get("Max-Forwards")) == 68
    to = m.to
    assert to.display is None and to.uri.user == "vivekg" and to.tag == "1918181833n"
    frm = m.from_
    # quoted-string "J Rosenberg \\\"" : the value is  J Rosenberg \"  once unescaped
    assert frm.display in ('J Rosenberg \\"', 'J Rosenberg \\\\\\"'), frm.display
    assert frm.uri.user == "jdrosen" and frm.tag == "98asjd8"
    vias = m.vias  # "both comma separated and separately listed", short and long form
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert m.headers.get("Subject") == ""  # "an empty subject", sent as "s :"
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    route = m.headers.get("Route")
    assert route == "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    (contact,) = m.contacts
    assert contact.display == 'Quoted string ""'
    assert contact.uri.user == "jdrosen"
    assert param(contact.params, "newparam") == "newvalue"
    assert param(contact.params, "secondparam") == ""  # "a header parameter with no value"
    assert param(contact.params, "q") == "0.33"
    assert m.headers.get("Content-Type") == "application/sdp"
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n") and m.body.endswith(b"a=rtpmap:31 LPC\r\n")


INTMETH = "!interesting-Method0123456789_*+`.%indeed'~"


def check_intmeth(m: Request) -> None:
    assert m.method == INTMETH  # "% is not an escape character for this field"
    ruri = m.request_uri
    assert ruri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert ruri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert ruri.host == "example.com"
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    # "quoted-pair expansions, including a quoted NULL character"
    assert m.to.display in ("BEL:\x07 NUL:\x00 DEL:\x7f", "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f")
    assert m.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    frm = m.from_
    assert frm.display == "token1~` token2'+_ token3*%!.-"
    assert frm.tag == "_token~1'+`*%!-."
    assert param(frm.params, "fromParam''~+*_!.-%") in ('"работающий"', "работающий")
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.cseq == (139122385, INTMETH)
    assert m.headers.get("Max-Forwards") == "255"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert m.body == b""


def check_esc01(m: Request) -> None:
    ruri = m.request_uri
    assert unq(ruri.user) == "sips:user@example.com" and ruri.host == "example.net"
    assert unq(m.to.uri.user) == "user"
    assert unq(m.from_.uri.user) == "I have spaces"
    assert m.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # sent as "i:"
    assert m.headers.get("Content-Type") == "application/sdp"  # sent as "C:"
    (contact,) = m.contacts
    assert unq(contact.uri.user) == "caller"
    names = [unq(k) for k, _ in contact.uri.params]
    assert names == ["lr", "name"]
    # "the "name" uri-parameter has a value of "value%41", which is NOT equivalent to "valueA""
    value = dict(contact.uri.params).get("n%61me", dict(contact.uri.params).get("name"))
    assert value in ("v%61lue%25%34%31", "value%41"), value
    assert len(m.body) == 150


def check_escnull(m: Request) -> None:
    assert m.method == "REGISTER"
    assert unq(m.to.uri.user) == "null-\x00-null"  # must not be shortened at the NUL
    assert unq(m.from_.uri.user) == "null-\x00-null"
    users = [unq(c.uri.user) for c in m.contacts]
    assert users == ["\x00", "\x00\x00"]  # "two distinct contact URIs"
    assert m.body == b""


def check_esc02(m: Request) -> None:
    assert m.method == "RE%47IST%45R"  # "It is NOT equivalent to REGISTER"
    assert m.cseq == (29344, "RE%47IST%45R")
    assert m.to.display == "%Z%45" and m.from_.display == "%Z%45"
    assert m.top_via.branch == "z9hG4bK209%fzsnel234"
    # "two Contact header field values, not three"
    assert [c.uri.user for c in m.contacts] == ["alias1", "alias3"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def check_lwsdisp(m: Request) -> None:
    assert m.method == "OPTIONS"
    assert m.from_.display == "caller" and m.from_.uri.user == "caller" and m.from_.tag == "323"


def check_longreq(m: Request) -> None:
    to = m.to
    assert to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    assert to.uri.port == 6000
    assert param(to.uri.params, "unknownparam1") == "very" + "long" * 20 + "value"
    assert param(to.uri.params, "longparam" + "name" * 25) == "shortvalue"
    assert param(to.uri.params, "very" + "long" * 25 + "ParameterNameWithNoValue") == ""
    frm = m.from_
    assert frm.uri.user == "amazinglylongcallername" * 5
    assert frm.tag == "1" + "298" * 50 + "2424"  # "a very long tag"
    assert m.call_id == "longreq.one" + "really" * 20 + "longcallid"
    vias = m.vias
    assert len(vias) == 34
    assert [v.host for v in vias[:33]] == [f"sip{i}.example.com" for i in range(33, 0, -1)]
    assert vias[33].received == "192.0.2.5"
    assert vias[33].branch == "very" + "long" * 50 + "branchvalue"
    assert m.headers.get("Unknown-" + "Long" * 20 + "-Name", "").startswith(
        "unknown-" + "long" * 20 + "-value;"
    )
    assert len(m.body) == 150


def check_dblreq(m: Request) -> None:
    assert m.method == "REGISTER"
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert m.body == b""  # the INVITE octets are noise and must not become a body
    assert b"INVITE" not in bytes(m)  # nor be forwarded


def check_semiuri(m: Request) -> None:
    ruri = m.request_uri
    assert unq(ruri.user) == "user;par=u@example.net"
    assert ruri.host == "example.com" and tuple(ruri.params) == ()
    assert len(m.headers.get_all("Accept")) == 6


def check_transports(m: Request) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def check_mpart01(m: Request) -> None:
    assert m.method == "MESSAGE"
    raw = load("mpart01.dat")
    assert m.body == raw[raw.index(b"\r\n\r\n") + 4 :]  # all 553 octets, NULs included
    assert len(m.body) == 553 and b"\x00" in m.body
    assert m.headers.get("Content-Type") == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert m.top_via.port == 5070 and m.top_via.rport == ""


def check_unreason(m: Response) -> None:
    assert m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(m.body) == 154


def check_noreason(m: Response) -> None:
    assert m.status == 100 and m.reason == ""
    assert m.call_id == "noreason.asndj203insdf99223ndf"


def check_badbranch(m: Request) -> None:
    assert m.top_via.branch == "z9hG4bK"  # the magic cookie and nothing else


def check_unkscm(m: Request) -> None:
    assert m.uri == "nobodyKnowsThisScheme:totallyopaquecontent"
    assert m.request_uri.scheme == "nobodyKnowsThisScheme"
    assert m.to.uri.user == "user"  # which must not be used for routing


def check_novelsc(m: Request) -> None:
    assert m.request_uri.scheme == "soap.beep"


def check_unksm2(m: Request) -> None:
    assert str(m.to.uri) == "isbn:2983792873"
    assert str(m.from_.uri) == "http://www.example.com" and m.from_.tag == "3234233"
    assert [str(c.uri) for c in m.contacts] == ["name:John_Smith"]


def check_bext01(m: Request) -> None:
    assert m.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert m.headers.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]


def check_invut(m: Request) -> None:
    assert m.headers.get("Content-Type") == "application/unknownformat"
    assert m.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'


def check_regaut01(m: Request) -> None:
    assert m.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def check_bcast(m: Response) -> None:
    assert m.status == 200
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def check_zeromf(m: Request) -> None:
    assert m.headers.get("Max-Forwards") == "0"


def check_cparam01(m: Request) -> None:
    (contact,) = m.contacts  # addr-spec form: the parameter is the header's
    assert param(contact.params, "unknownparam") == ""
    assert param(contact.uri.params, "unknownparam") is None
    assert contact.uri.user == "+19725552222"


def check_cparam02(m: Request) -> None:
    (contact,) = m.contacts  # name-addr form: the parameter is the URI's
    assert param(contact.uri.params, "unknownparam") == ""
    assert param(contact.params, "unknownparam") is None


def check_regescrt(m: Request) -> None:
    (contact,) = m.contacts  # sent as "M:"
    assert unq(contact.uri.headers) == "Route=<sip:sip.example.com>"


def check_sdp01(m: Request) -> None:
    assert m.headers.get("Accept") == "text/nobodyKnowsThis"


def check_inv2543(m: Request) -> None:
    assert m.top_via.branch is None and m.from_.tag is None
    assert m.headers.get("Max-Forwards") is None and m.headers.get("Content-Length") is None
    assert m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")  # no Content-Length: to datagram end
    assert m.cseq == (56, "INVITE")


def check_baddate(m: Request) -> None:
    assert m.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def check_generic(m: Request | Response) -> None:
    m.call_id  # noqa: B018 - must not raise for these


CHECKS = {name[len("check_") :] + ".dat": fn for name, fn in globals().items() if name.startswith("check_")}

EXPECTED_KIND = {  # which messages are responses
    "unreason.dat": Response,
    "noreason.dat": Response,
    "scalarlg.dat": Response,
    "bigcode.dat": Response,
    "bcast.dat": Response,
}


# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "section", "verdict", "why"), TORTURE, ids=[row[0] for row in TORTURE])
def test_torture(name: str, section: str, verdict: str, why: str) -> None:
    data = load(name)
    result = parse_or_error(data)  # anything but RemoteProtocolError escapes and fails here
    kind, _, arg = verdict.partition(":")

    if kind == "reject":
        assert isinstance(result, RemoteProtocolError), f"§{section}: parsed, RFC: {why}"
        assert result.status in statuses(arg), f"§{section}: status {result.status}, RFC: {why}"
        return

    if kind == "drop":
        if isinstance(result, RemoteProtocolError):
            return
        assert isinstance(result, Response)
        with pytest.raises(RemoteProtocolError):
            result.top_via, result.cseq, result.call_id  # noqa: B018
        return

    if kind in ("refuse", "lenient"):
        if isinstance(result, RemoteProtocolError):
            assert result.status in statuses(arg), f"§{section}: status {result.status}, RFC: {why}"
            return
        assert isinstance(result, Request)
        outcome = validate_or_error(result)
        if kind == "refuse":
            assert outcome is not None, f"§{section}: accepted, RFC: {why}"
            assert outcome[0] in statuses(arg), f"§{section}: answered {outcome}, RFC: {why}"
        elif outcome is not None:
            assert outcome[0] in statuses(arg), f"§{section}: answered {outcome}, RFC: {why}"
        else:
            check_liberal_acceptance(name, result)
        return

    # parses / parses+accept / parses+respond:N
    assert not isinstance(result, RemoteProtocolError), (
        f"§{section}: {result} (status {result.status}); RFC: {why}"
    )
    assert isinstance(result, EXPECTED_KIND.get(name, Request))
    CHECKS.get(name, check_generic)(result)
    if kind == "parses+accept":
        assert validate_or_error(result) is None, f"§{section}: {validate_or_error(result)}; RFC: {why}"
    elif kind == "parses+respond":
        outcome = validate_or_error(result)
        assert outcome is not None, f"§{section}: accepted; RFC: {why}"
        assert outcome[0] in statuses(arg), f"§{section}: answered {outcome}; RFC: {why}"


def check_liberal_acceptance(name: str, req: Request) -> None:
    """Where the RFC lets an element be liberal, what it forwards must be clean."""
    first_line = bytes(req).split(b"\r\n", 1)[0]
    if name in ("lwsstart.dat", "trws.dat"):
        # "it must not include these extra SP characters in the messages it sends"
        assert first_line.count(b" ") == 2 and not first_line.endswith(b" "), first_line
    if name == "ltgtruri.dat":
        # "If the element forwards the request, it must not include the brackets"
        assert b"<" not in first_line, first_line
    if name == "baddn.dat":
        # "If this element were a proxy, it must not propagate the error": written back quoted
        assert str(req.from_).startswith('"Bell, Alexander" <'), str(req.from_)
        assert str(req.to).startswith('"Watson, Thomas" <'), str(req.to)
    if name == "escruri.dat":
        # liberal elements "ignore the escaped headers"; they must not become real headers
        assert req.headers.get("Route") is None


def test_table_covers_every_vector() -> None:
    on_disk = sorted(p.name for p in VECTORS.glob("*.dat"))
    assert sorted(row[0] for row in TORTURE) == on_disk
    assert len(on_disk) == 50  # 49 messages of RFC 4475 section 3, plus the archive's test.dat


@pytest.mark.parametrize("name", [r[0] for r in TORTURE if r[2].startswith("parses")])
def test_parsed_messages_reserialise_to_a_fixed_point(name: str) -> None:
    """parse -> bytes -> parse gives the same message (the API's round-trip promise).

    The serialiser always writes Content-Length (streams need it, §18.3), so a datagram that had
    none (inv2543.dat) gains exactly that header and nothing else.
    """
    first = parse_message(load(name))
    again = parse_message(bytes(first))
    if first.headers.get("Content-Length") is None:
        assert again.headers.remove("Content-Length") == first.headers
        assert again.headers.get("Content-Length") == str(len(first.body))
        assert (again.body, type(again)) == (first.body, type(first))
    else:
        assert again == first
    assert bytes(again) == bytes(first)


def test_vectors_are_bytes_the_transcription_gives() -> None:
    """The .dat files are what extract.py makes of messages.txt (nobody hand-edited one)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("extract_rfc4475", VECTORS / "extract.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, data in module.from_transcription().items():
        assert load(name) == data, name


@pytest.mark.parametrize(
    "name", ["wsinv.dat", "esc01.dat", "longreq.dat", "mpart01.dat", "unreason.dat", "bcast.dat", "invut.dat"]
)
def test_vector_bodies_match_their_content_length(name: str) -> None:
    """A check on the vectors themselves: well-formed ones declare their exact body size."""
    data = load(name)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.split(b":", 1)[0].strip().lower() in (b"content-length", b"l")
    ]
    assert lengths == [len(body)]
