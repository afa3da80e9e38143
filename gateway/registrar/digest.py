"""HTTP Digest authentication for SIP (RFC 3261 §22.4, RFC 7616, RFC 8760), sans-IO.

Rules of this module:

- Pure: no sockets, no clocks.  Every time-dependent call takes ``now`` (float seconds, one clock
  for issuing and checking; the registrar uses wall-clock seconds so nonces survive a restart).
- Algorithms ``SHA-256`` and ``MD5`` and their ``-sess`` variants; ``qop=auth`` only.  A response
  without ``qop`` (RFC 2069 compatibility, still common in SIP devices) is accepted when
  allowed, and then its nonce is single-use.
- Challenges offer ``SHA-256`` first and ``MD5`` second, one ``WWW-Authenticate`` value each
  (RFC 8760: UAS adds one header per supported algorithm, most preferred first).
- Nonces are stateless: ``base64url(issued || salt || HMAC-SHA256(secret, realm || issued || salt)[:16])``.
  A nonce older than the lifetime, or one we cannot authenticate (another secret, a restart with a
  new secret), is *stale*: correct credentials over it get a fresh challenge with ``stale=true``.
- Replay protection keeps the last nonce-count per nonce in a bounded LRU (:class:`NonceCounter`).
  A nonce-count is only recorded after the response verified, so garbage cannot burn a nonce, and
  only with ``qop``: without it the response does not cover ``nc``, so an ``nc`` sent is ignored.
- Credentials with an empty ``nonce`` or ``response`` (the IMS-style initial REGISTER that names
  the user before any challenge) answer nothing: :meth:`DigestAuthenticator.select` skips them,
  so they get a challenge, not a 403.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from .errors import DigestParseError
from .nonces import NonceCodec, NonceCounter, NonceState

__all__ = [
    "Algorithm",
    "AuthResult",
    "DigestAuthenticator",
    "DigestCredentials",
    "build_challenge",
    "compute_response",
    "ha1",
    "parse_authorization",
]


class Algorithm(enum.Enum):
    """Digest algorithms (RFC 7616 §6.1 registry)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"

    @property
    def hash_name(self) -> str:
        """The :mod:`hashlib` name of the underlying hash: ``md5`` or ``sha256``."""
        return "md5" if self in (Algorithm.MD5, Algorithm.MD5_SESS) else "sha256"

    @property
    def base(self) -> Algorithm:
        """The non-session algorithm with the same hash (whose HA1 is the stored one)."""
        return Algorithm.MD5 if self.hash_name == "md5" else Algorithm.SHA_256

    @property
    def is_session(self) -> bool:
        """True for the ``-sess`` variants (HA1 is re-keyed per nonce and cnonce)."""
        return self.value.endswith("-sess")

    @classmethod
    def parse(cls, token: str) -> Algorithm:
        """Parse an ``algorithm`` parameter value, case-insensitively (RFC 7616 §3.3)."""
        for member in cls:
            if member.value.lower() == token.lower():
                return member
        raise DigestParseError(f"Authorization: unsupported algorithm {token!r}")


def _h(algorithm: Algorithm, text: str) -> str:
    """``H(data)``: lower-case hex digest of the UTF-8 bytes (RFC 7616 §3.4.1)."""
    return hashlib.new(algorithm.hash_name, text.encode("utf-8", "surrogateescape")).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: Algorithm = Algorithm.SHA_256) -> str:
    """The stored secret ``H(username ":" realm ":" password)`` (RFC 7616 §3.4.2).

    The ``-sess`` variants store the same value as their base algorithm; the session key is
    derived from it at verification time.
    """
    return _h(algorithm, f"{username}:{realm}:{password}")


# --------------------------------------------------------------------------------------------
# Parsing the Authorization header value (RFC 7616 §3.4, RFC 7235 §2.1 auth-param list).
# --------------------------------------------------------------------------------------------

_WS = " \t\r\n"
_HEX = frozenset("0123456789abcdefABCDEF")


# One regex match per token, run of whitespace or quoted-string instead of a Python loop per character.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]*")
_WS_RE = re.compile(r"[ \t\r\n]*")
_QUOTED_RE = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


def _token_end(text: str, pos: int) -> int:
    return _TOKEN_RE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string


def _skip_ws(text: str, pos: int) -> int:
    return _WS_RE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string


