"""SIP messages: frozen values, one parser, one serialiser (RFC 3261 §7).

Rules:

* ``parse_message(data)`` takes one whole message (a UDP datagram, or one frame
  cut by :class:`StreamFramer`) and returns a :class:`Request` or
  :class:`Response`.  It raises only :class:`RemoteProtocolError`, whose
  ``status`` says what to answer (400 malformed, 505 version, 513 too large).
* Header names keep their spelling, order and compact form; values are unfolded
  (§7.3.1).  Unknown headers are kept.  ``bytes(message)`` writes the canonical
  form ``Name: value``; for canonical input, ``bytes(parse_message(b)) == b``.
* The body is exactly ``Content-Length`` bytes (§18.3).  For datagrams without
  Content-Length the body runs to the end of the datagram; bytes beyond
  Content-Length are discarded; a body shorter than Content-Length is a 400.
* Semantic checks a UAS applies before acting (§8.2) live in
  :func:`validate_request` so the parser itself stays a parser.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, overload

from . import grammar
from .errors import LocalProtocolError, RemoteProtocolError
from .uri import (
    SIP_SCHEMES,
    NameAddr,
    Uri,
    Via,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_unquoted,
)

__all__ = [
    "COMPACT_FORMS",
    "Headers",
    "NameAddr",
    "Request",
    "Response",
    "StreamFramer",
    "Uri",
    "Via",
    "build_response",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "validate_request",
]

_T = TypeVar("_T")

#: RFC 3261 §7.3.3 compact forms, plus the ones later RFCs registered.
COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "x": "session-expires",
    "y": "identity",
}

#: Headers whose values are comma-separated lists (§7.3.1) and may be split.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "content-encoding", "alert-info", "call-info", "error-info", "in-reply-to",
        "allow-events", "path", "service-route", "reason", "history-info",
    }
)

#: Headers that may appear at most once in a message (checked by validate_request).
SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type")

#: Default limits: datagram size (issue: > 64 KiB is rejected) and header count.
MAX_MESSAGE_SIZE = 65536
MAX_HEADERS = 256


@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """Lower-cased long form of a header name, for comparisons."""
    lname = name.lower()
    return COMPACT_FORMS.get(lname, lname)


class Headers(Sequence[tuple[str, str]]):
    """An immutable, ordered list of ``(name, value)`` header fields.

    The fields never change, so what is derived from them is computed at most once per
    instance: the canonical names, an index from canonical name to values, and the parsed
    structured values the message accessors memoise (``_memo``; a value that fails to parse
    is not memoised, so it raises again on every access).
    """

    __slots__ = ("_items", "_names", "_index", "_memo")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple(items)
        self._names: tuple[str, ...] | None = None
        self._index: dict[str, list[str]] | None = None
        self._memo: dict[str, object] | None = None

    def canonical_names(self) -> tuple[str, ...]:
        """Canonical names of the fields, in order, computed once (the headers never change)."""
        if self._names is None:
            self._names = tuple(canonical_name(k) for k, _ in self._items)
        return self._names

    def _by_name(self) -> dict[str, list[str]]:
        """Canonical name -> raw values in order, built once on first lookup."""
        index = self._index
        if index is None:
            index = {}
            for name, (_, value) in zip(self.canonical_names(), self._items, strict=True):
                found = index.get(name)
                if found is None:
                    index[name] = [value]
                else:
                    found.append(value)
            self._index = index
        return index

    def count_of(self, name: str) -> int:
        """How many fields are named *name* (compact forms understood)."""
        found = self._by_name().get(canonical_name(name))
        return 0 if found is None else len(found)

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str] | Sequence[tuple[str, str]]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        if isinstance(other, tuple):
            return self._items == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def values(self, name: str) -> list[str]:
        """Every raw field value of *name*, one per header line, in order."""
        found = self._by_name().get(canonical_name(name))
        return [] if found is None else list(found)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field value of *name* (compact forms understood), or *default*."""
        found = self._by_name().get(canonical_name(name))
        return default if found is None else found[0]

    def get_all(self, name: str) -> list[str]:
        """Every value of *name*; list-valued headers are split on commas (§7.3.1)."""
        raw = self.values(name)
        if canonical_name(name) not in LIST_HEADERS:
            return raw
        out: list[str] = []
        for value in raw:
            out.extend(p.strip() for p in split_unquoted(value, ",") if p.strip())
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def add(self, name: str, value: str, first: bool = False) -> Headers:
        """A copy with one more field, appended (or prepended with ``first``)."""
        if first:
            return Headers(((name, value),) + self._items)
        return Headers(self._items + ((name, value),))

    def remove(self, name: str) -> Headers:
        """A copy without any field named *name*."""
        want = canonical_name(name)
        return Headers(i for i in self._items if canonical_name(i[0]) != want)

    def replace(self, name: str, value: str) -> Headers:
        """A copy where *name* has the single value *value*, kept at its first position."""
        want = canonical_name(name)
        out: list[tuple[str, str]] = []
        done = False
        for k, v in self._items:
            if canonical_name(k) == want:
                if not done:
                    out.append((k, value))
                    done = True
            else:
                out.append((k, v))
        if not done:
            out.append((name, value))
        return Headers(out)


