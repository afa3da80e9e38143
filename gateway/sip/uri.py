"""SIP URIs, name-addr values and Via values (RFC 3261 §19.1, §20.10, §20.42).

All three are frozen values with a ``parse_*`` constructor that raises
:class:`~gateway.sip.errors.RemoteProtocolError` on malformed input and a
``__str__`` that serialises them.  Parameters keep their order and their
original spelling; lookups by name are case-insensitive, as §19.1.4 asks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import grammar
from .errors import RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

#: URI schemes we route.  Anything else in a Request-URI earns a 416 (§8.2.2.1).
SIP_SCHEMES = frozenset({"sip", "sips"})


def split_unquoted(text: str, sep: str) -> list[str]:
    """Split *text* on *sep* outside quoted strings and ``<...>`` brackets."""
    if sep not in text:
        return [text]
    if '"' not in text and "<" not in text:
        return text.split(sep)  # nothing quoted or bracketed: every separator counts
    return _split_walk(text, sep)


def _split_walk(text: str, sep: str) -> list[str]:
    """:func:`split_unquoted` for any text: a walk tracking quotes, escapes and ``<...>`` depth."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def parse_params(text: str, what: str) -> Params:
    """Parse ``;name=value;flag`` (the leading ``;`` already removed)."""
    if not text:
        return ()
    out: list[tuple[str, str | None]] = []
    for raw in split_unquoted(text, ";"):
        item = raw.strip()
        if not item:
            raise RemoteProtocolError(f"empty parameter in {what}")
        name, eq, value = item.partition("=")
        name = name.strip()
        if not grammar.FULL_TOKEN_RE.match(name):
            raise RemoteProtocolError(f"bad parameter name {name!r} in {what}")
        out.append((name, value.strip() if eq else None))
    return tuple(out)


def format_params(params: Params) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def get_param(params: Params, name: str) -> str | None:
    """Return a parameter's value ('' for a flag), or None when absent."""
    lname = name.lower()
    for k, v in params:
        if k.lower() == lname:
            return "" if v is None else v
    return None


def has_param(params: Params, name: str) -> bool:
    """True when the parameter is present, with or without a value."""
    lname = name.lower()
    return any(k.lower() == lname for k, _ in params)


def _check_host(host: str, what: str) -> None:
    if grammar.IPV6_REF_RE.match(host) or grammar.IPV4_RE.match(host) or grammar.HOSTNAME_RE.match(host):
        return
    raise RemoteProtocolError(f"bad host {host!r} in {what}")


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 references in brackets) and validate both."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise RemoteProtocolError(f"unterminated IPv6 reference in {what}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise RemoteProtocolError(f"junk after IPv6 reference in {what}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_s = text.partition(":")
        port_text = port_text_s if colon else None
    _check_host(host, what)
    port: int | None = None
    if port_text is not None:
        if not grammar.DIGITS_RE.match(port_text) or not 0 < int(port_text) < 65536:
            raise RemoteProtocolError(f"bad port {port_text!r} in {what}")
        port = int(port_text)
    return host, port


@dataclass(frozen=True, slots=True)
class Uri:
    """A URI.  SIP and SIPS URIs are decomposed; other schemes keep ``opaque``."""

    scheme: str
    host: str = ""
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: str | None = None
    #: Everything after ``scheme:`` for non-SIP schemes (``tel:``, ``urn:``...).
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        """True for ``sip:`` and ``sips:`` URIs."""
        return self.opaque is None

    def param(self, name: str) -> str | None:
        """A URI parameter's value, '' for a flag, None when absent."""
        return get_param(self.params, name)

    @property
    def hostport(self) -> str:
        """``host`` or ``host:port``."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.hostport)
        out.append(format_params(self.params))
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)


@functools.lru_cache(maxsize=8192)  # pure and frozen: a header is parsed once, not per access
def parse_uri(text: str) -> Uri:
    """Parse a URI; SIP/SIPS per RFC 3261 §19.1.1, others kept opaque."""
    m = grammar.SCHEME_RE.match(text)
    if not m:
        raise RemoteProtocolError(f"URI without a scheme: {text!r}")
    scheme = m.group(1)
    rest = text[m.end() :]
    if any(c in rest for c in " \t\r\n"):
        raise RemoteProtocolError(f"white space inside URI {text!r}")
    if scheme.lower() not in SIP_SCHEMES:
        if not rest:
            raise RemoteProtocolError(f"empty {scheme}: URI")
        return Uri(scheme=scheme, opaque=rest)
    user = password = None
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
        if not grammar.USER_RE.match(user):
            raise RemoteProtocolError(f"bad user part in URI {text!r}")
        if password is not None and not grammar.PASSWORD_RE.match(password):
            raise RemoteProtocolError(f"bad password in URI {text!r}")
    headers = None
    q = rest.find("?")
    if q >= 0:
        rest, headers = rest[:q], rest[q + 1 :]
    hostport, _, params_text = rest.partition(";")
    host, port = split_hostport(hostport, f"URI {text!r}")
    params = parse_params(params_text, f"URI {text!r}")
    return Uri(scheme, host, user, password, port, params, headers)


def _unquote(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name, URI, header params."""

    uri: Uri | str
    display: str | None = None
    params: Params = ()
    #: True when the URI was written in angle brackets (always on output if params exist).
    bracketed: bool = field(default=True, compare=False)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 §19.3)."""
        return get_param(self.params, "tag")

    def param(self, name: str) -> str | None:
        """A header parameter's value, '' for a flag, None when absent."""
        return get_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        """A copy carrying ``;tag=<tag>`` (replacing any existing tag)."""
        params = tuple(p for p in self.params if p[0].lower() != "tag") + (("tag", tag),)
        return NameAddr(self.uri, self.display, params, self.bracketed)

    def __str__(self) -> str:
        if self.uri == "*":
            return "*"
        disp = ""
        if self.display is not None:
            disp = _quote(self.display) + " "
        return f"{disp}<{self.uri}>{format_params(self.params)}"


