"""RFC 3261 §25 grammar pieces as compiled regular expressions.

Only the productions the parser needs are here, written so that each regex
matches exactly the ABNF it names (h11 ``_abnf.py`` style).  Everything is
applied to ``str`` decoded with ``surrogateescape`` so that arbitrary bytes
survive a parse/serialise round trip.
"""

from __future__ import annotations

import re

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
TOKEN_RE = re.compile(TOKEN)
FULL_TOKEN_RE = re.compile(TOKEN + r"\Z")

# Method = INVITEm / ACKm / ... / extension-method (a token)
METHOD_RE = FULL_TOKEN_RE

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT  (case-insensitive "SIP")
SIP_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/(\d+)\.(\d+)\Z")

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF; Status-Code = 3DIGIT
STATUS_LINE_RE = re.compile(r"([Ss][Ii][Pp]/\d+\.\d+) (\d{3}) (.*)\Z", re.DOTALL)

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
REQUEST_LINE_RE = re.compile(r"(" + TOKEN + r") (\S+) (\S+)\Z")

# header-name = token; HCOLON = *( SP / HTAB ) ":" SWS
HEADER_RE = re.compile(r"(" + TOKEN + r")[ \t]*:[ \t\r\n]*(.*?)[ \t]*\Z", re.DOTALL)

# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")

# hostname / IPv4address / IPv6reference (RFC 3261 §25.1, loosely for IPv6)
HOSTNAME_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z")
IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z")
IPV6_REF_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")

# user (RFC 3261 §25.1): 1*( unreserved / escaped / user-unreserved )
USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+\Z")
# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*\Z")

# Via sent-protocol: protocol-name LWS? "/" LWS? protocol-version LWS? "/" LWS? transport
SENT_PROTOCOL_RE = re.compile(
    r"(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s*/\s*(" + TOKEN + r")\s+(.*)\Z", re.DOTALL
)

# Digits only, for Content-Length, CSeq numbers, Expires, Max-Forwards, ports.  ASCII DIGIT (§25.1):
# ``\d`` would also take other scripts' digits, which int() then accepts.  At most 32 of them, far more
# than any SIP number needs (2**32 - 1 has 10): int() raises ValueError, not RemoteProtocolError, on a
# string of more than 4300 digits, and a peer's number must never reach it unbounded.
DIGITS_RE = re.compile(r"[0-9]{1,32}\Z")

# Linear white space inside a header value (after unfolding).
LWS_RE = re.compile(r"[ \t]*\r?\n[ \t]+")

# A quoted-string with backslash escapes (quoted-pair).
QUOTED_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