class _Message:
    """Accessors shared by requests and responses (mixin over ``headers``/``body``)."""

    headers: Headers
    body: bytes

    def _one(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return self._one("Call-ID")

    def _parsed(self, key: str, parse: Callable[[], _T]) -> _T:
        """``parse()`` memoised on the (immutable) headers: each header is parsed once per message."""
        headers = self.headers
        memo = headers._memo
        if memo is None:
            memo = headers._memo = {}
        elif key in memo:
            return memo[key]  # type: ignore[return-value]
        value = parse()  # a RemoteProtocolError propagates and nothing is memoised
        memo[key] = value
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        """``(sequence number, method)`` from CSeq (§20.16)."""
        return self._parsed("cseq", self._parse_cseq)

    def _parse_cseq(self) -> tuple[int, str]:
        parts = self._one("CSeq").split()
        if len(parts) != 2 or not grammar.DIGITS_RE.match(parts[0]):
            raise RemoteProtocolError("bad CSeq")
        number = int(parts[0])
        if number >= 2**31:
            raise RemoteProtocolError("CSeq number out of range")
        return number, parts[1]

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first."""
        return list(self._parsed("vias", lambda: tuple(parse_via(v) for v in self.headers.get_all("Via"))))

    @property
    def top_via(self) -> Via:
        """The topmost Via value."""
        return self._parsed("top_via", self._parse_top_via)

    def _parse_top_via(self) -> Via:
        first = self.headers.get("Via")
        if first is None:
            raise RemoteProtocolError("missing Via header")
        return parse_via(split_unquoted(first, ",")[0])

    @property
    def from_(self) -> NameAddr:
        """The From value."""
        return self._parsed("from", lambda: parse_name_addr(self._one("From")))

    @property
    def to(self) -> NameAddr:
        """The To value."""
        return self._parsed("to", lambda: parse_name_addr(self._one("To")))

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value (``*`` gives a NameAddr whose uri is ``'*'``)."""
        return list(self._parsed("contacts",
                                 lambda: tuple(parse_name_addr(v) for v in self.headers.get_all("Contact"))))

    @property
    def expires(self) -> int | None:
        """The Expires header as an int, None when absent."""
        value = self.headers.get("Expires")
        if value is None:
            return None
        if not grammar.DIGITS_RE.match(value.strip()):
            raise RemoteProtocolError("bad Expires")
        return int(value.strip())

    @property
    def content_length(self) -> int:
        """Length of the body in bytes."""
        return len(self.body)

    def _serialise(self, start_line: str) -> bytes:
        lines = [start_line]
        has_length = False
        for name, value in self.headers:
            if canonical_name(name) == "content-length":
                has_length = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}")
        if not has_length:
            lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass(frozen=True, slots=True)
class Request(_Message):
    """A SIP request (§7.1)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def request_uri(self) -> Uri:
        """The Request-URI parsed (raises RemoteProtocolError when malformed)."""
        return parse_uri(self.uri)

    def with_headers(self, headers: Headers) -> Request:
        """A copy with *headers*."""
        # The constructor directly: dataclasses.replace() costs a fields() walk per copy (hot path).
        return Request(self.method, self.uri, headers, self.body, self.version)

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {self.version}")


@dataclass(frozen=True, slots=True)
class Response(_Message):
    """A SIP response (§7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def with_headers(self, headers: Headers) -> Response:
        """A copy with *headers*."""
        return Response(self.status, self.reason, headers, self.body, self.version)

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.version} {self.status} {self.reason}")