def _quoted_string(text: str, pos: int) -> tuple[str, int]:
    """Read a quoted-string starting at the opening quote; return (unescaped value, next pos)."""
    match = _QUOTED_RE.match(text, pos)
    if match is not None:
        value = match.group(1)
        return (_ESCAPE_RE.sub(r"\1", value) if "\\" in value else value), match.end()
    # Unterminated: find where, for the message.
    pos += 1
    while pos < len(text):
        if text[pos] == "\\":
            if pos + 1 >= len(text):
                break
            pos += 2
            continue
        pos += 1
    raise DigestParseError(f"Authorization: unterminated quoted-string at offset {pos}")


_PARAM_RE = re.compile(
    r"[ \t\r\n]*(?:,[ \t\r\n]*)*"  # whitespace and empty list elements (RFC 7230 §7)
    r"([!#$%&'*+\-.^_`|~0-9a-zA-Z]+)[ \t\r\n]*=[ \t\r\n]*"  # name =
    r'(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([!#$%&\'*+\-.^_`|~0-9a-zA-Z]+))'  # quoted-string or token
    r"[ \t\r\n]*",
    re.DOTALL,
)
_LIST_END_RE = re.compile(r"[ \t\r\n,]*")


def _parse_params(text: str, pos: int) -> dict[str, tuple[str, bool]]:
    """Parse ``#auth-param`` from ``pos``: name -> (value, was_quoted); names lower-cased.

    One regex match per parameter; anything it does not accept is parsed again by
    :func:`_parse_params_exact`, which names the problem.
    """
    params: dict[str, tuple[str, bool]] = {}
    start, end = pos, len(text)
    while True:
        match = _PARAM_RE.match(text, pos)
        if match is None:
            if _LIST_END_RE.fullmatch(text, pos):
                return params
            return _parse_params_exact(text, start)
        name, quoted, token = match.groups()
        name = name.lower()
        if name in params:
            return _parse_params_exact(text, start)
        if quoted is None:
            params[name] = (token, False)
        else:
            params[name] = ((_ESCAPE_RE.sub(r"\1", quoted) if "\\" in quoted else quoted), True)
        pos = match.end()
        if pos < end and text[pos] != ",":
            return _parse_params_exact(text, start)


def _parse_params_exact(text: str, pos: int) -> dict[str, tuple[str, bool]]:
    """:func:`_parse_params` a character at a time, raising DigestParseError at the first problem."""
    params: dict[str, tuple[str, bool]] = {}
    while True:
        pos = _skip_ws(text, pos)
        while pos < len(text) and text[pos] == ",":  # empty list elements are allowed (RFC 7230 §7)
            pos = _skip_ws(text, pos + 1)
        if pos >= len(text):
            return params
        end = _token_end(text, pos)
        if end == pos:
            raise DigestParseError(f"Authorization: expected a parameter name at offset {pos}")
        name = text[pos:end].lower()
        pos = _skip_ws(text, end)
        if pos >= len(text) or text[pos] != "=":
            raise DigestParseError(f"Authorization: parameter {name!r} has no '=' value")
        pos = _skip_ws(text, pos + 1)
        if pos < len(text) and text[pos] == '"':
            value, pos = _quoted_string(text, pos)
            quoted = True
        else:
            end = _token_end(text, pos)
            if end == pos:
                raise DigestParseError(f"Authorization: parameter {name!r} has an empty value")
            value, pos, quoted = text[pos:end], end, False
        if name in params:
            raise DigestParseError(f"Authorization: duplicate parameter {name!r}")
        params[name] = (value, quoted)
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] != ",":
            raise DigestParseError(f"Authorization: expected ',' after parameter {name!r} at offset {pos}")


def _decode_ext_value(value: str) -> str:
    """Decode an RFC 8187 ext-value (``UTF-8''Mufasa%20...``) used by ``username*``."""
    charset, sep, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep or not sep2 or charset.lower() not in ("utf-8", "iso-8859-1"):
        raise DigestParseError("Authorization: malformed username* ext-value")
    try:
        return unquote(encoded, encoding=charset.lower(), errors="strict")
    except UnicodeDecodeError as exc:
        raise DigestParseError(f"Authorization: username* is not valid {charset}") from exc


@dataclass(frozen=True)
class DigestCredentials:
    """A parsed ``Authorization: Digest ...`` value (RFC 7616 §3.4)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: Algorithm = Algorithm.MD5
    qop: str | None = None
    nc: int | None = None
    """Nonce-count as an integer; ``nc_text`` keeps the 8 hex digits hashed into the response."""
    nc_text: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False
    params: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Every parameter as received (lower-case names, unquoted values), for diagnostics."""