@functools.lru_cache(maxsize=8192)  # pure and frozen: a header is parsed once, not per access
def parse_name_addr(text: str) -> NameAddr:
    """Parse ``name-addr / addr-spec`` with header params (RFC 3261 §20.10)."""
    text = text.strip()
    if text == "*":
        return NameAddr("*", bracketed=False)
    display: str | None = None
    if text.startswith('"'):
        m = grammar.QUOTED_STRING_RE.match(text)
        if not m:
            raise RemoteProtocolError(f"unterminated display name in {text!r}")
        display = _unquote(m.group(1))
        text = text[m.end() :].lstrip()
        if not text.startswith("<"):
            raise RemoteProtocolError(f"display name without <URI> in {text!r}")
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise RemoteProtocolError(f"unterminated <URI> in {text!r}")
        if display is None:
            name = text[:lt].strip()
            display = name or None
        uri_text = text[lt + 1 : gt]
        rest = text[gt + 1 :].strip()
        if rest and not rest.startswith(";"):
            raise RemoteProtocolError(f"junk after <URI> in {text!r}")
        params = parse_params(rest[1:], "header parameters") if rest else ()
        return NameAddr(parse_uri(uri_text), display, params, True)
    # addr-spec: parameters after the URI belong to the header (§20.10).
    uri_text, _, params_text = text.partition(";")
    if "?" in uri_text or "," in uri_text:
        raise RemoteProtocolError(f"addr-spec with reserved characters must use <>: {text!r}")
    return NameAddr(parse_uri(uri_text.strip()), None, parse_params(params_text, "header parameters"), False)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter."""
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 §18.2.1)."""
        return get_param(self.params, "received")

    @property
    def rport(self) -> str | None:
        """The ``rport`` parameter (RFC 3581): '' when requested, digits once filled."""
        return get_param(self.params, "rport")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` as written by the sender."""
        return (self.host.lower(), self.port)

    def with_params(self, params: Params) -> Via:
        """A copy with *params* instead of the current ones."""
        return Via(self.transport, self.host, self.port, params, self.protocol)

    def __str__(self) -> str:
        hostport = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hostport}{format_params(self.params)}"


@functools.lru_cache(maxsize=8192)  # pure and frozen: a header is parsed once, not per access
def parse_via(text: str) -> Via:
    """Parse one Via value."""
    m = grammar.SENT_PROTOCOL_RE.match(text.strip())
    if not m:
        raise RemoteProtocolError(f"bad Via {text!r}")
    name, version, transport, rest = m.groups()
    sent_by, _, params_text = rest.partition(";")
    host, port = split_hostport(sent_by.strip().replace(" ", ""), f"Via {text!r}")
    params = parse_params(params_text, f"Via {text!r}")
    return Via(transport.upper(), host, port, params, f"{name}/{version}")