Message = Request | Response


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    """Split at the first empty line (CRLF CRLF, or bare LF LF from sloppy peers)."""
    end = data.find(b"\r\n\r\n")
    lf_end = data.find(b"\n\n")
    if end >= 0 and (lf_end < 0 or end <= lf_end):
        return data[:end], data[end + 4 :]
    if lf_end >= 0:
        return data[:lf_end], data[lf_end + 2 :]
    # A message with no body may end right after the last header line.
    if data.endswith(b"\r\n"):
        return data[:-2], b""
    raise RemoteProtocolError("no end of headers")


def _header_lines(head: str) -> list[str]:
    """Split the header block into logical lines, unfolding continuations (§7.3.1)."""
    text = head.replace("\r\n", "\n")
    if "\n " not in text and "\n\t" not in text:
        return text.split("\n")  # no folded lines (the usual case)
    lines: list[str] = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            lines.append(line)
    return lines


#: Header names already checked against the token grammar (bounded: peers choose names).
_GOOD_NAMES: set[str] = set()


def parse_message(
    data: bytes, *, max_size: int = MAX_MESSAGE_SIZE, max_headers: int = MAX_HEADERS
) -> Message:
    """Parse one complete SIP message; raise RemoteProtocolError when malformed."""
    if len(data) > max_size:
        raise RemoteProtocolError(
            f"message of {len(data)} bytes exceeds {max_size}", 513, "Message Too Large"
        )
    # §7.5: implementations SHOULD ignore CRLFs that precede the start line.
    data = data.lstrip(b"\r\n")
    head_bytes, rest = _split_head(data)
    head = head_bytes.decode("utf-8", "surrogateescape")
    lines = _header_lines(head)
    if len(lines) - 1 > max_headers:
        raise RemoteProtocolError(
            f"{len(lines) - 1} header fields exceed the limit of {max_headers}", 400, "Too Many Headers"
        )
    start = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        # HEADER_RE, unrolled: token, optional blanks, ":", value without surrounding blanks.
        name, colon, value = line.partition(":")
        if colon:
            name = name.rstrip(" \t")
            if name not in _GOOD_NAMES:
                if not grammar.FULL_TOKEN_RE.match(name):
                    raise RemoteProtocolError(f"malformed header line {line[:40]!r}")
                if len(_GOOD_NAMES) < 512:
                    _GOOD_NAMES.add(name)
            headers.append((name, value.lstrip(" \t\r\n").rstrip(" \t")))
        else:
            raise RemoteProtocolError(f"malformed header line {line[:40]!r}")
    hdrs = Headers(headers)
    body = _take_body(hdrs, rest)
    if start.startswith(("SIP/", "sip/", "Sip/")) and " " in start:
        m = grammar.STATUS_LINE_RE.match(start)
        if not m:
            raise RemoteProtocolError(f"malformed status line {start[:40]!r}")
        version, code, reason = m.groups()
        if not grammar.SIP_VERSION_RE.match(version):
            raise RemoteProtocolError(f"bad SIP version {version!r}")
        status = int(code)
        if not 100 <= status <= 699:
            raise RemoteProtocolError(f"status code {status} out of range")
        return Response(status, reason, hdrs, body, version)
    m = grammar.REQUEST_LINE_RE.match(start)
    if not m:
        raise RemoteProtocolError(f"malformed request line {start[:60]!r}")
    method, uri, version = m.groups()
    vm = grammar.SIP_VERSION_RE.match(version)
    if not vm:
        raise RemoteProtocolError(f"bad SIP version {version!r}")
    return Request(method, uri, hdrs, body, version)


def _take_body(headers: Headers, rest: bytes) -> bytes:
    lengths = headers.values("Content-Length")
    if not lengths:
        return rest
    text = lengths[0].strip()
    if len(lengths) > 1 or not grammar.DIGITS_RE.match(text):
        raise RemoteProtocolError("bad Content-Length")
    length = int(text)
    if length > len(rest):
        raise RemoteProtocolError(f"Content-Length {length} larger than the {len(rest)} body bytes")
    return rest[:length]