_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def parse_authorization(value: str) -> DigestCredentials:
    """Parse one ``Authorization`` (or ``Proxy-Authorization``) header value.

    Raises :class:`DigestParseError` (status 400) with a message naming the problem.
    """
    pos = _skip_ws(value, 0)
    end = _token_end(value, pos)
    scheme = value[pos:end]
    if not scheme:
        raise DigestParseError("Authorization: missing auth-scheme")
    if scheme.lower() != "digest":
        raise DigestParseError(f"Authorization: scheme {scheme!r} is not Digest")
    if end < len(value) and value[end] not in _WS:
        raise DigestParseError("Authorization: expected whitespace after the auth-scheme")
    raw = _parse_params(value, end)
    params = {name: v for name, (v, _quoted) in raw.items()}

    if "username*" in params:
        if "username" in params:
            raise DigestParseError("Authorization: both username and username* present")
        params["username"] = _decode_ext_value(params["username*"])
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise DigestParseError(f"Authorization: missing {', '.join(missing)}")

    algorithm = Algorithm.parse(params["algorithm"]) if "algorithm" in params else Algorithm.MD5
    qop = params.get("qop")
    nc: int | None = None
    nc_text = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        qop = qop.lower()
        if nc_text is None or cnonce is None:
            raise DigestParseError("Authorization: qop given without nc and cnonce")
    if nc_text is not None:
        if len(nc_text) != 8 or not set(nc_text) <= _HEX:
            raise DigestParseError(f"Authorization: nc {nc_text!r} is not 8 hex digits")
        nc = int(nc_text, 16)
    if algorithm.is_session and cnonce is None:
        raise DigestParseError(f"Authorization: {algorithm.value} requires cnonce")
    response = params["response"]
    if not set(response) <= _HEX:
        raise DigestParseError("Authorization: response is not hexadecimal")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response.lower(),
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        nc_text=nc_text,
        cnonce=cnonce,
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "false").lower() == "true",
        params=params,
    )


def compute_response(
    credentials: DigestCredentials, ha1_hex: str, method: str, body: bytes | None = None
) -> str:
    """The ``response`` value the client should have sent, given the stored HA1 (RFC 7616 §3.4.1).

    ``qop=auth`` and no qop (RFC 2069) are supported; ``qop=auth-int`` needs ``body``.
    """
    algorithm = credentials.algorithm
    key = ha1_hex
    if algorithm.is_session:
        key = _h(algorithm, f"{ha1_hex}:{credentials.nonce}:{credentials.cnonce}")
    if credentials.qop == "auth-int":
        if body is None:
            raise DigestParseError("Authorization: qop=auth-int is not supported here")
        body_hash = hashlib.new(algorithm.hash_name, body).hexdigest()
        ha2 = _h(algorithm, f"{method}:{credentials.uri}:{body_hash}")
    else:
        ha2 = _h(algorithm, f"{method}:{credentials.uri}")
    if credentials.qop is None:
        return _h(algorithm, f"{key}:{credentials.nonce}:{ha2}")
    return _h(
        algorithm,
        f"{key}:{credentials.nonce}:{credentials.nc_text}:{credentials.cnonce}:{credentials.qop}:{ha2}",
    )


