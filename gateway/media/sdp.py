"""SDP (RFC 4566) for audio, and offer/answer (RFC 3264).

Pure.  :func:`parse_sdp` turns a body into a frozen :class:`SessionDescription`
that keeps every line it does not model (``i=``, ``b=``, ``k=``, unknown
attributes ...) so ``bytes(parse_sdp(body)) == body`` for a well-formed body in
RFC 4566 order with CRLF endings.

Offer/answer rules implemented (RFC 3264):

* §6: the answer has one m-line per offered m-line, in order; streams we do
  not take are rejected with port 0.  We take the first audio stream over
  ``RTP/AVP`` whose formats include a codec we support.
* §6.1: among the offered formats we choose the *offerer's* most preferred
  supported codec, answer with only that codec and the offerer's
  telephone-event payload type (RFC 4733 §7.1.1), keeping its number.
* §6.1 direction: sendonly -> recvonly, recvonly -> sendonly, inactive ->
  inactive, sendrecv -> sendrecv; §8.4 a ``c=0.0.0.0`` hold (RFC 2543 style) is
  treated as sendonly.
* No usable audio stream or no common codec: :class:`SdpNegotiationError`
  (488 Not Acceptable Here).

Values from the peer are range-checked before they reach the media plane (one
bad leg must not stop the clock every call shares): numbers are ASCII digits
only (``"²".isdigit()`` is true); offered formats that are not RTP payload
types (0-127, RFC 3550 §5.1) are never chosen; the stream we use must have an
m= port in 0-65535 and a c= address that is a unicast IP literal of its address type
(a hostname would make every send a blocking DNS lookup; a group or broadcast address would aim our RTP
at a whole network), else 488; an
``a=rtcp`` port that is not 1-65535 is ignored (RTCP then goes to RTP port + 1,
or nowhere when that is past 65535) and an unusable ``a=ptime`` counts as absent.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from dataclasses import dataclass, field, replace

from .errors import SdpNegotiationError, SdpParseError

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
#: Static audio payload types (RFC 3551 §6) that need no rtpmap.
STATIC_CODECS = {"0": ("PCMU", 8000), "3": ("GSM", 8000), "8": ("PCMA", 8000), "9": ("G722", 8000),
                 "13": ("CN", 8000), "18": ("G729", 8000)}
_STATIC_PT = {"PCMU": 0, "PCMA": 8}
_SESSION_BEFORE_C = "iuep"
_MEDIA_BEFORE_C = "i"
_MAX_PT = 127  # RTP payload types are 7 bits (RFC 3550 §5.1)
_MAX_PORT = 65535
_MAX_PTIME = 1000  # ms; a longer a=ptime (or 0) is no packet time: the default applies
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_ADDRESS_TYPES: dict[str, type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]] = {
    "IP4": ipaddress.IPv4Address, "IP6": ipaddress.IPv6Address}

Attribute = tuple[str, str | None]


def _digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits (``str.isdigit`` also takes ``²`` and ``٣``, which ``int``
    refuses)."""
    return text.isascii() and text.isdigit()


def _bounded_int(text: str, maximum: int) -> int | None:
    """``text`` as an int in 0..maximum, or None when it is not ASCII digits or is out of range."""
    if not _digits(text) or len(text.lstrip("0")) > len(str(maximum)):
        return None  # the length check keeps int() away from huge digit strings
    value = int(text)
    return value if value <= maximum else None