#: Methods we recognise (RFC 3261 and the extensions a help-point gateway meets).  Anything else
#: gets 501 (§8.2.1); recognised methods we do not allow get 405 from the transaction user.
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK", "MESSAGE",
    "SUBSCRIBE", "NOTIFY", "REFER", "PUBLISH",
})

#: Body types we understand (§8.2.3): anything else gets 415 with an Accept header.
ACCEPTED_TYPES = frozenset({
    "application/sdp", "application/dtmf-relay", "application/dtmf", "text/plain", "message/sipfrag",
    "application/simple-message-summary", "application/pidf+xml", "multipart/mixed",
})


#: Headers every request must carry (§8.1.1), with their canonical names.
_MANDATORY = tuple((name, canonical_name(name)) for name in ("Via", "From", "To", "Call-ID", "CSeq"))


def validate_request(
    request: Request, supported: frozenset[str] = frozenset()
) -> tuple[int, str] | None:
    """RFC 3261 §8.2 checks a UAS applies before acting; (status, reason) or None.

    Checks, in the order §8.2 gives them: the version (505), the method (501),
    mandatory headers, single-valued headers, their syntax (400), CSeq method
    matches (400), the Request-URI scheme (416), a REGISTER's To must be a SIP
    address-of-record (400, §10.3 step 3), Require options we do not support
    (420), the body's Content-Type (415) and, for INVITE, an Accept that excludes
    SDP (406).  Max-Forwards 0 is not refused: the gateway is the request's
    endpoint, not a proxy (§16.3 applies to proxies).
    """
    vm = grammar.SIP_VERSION_RE.match(request.version)
    if not vm or (vm.group(1), vm.group(2)) != ("2", "0"):
        return 505, "Version Not Supported"
    if request.method not in KNOWN_METHODS:
        return 501, "Not Implemented"
    h = request.headers
    try:
        by_name = h._by_name()
        for name, cname in _MANDATORY:
            if cname not in by_name:
                return 400, f"Missing {name}"
        for name in SINGLE_HEADERS:
            found = by_name.get(name)
            if found is not None and len(found) > 1:
                return 400, f"Multiple {name} headers"
        number, method = request.cseq
        if method != request.method:
            return 400, "CSeq Method Mismatch"
        # Parse each structured header once: a malformed one raises RemoteProtocolError (400).
        _ = (request.vias, request.from_, request.to, request.contacts, request.expires)
        mf = h.get("Max-Forwards")
        if mf is not None and (not grammar.DIGITS_RE.match(mf.strip()) or int(mf) > 255):
            return 400, "Bad Max-Forwards"
        uri = request.uri
        scheme = uri.partition(":")[0].lower()
        if scheme not in SIP_SCHEMES:
            if not grammar.SCHEME_RE.match(uri):
                return 400, "Bad Request-URI"
            return 416, "Unsupported URI Scheme"
        _ = request.request_uri
        if request.method == "REGISTER":
            to_uri = request.to.uri
            if not isinstance(to_uri, Uri) or not to_uri.is_sip:
                return 400, "Bad Request (To is not a SIP address-of-record)"
    except RemoteProtocolError as exc:
        return exc.status, f"Bad Request ({exc})"[:120]
    required = [r for r in h.get_all("Require") if r.lower() not in supported]
    if required and request.method not in ("CANCEL", "ACK"):
        return 420, "Bad Extension"
    if request.body and request.method != "ACK":
        ctype = (h.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype not in ACCEPTED_TYPES:
            return 415, "Unsupported Media Type"
    if request.method == "INVITE":
        accept = [a.split(";")[0].strip().lower() for a in h.get_all("Accept")]
        if accept and not any(a in ("application/sdp", "application/*", "*/*") for a in accept):
            return 406, "Not Acceptable"
    return None


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to *request* per RFC 3261 §8.2.6.

    Via (every value, in order), From, To, Call-ID and CSeq are copied; a To tag
    is added when *to_tag* is given and the request's To has none.
    """
    copied: list[tuple[str, str]] = []
    for name, value in request.headers:
        cname = canonical_name(name)
        if cname == "via":
            copied.append(("Via", value))
        elif cname in ("from", "call-id", "cseq"):
            copied.append((_LONG_NAMES[cname], value))
        elif cname == "to":
            if to_tag is not None and status != 100:
                to = parse_name_addr(value)
                if to.tag is None:
                    value = value + f";tag={to_tag}"
            copied.append(("To", value))
    copied.extend(headers)
    return Response(status, reason or REASONS.get(status, "Unknown"), Headers(copied), body)


_LONG_NAMES = {"from": "From", "call-id": "Call-ID", "cseq": "CSeq", "to": "To"}

#: Default reason phrases (RFC 3261 §21 and extensions we send).
REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    491: "Request Pending", 500: "Server Internal Error", 501: "Not Implemented",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


class StreamFramer:
    """Cut a byte stream (TCP, TLS) into messages by Content-Length (§18.3).

    ``feed`` returns every complete message received so far.  A stream message
    without Content-Length, or bigger than ``max_size``, cannot be framed and
    raises RemoteProtocolError: the connection must then be closed.  CRLF
    keep-alives between messages (RFC 5626 §3.5.1) are counted in ``pings``.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        #: Where the search for the end of the head resumes (bytes before it hold no CRLF CRLF).
        self._searched = 0
        #: Size of the message whose head is in the buffer, once its Content-Length has been read.
        self._total: int | None = None
        #: Number of double-CRLF keep-alive pings seen (each wants a CRLF pong).
        self.pings = 0
        #: CRLFs seen since the last message or ping: a ping may be cut across two reads.
        self._crlfs = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete messages now available.

        Each byte is searched once and each head read once, however finely the peer cuts its stream.
        """
        self._buffer += data
        out: list[bytes] = []
        while True:
            buf = self._buffer
            total = self._total
            if total is None:
                total = self._frame_size(buf)
                if total is None:
                    return out
                self._total = total
            if len(buf) < total:
                return out
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._total = None
            self._searched = 0

    def _frame_size(self, buf: bytearray) -> int | None:
        """Size of the message starting the buffer, None until its head is complete."""
        skip = 0
        while buf[skip : skip + 2] == b"\r\n":
            skip += 2
            self._crlfs += 1
            if self._crlfs == 2:
                self.pings += 1
                self._crlfs = 0
        if skip:
            del buf[:skip]
            self._searched = 0
        if buf[:1] not in (b"", b"\r"):
            self._crlfs = 0  # a message starts: a lone CRLF before it was not half a ping
        end = buf.find(b"\r\n\r\n", max(0, self._searched - 3))
        if end < 0:
            if len(buf) > self.max_size:
                raise RemoteProtocolError("header block too large", 513, "Message Too Large")
            self._searched = len(buf)
            return None
        length = _stream_content_length(bytes(buf[:end]).decode("utf-8", "surrogateescape"))
        total = end + 4 + length
        if total > self.max_size:
            raise RemoteProtocolError(
                f"message of {total} bytes exceeds {self.max_size}", 513, "Message Too Large"
            )
        return total


def _stream_content_length(head: str) -> int:
    """The Content-Length of a stream message's head (§18.3: mandatory on streams)."""
    for line in _header_lines(head)[1:]:
        # As parse_message reads a header line (no regex: a backtracking one was quadratic in blanks).
        name, colon, value = line.partition(":")
        if colon and name.rstrip(" \t").lower() in ("content-length", "l"):
            text = value.lstrip(" \t\r\n").rstrip(" \t")
            if not grammar.DIGITS_RE.match(text):
                raise RemoteProtocolError("bad Content-Length on a stream")
            return int(text)
    raise RemoteProtocolError("message without Content-Length on a stream")


def ensure_sip_uri(uri: Uri | str) -> Uri:
    """Parse *uri* when needed and insist on a SIP/SIPS URI (LocalProtocolError otherwise)."""
    parsed = parse_uri(uri) if isinstance(uri, str) else uri
    if not parsed.is_sip:
        raise LocalProtocolError(f"not a SIP URI: {parsed}")
    return parsed