# --------------------------------------------------------------------------------------------
# Challenges (RFC 7616 §3.3, RFC 8760).
# --------------------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_challenge(
    realm: str,
    nonce: str,
    algorithm: Algorithm = Algorithm.SHA_256,
    *,
    stale: bool = False,
    opaque: str | None = None,
    qop: str | None = "auth",
) -> str:
    """One ``WWW-Authenticate`` value: ``Digest realm="..", nonce="..", algorithm=.., qop="auth"``."""
    parts = [f"realm={_quote(realm)}", f"nonce={_quote(nonce)}", f"algorithm={algorithm.value}"]
    if qop is not None:
        parts.append(f"qop={_quote(qop)}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    if stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# The authenticator: challenges plus verification, with nonce state.
# --------------------------------------------------------------------------------------------


class AuthResult(enum.Enum):
    """Outcome of :meth:`DigestAuthenticator.verify`."""

    OK = "ok"
    BAD_RESPONSE = "bad_response"
    """The response does not match the stored HA1: wrong password (answer 403)."""
    STALE = "stale"
    """Correct response over an expired, foreign or forgotten nonce (401 with ``stale=true``)."""
    REPLAY = "replay"
    """Correct response, but the nonce-count was already used (401, fresh nonce)."""
    UNSUPPORTED = "unsupported"
    """An algorithm or qop we did not offer, or a ``userhash`` we do not support."""
    URI_MISMATCH = "uri_mismatch"
    """The ``uri`` parameter names another resource than the Request-URI (RFC 7616 §3.4.6)."""


def _uri_key(uri: str) -> str:
    """Comparable form of a digest-uri: without <>, URI parameters and headers; host lower-cased."""
    uri = uri.strip().strip("<>")
    uri = uri.split("?", 1)[0].split(";", 1)[0]
    scheme, _, rest = uri.partition(":")
    user, at, host = rest.rpartition("@")
    return f"{scheme.lower()}:{user}{at}{host.lower()}"


def _same_resource(digest_uri: str, request_uri: str) -> bool:
    """RFC 7616 §3.4.6: the digest-uri must name the Request-URI's resource.

    Equal after :func:`_uri_key`, or (as SIPp and some intercoms write it) the same host and port
    without the user part: the response still binds realm, nonce, method and password.
    """
    got, want = _uri_key(digest_uri), _uri_key(request_uri)
    if got == want:
        return True
    scheme, _, rest = want.partition(":")
    return "@" not in got and got == f"{scheme}:{rest.rpartition('@')[2]}"


class DigestAuthenticator:
    """Challenges and verifies Digest credentials for one realm; pure, driven by ``now``.

    Holds the only mutable state of digest authentication: the :class:`NonceCounter`.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        *,
        algorithms: Iterable[Algorithm] = (Algorithm.SHA_256, Algorithm.MD5),
        nonce_lifetime: float = 300.0,
        replay_capacity: int = 65536,
        allow_rfc2069: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.realm = realm
        self.algorithms = tuple(algorithms)
        if not self.algorithms:
            raise ValueError("at least one algorithm must be offered")
        self.allow_rfc2069 = allow_rfc2069
        self.nonces = NonceCodec(realm, secret, nonce_lifetime, random_bytes)
        self.counter = NonceCounter(replay_capacity, nonce_lifetime)

    def challenge(self, now: float, *, stale: bool = False) -> tuple[str, ...]:
        """``WWW-Authenticate`` values, one per offered algorithm, sharing one fresh nonce."""
        nonce = self.nonces.issue(now)
        return tuple(build_challenge(self.realm, nonce, alg, stale=stale) for alg in self.algorithms)

    def select(self, authorization_values: Iterable[str]) -> DigestCredentials | None:
        """The credentials for our realm among ``Authorization`` values (RFC 3261 §22.4).

        Values for other realms or schemes, and empty ones (no nonce or no response yet), are
        skipped; a malformed Digest value for our realm
        (or one that cannot be attributed to a realm) raises :class:`DigestParseError`.
        """
        for value in authorization_values:
            scheme = value.split(None, 1)
            if scheme and scheme[0].lower() != "digest":
                continue
            credentials = parse_authorization(value)
            if credentials.realm == self.realm and credentials.nonce and credentials.response:
                return credentials
        return None

    def verify(
        self,
        credentials: DigestCredentials,
        ha1_hex: str | None,
        *,
        method: str,
        request_uri: str,
        now: float,
    ) -> AuthResult:
        """Check ``credentials`` against the stored HA1 of their algorithm's hash.

        Order: unsupported parameters, then the response (so a wrong password is reported as
        such even over an old nonce), then nonce freshness, then the nonce-count.
        """
        if credentials.algorithm.base not in {a.base for a in self.algorithms}:
            return AuthResult.UNSUPPORTED
        if credentials.qop not in ("auth", None) or credentials.userhash:
            return AuthResult.UNSUPPORTED
        if credentials.qop is None and not self.allow_rfc2069:
            return AuthResult.UNSUPPORTED
        if not _same_resource(credentials.uri, request_uri):
            return AuthResult.URI_MISMATCH
        if ha1_hex is None:
            return AuthResult.BAD_RESPONSE
        expected = compute_response(credentials, ha1_hex.lower(), method)
        if not hmac.compare_digest(expected, credentials.response):
            return AuthResult.BAD_RESPONSE
        if self.nonces.check(credentials.nonce, now) is not NonceState.VALID:
            return AuthResult.STALE
        issued = self.nonces.issued_at(credentials.nonce)
        assert issued is not None  # VALID implies a verified signature
        nc = credentials.nc if credentials.qop is not None else None  # unauthenticated without qop
        fresh = self.counter.accept(credentials.nonce, issued, nc)
        if fresh is None:
            return AuthResult.STALE
        if not fresh:
            return AuthResult.REPLAY
        self.counter.record(credentials.nonce, issued, nc, now)
        return AuthResult.OK