def _payload_type(fmt: str) -> int | None:
    """The RTP payload type an m= format names (0-127), or None when it names none."""
    return _bounded_int(fmt, _MAX_PT)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 4566 §5.2)."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} {self.nettype} {self.addrtype} "
                f"{self.address}")


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` (RFC 4566 §5.7); ``address`` may carry ``/ttl`` for multicast, kept verbatim."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4`` or ``IN IP6`` according to the address."""
        return cls(address, "IN", "IP6" if ":" in address else "IP4")

    @property
    def host(self) -> str:
        """The address without any ``/ttl/count`` suffix."""
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


def _attr_line(attr: Attribute) -> str:
    name, value = attr
    return f"a={name}" if value is None else f"a={name}:{value}"


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    found = None
    for name, _ in attributes:
        if name in DIRECTIONS:
            found = name
    return found


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 §5.14) with its lines."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    #: Other lines (``i=``, ``b=``, ``k=``, unknown) as ``(type, value)`` in order.
    lines: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name[:value]`` (``""`` for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def rtpmap(self) -> dict[str, tuple[str, int]]:
        """Payload type -> (encoding name upper-cased, clock rate); static types filled in."""
        result = {pt: STATIC_CODECS[pt] for pt in self.formats if pt in STATIC_CODECS}
        for key, value in self.attributes:
            if key == "rtpmap" and value:
                pt, _, encoding = value.partition(" ")
                name, _, rest = encoding.strip().partition("/")
                rate = _bounded_int(rest.partition("/")[0], 10**9)
                if rate is not None:
                    result[pt] = (name.upper(), rate)
        return result

    def fmtp(self) -> dict[str, str]:
        """Payload type -> format parameters."""
        result = {}
        for key, value in self.attributes:
            if key == "fmtp" and value:
                pt, _, params = value.partition(" ")
                result[pt] = params.strip()
        return result

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, or None."""
        return _direction(self.attributes)

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in whole ms, or None when absent or not a packet time (``inf``, ``nan``, ``²``, 0,
        more than a second)."""
        value = self.attribute("ptime")
        if not value:
            return None
        whole, _, fraction = value.strip().partition(".")
        if fraction and not _digits(fraction):
            return None
        return _bounded_int(whole, _MAX_PTIME) or None

    def serialise(self) -> list[str]:
        """The section's lines, without line endings."""
        count = f"/{self.port_count}" if self.port_count is not None else ""
        out = [f"m={self.media} {self.port}{count} {self.proto} {' '.join(self.formats)}".rstrip()]
        out += [f"{t}={v}" for t, v in self.lines if t in _MEDIA_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"{t}={v}" for t, v in self.lines if t not in _MEDIA_BEFORE_C]
        out += [_attr_line(a) for a in self.attributes]
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole SDP body.  ``bytes(sd)`` serialises it with CRLF line endings."""

    origin: Origin = field(default_factory=Origin)
    name: str = "-"
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    #: Other session-level lines (``i= u= e= p= b= t= r= z= k=``, unknown) as ``(type, value)`` in order.
    lines: tuple[tuple[str, str], ...] = (("t", "0 0"),)
    version: int = 0

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, or None."""
        return _direction(self.attributes)

    def __str__(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.name}"]
        out += [f"{t}={v}" for t, v in self.lines if t in _SESSION_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"{t}={v}" for t, v in self.lines if t not in _SESSION_BEFORE_C]
        out += [_attr_line(a) for a in self.attributes]
        for m in self.media:
            out += m.serialise()
        return "\r\n".join(out) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8", "surrogateescape")


def _int(text: str, what: str) -> int:
    if not _digits(text):
        raise SdpParseError(f"bad {what}: {text!r}")
    try:
        return int(text)
    except ValueError as exc:  # more digits than int() converts (sys.get_int_max_str_digits)
        raise SdpParseError(f"bad {what}: {len(text)} digits") from exc


def _connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(f"bad c= line: {value!r}")
    return Connection(parts[2], parts[0], parts[1])


def _media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(f"bad m= line: {value!r}")
    port_text, _, count = parts[1].partition("/")
    return MediaDescription(parts[0], _int(port_text, "m= port"), parts[2], tuple(parts[3:]),
                            _int(count, "m= port count") if count else None)


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse an SDP body (CRLF or LF line endings); raises :class:`SdpParseError` (488)."""
    text = body.decode("utf-8", "surrogateescape") if isinstance(body, bytes) else body
    session: dict = {"attributes": [], "lines": [], "media": []}
    current: dict | None = None
    seen_v = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpParseError(f"not an SDP line: {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "v":
            seen_v = True
            session["version"] = _int(value.strip(), "v=")
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpParseError(f"bad o= line: {value!r}")
            session["origin"] = Origin(parts[0], _int(parts[1], "session id"), _int(parts[2], "session version"),
                                       *parts[3:])
        elif kind == "s" and current is None:
            session["name"] = value
        elif kind == "m":
            current = {"m": _media(value), "attributes": [], "lines": [], "connection": None}
            session["media"].append(current)
        elif kind == "c":
            if current is None:
                session["connection"] = _connection(value)
            else:
                current["connection"] = _connection(value)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            target = session if current is None else current
            target["attributes"].append((name, attr_value if sep else None))
        else:
            (session if current is None else current)["lines"].append((kind, value))
    if not seen_v or "origin" not in session:
        raise SdpParseError("SDP body lacks v= or o=")
    media = tuple(replace(m["m"], connection=m["connection"], attributes=tuple(m["attributes"]),
                          lines=tuple(m["lines"])) for m in session["media"])
    return SessionDescription(session["origin"], session.get("name", "-"), session.get("connection"),
                              tuple(session["attributes"]), media, tuple(session["lines"]),
                              session["version"])


def _as_sdp(value: SessionDescription | bytes | str) -> SessionDescription:
    return value if isinstance(value, SessionDescription) else parse_sdp(value)


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """What offer/answer agreed for the audio stream, from our point of view."""

    remote_address: str
    remote_port: int
    codec: str
    payload_type: int
    clock_rate: int = 8000
    #: Packet time the remote side asked to receive, in ms.
    ptime: int = 20
    #: Payload type of telephone-event (RFC 4733), or None if not negotiated.
    telephone_event: int | None = None
    #: Our direction: ``sendrecv``, ``sendonly`` (we send only), ``recvonly`` or ``inactive``.
    direction: str = "sendrecv"
    #: Remote RTCP port (``a=rtcp``, RFC 3605), else RTP port + 1.
    remote_rtcp_port: int | None = None

    @property
    def rtcp_port(self) -> int | None:
        """Where to send RTCP: ``a=rtcp``, else RTP port + 1; None when that is not a port (RTP on 65535)."""
        port = self.remote_rtcp_port if self.remote_rtcp_port is not None else self.remote_port + 1
        return port if 0 < port <= _MAX_PORT else None

    @property
    def on_hold(self) -> bool:
        """True when the remote side is not to receive media (hold, or 0.0.0.0)."""
        return self.direction in ("recvonly", "inactive") or self.remote_address in ("0.0.0.0", "::")

    @property
    def sends(self) -> bool:
        """True when we should send RTP to the remote side."""
        return not self.on_hold and self.remote_port != 0


def build_offer(address: str, port: int, codecs: tuple[str, ...] = ("PCMU", "PCMA"), telephone_event: bool = True,
                ptime: int = 20, *, session_id: int, version: int = 0, direction: str = "sendrecv",
                telephone_event_pt: int = 101, username: str = "gateway") -> SessionDescription:
    """An audio offer (RFC 3264 §5).  ``bytes()`` of the result is the body to send."""
    if direction not in DIRECTIONS:
        raise ValueError(f"bad direction {direction!r}")
    formats = [str(_STATIC_PT[c]) for c in codecs]
    attributes: list[Attribute] = [("rtpmap", f"{_STATIC_PT[c]} {c}/8000") for c in codecs]
    if telephone_event:
        formats.append(str(telephone_event_pt))
        attributes += [("rtpmap", f"{telephone_event_pt} telephone-event/8000"),
                       ("fmtp", f"{telephone_event_pt} 0-16")]
    attributes += [("ptime", str(ptime)), (direction, None)]
    conn = Connection.for_address(address)
    media = MediaDescription("audio", port, "RTP/AVP", tuple(formats), attributes=tuple(attributes))
    return SessionDescription(Origin(username, session_id, version, "IN", conn.addrtype, address), "-", conn,
                              (), (media,))


def _stream_connection(sd: SessionDescription, m: MediaDescription) -> Connection:
    conn = m.connection or sd.connection
    if conn is None:
        raise SdpNegotiationError("audio stream has no c= line")
    return conn


def _stream_address(conn: Connection) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The c= address, an IP literal of its address type; :class:`SdpNegotiationError` when it is anything
    else (a hostname would make every RTP send a blocking DNS lookup on the event loop)."""
    kind = _ADDRESS_TYPES.get(conn.addrtype)
    if conn.nettype != "IN" or kind is None:
        raise SdpNegotiationError(f"c= line {str(conn)!r}: not IN IP4 or IN IP6")
    host = conn.host
    try:
        if "%" in host:  # a zone index (fe80::1%eth0) means nothing to the peer that wrote it
            raise ValueError(host)
        return kind(host)
    except ValueError:
        raise SdpNegotiationError(
            f"c= line {str(conn)!r}: {host!r} is not an {conn.addrtype} address") from None


def _rtcp_port(m: MediaDescription) -> int | None:
    """``a=rtcp`` (RFC 3605) port, or None when absent or not a port 1-65535 (then ignored: RTCP is not
    worth failing a call for)."""
    value = m.attribute("rtcp")
    if value is None:
        return None
    parts = value.split()
    port = _bounded_int(parts[0], _MAX_PORT) if parts else None
    if not port:
        log.debug("ignoring a=rtcp:%r, not a port 1-%d", value, _MAX_PORT)
        return None
    return port


def _telephone_event_pt(m: MediaDescription) -> str | None:
    for pt, (name, rate) in m.rtpmap().items():
        if name == "TELEPHONE-EVENT" and rate == 8000 and pt in m.formats and _payload_type(pt) is not None:
            return pt
    return None


def _negotiated(sd: SessionDescription, m: MediaDescription, codec: str, pt: str,
                te_pt: str | None, local: str | None) -> NegotiatedMedia:
    """What stream ``m`` of ``sd`` (the remote side's description) agreed, range-checked: answer() and
    accept_answer() both build their result here.  Raises :class:`SdpNegotiationError` for an m= port or
    c= address we cannot send to (``local``: our media address, to compare IP versions)."""
    if not 0 <= m.port <= _MAX_PORT:
        raise SdpNegotiationError(f"m={m.media} port {m.port} is not a port (0-{_MAX_PORT})")
    number = _payload_type(pt)
    te = None if te_pt is None else _payload_type(te_pt)
    if number is None or (te_pt is not None and te is None):  # the callers choose among valid ones only
        bad = pt if number is None else te_pt
        raise SdpNegotiationError(f"m={m.media}: format {bad!r} is not an RTP payload type (0-{_MAX_PT})")
    address = _stream_address(_stream_connection(sd, m))
    remote_direction = m.direction or sd.direction or "sendrecv"
    if address.is_unspecified and remote_direction == "sendrecv":
        remote_direction = "sendonly"  # RFC 3264 §8.4: legacy hold (c=0.0.0.0)
    _check_family(local, address)
    _check_unicast(address)
    # Canonical text (2001:db8::1, not 2001:DB8:0::1): what recvfrom gives for the same source.
    return NegotiatedMedia(str(address), m.port, codec, number, 8000, m.ptime or 20, te,
                           _REVERSE[remote_direction], _rtcp_port(m))


def _check_family(local: str | None, theirs: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """:class:`SdpNegotiationError` when the remote address is of the other IP version than our media address
    (our socket could never send to it); a hold address (0.0.0.0, ::) is fine, nothing is sent."""
    ours = _own_address(local or "")
    if ours is None:
        return  # no literal of ours to compare with
    if not theirs.is_unspecified and theirs.version != ours.version:
        raise SdpNegotiationError(f"c= address {theirs} is IPv{theirs.version}, and this gateway's media is on "
                                  f"IPv{ours.version} ({ours})")


@functools.lru_cache(maxsize=8)
def _own_address(local: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Our media address as an IP literal, or None (parsed once: it is the same for every call)."""
    try:
        return ipaddress.ip_address(local)
    except ValueError:
        return None


def _check_unicast(theirs: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Our RTP and RTCP never go to a group or a broadcast address: a call has one peer, and a hostile SDP
    must not make the gateway spray keep-alives and relayed audio at a whole network."""
    if theirs.is_multicast or theirs == _BROADCAST:
        raise SdpNegotiationError(f"c= address {theirs} is not a unicast address")


def answer(offer: SessionDescription | bytes | str, address: str, port: int,
           supported: tuple[str, ...] = ("PCMU", "PCMA"), telephone_event: bool = True, ptime: int = 20, *,
           session_id: int, version: int = 0,
           username: str = "gateway") -> tuple[SessionDescription, NegotiatedMedia]:
    """Answer ``offer`` (RFC 3264 §6); raises :class:`SdpNegotiationError` (488) if no audio matches or the
    chosen stream's m= port or c= address is unusable, :class:`SdpParseError` (488) if it is malformed."""
    offer = _as_sdp(offer)
    wanted = {c.upper() for c in supported}
    chosen: tuple[int, str, str] | None = None  # (index, pt, codec)
    not_pts: list[str] = []  # offered formats that are no RTP payload type, never chosen
    for index, m in enumerate(offer.media):
        if m.media != "audio" or m.port == 0 or m.proto.upper() != "RTP/AVP":
            continue
        rtpmap = m.rtpmap()
        for pt in m.formats:
            if _payload_type(pt) is None:
                not_pts.append(pt)
                continue
            name, rate = rtpmap.get(pt, ("", 0))
            if name in wanted and rate == 8000:
                chosen = (index, pt, name)
                break
        if chosen:
            break
    if chosen is None:
        audio = [m for m in offer.media if m.media == "audio" and m.port != 0]
        if not audio:
            raise SdpNegotiationError("offer has no audio stream")
        ignored = f"; ignored formats that are not RTP payload types 0-127: {not_pts!r}" if not_pts else ""
        raise SdpNegotiationError(f"no common codec (we support {', '.join(supported)}){ignored}")
    index, pt, codec = chosen
    offered = offer.media[index]
    te_pt = _telephone_event_pt(offered) if telephone_event else None
    negotiated = _negotiated(offer, offered, codec, pt, te_pt, address)
    formats = [pt]
    attributes: list[Attribute] = [("rtpmap", f"{pt} {codec}/8000")]
    if te_pt is not None:
        formats.append(te_pt)
        attributes += [("rtpmap", f"{te_pt} telephone-event/8000"),
                       ("fmtp", f"{te_pt} {offered.fmtp().get(te_pt) or '0-15'}")]
    attributes += [("ptime", str(ptime)), (negotiated.direction, None)]
    local = Connection.for_address(address)
    media = []
    for i, m in enumerate(offer.media):
        if i == index:
            media.append(MediaDescription("audio", port, offered.proto, tuple(formats), attributes=tuple(attributes)))
        else:
            media.append(MediaDescription(m.media, 0, m.proto, m.formats or ("0",)))
    sdp = SessionDescription(Origin(username, session_id, version, "IN", local.addrtype, address), "-", local,
                             (), tuple(media))
    return sdp, negotiated


def accept_answer(offer_we_sent: SessionDescription | bytes | str,
                  answer_sdp: SessionDescription | bytes | str) -> NegotiatedMedia:
    """What an answer to our offer agreed (RFC 3264 §7); raises :class:`SdpNegotiationError`."""
    offer = _as_sdp(offer_we_sent)
    ans = _as_sdp(answer_sdp)
    if len(ans.media) != len(offer.media):
        raise SdpNegotiationError(f"answer has {len(ans.media)} m-lines, offer had {len(offer.media)}")
    for ours, theirs in zip(offer.media, ans.media, strict=True):
        if ours.media != "audio" or ours.port == 0 or theirs.port == 0:
            continue
        offered_map = ours.rtpmap()
        answer_map = theirs.rtpmap()
        for pt in theirs.formats:
            if pt not in ours.formats or pt not in offered_map:
                continue
            name, rate = answer_map.get(pt, offered_map[pt])
            if name in ("PCMU", "PCMA") and offered_map[pt][0] == name and rate == 8000 \
                    and _payload_type(pt) is not None:
                te = _telephone_event_pt(theirs)
                if te is not None and te not in ours.formats:
                    te = None
                local = ours.connection or offer.connection
                return _negotiated(ans, theirs, name, pt, te, local.host if local is not None else None)
        raise SdpNegotiationError("answer chose no codec we offered")
    raise SdpNegotiationError("answer rejected the audio stream")
