"""Digest authentication: RFC 7616 vectors, header parsing, nonces, replay; time advanced by hand."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.registrar import (
    Algorithm,
    AuthResult,
    DigestAuthenticator,
    DigestCredentials,
    DigestParseError,
    NonceCodec,
    NonceCounter,
    NonceState,
    RegistrarError,
    build_challenge,
    compute_response,
    ha1,
    parse_authorization,
)

# RFC 7616 §3.9.1: user Mufasa, password "Circle of Life", GET /dir/index.html.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def rfc7616_authorization(algorithm: str) -> str:
    """The Authorization header of RFC 7616 §3.9.1, as the RFC prints it (folded over lines)."""
    return (
        'Digest username="Mufasa",\r\n'
        '    realm="http-auth@example.org",\r\n'
        '    uri="/dir/index.html",\r\n'
        f"    algorithm={algorithm},\r\n"
        f'    nonce="{RFC7616_NONCE}",\r\n'
        "    nc=00000001,\r\n"
        f'    cnonce="{RFC7616_CNONCE}",\r\n'
        "    qop=auth,\r\n"
        f'    response="{RFC7616_RESPONSES[algorithm]}",\r\n'
        f'    opaque="{RFC7616_OPAQUE}"'
    )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_rfc7616_example_parses_and_verifies(algorithm: str) -> None:
    credentials = parse_authorization(rfc7616_authorization(algorithm))
    assert credentials.username == "Mufasa"
    assert credentials.realm == "http-auth@example.org"
    assert credentials.uri == "/dir/index.html"
    assert credentials.algorithm is Algorithm.parse(algorithm)
    assert (credentials.nc, credentials.nc_text, credentials.qop) == (1, "00000001", "auth")
    assert credentials.cnonce == RFC7616_CNONCE
    assert credentials.opaque == RFC7616_OPAQUE
    stored = ha1("Mufasa", "http-auth@example.org", "Circle of Life", credentials.algorithm)
    assert compute_response(credentials, stored, "GET") == RFC7616_RESPONSES[algorithm]
    assert compute_response(credentials, stored, "POST") != RFC7616_RESPONSES[algorithm]


def test_rfc2617_example_md5() -> None:
    """RFC 2617 §3.5 (the RFC 3261-era vector): MD5, qop=auth, password "Circle Of Life"."""
    credentials = parse_authorization(
        'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
        ' uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b",'
        ' response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    stored = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", Algorithm.MD5)
    assert credentials.algorithm is Algorithm.MD5  # absent algorithm means MD5
    assert compute_response(credentials, stored, "GET") == "6629fae49393a05397450978507c4ef1"


def test_ha1_is_the_hash_of_user_realm_password() -> None:
    assert ha1("u", "r", "p", Algorithm.MD5) == hashlib.md5(b"u:r:p").hexdigest()
    assert ha1("u", "r", "p") == hashlib.sha256(b"u:r:p").hexdigest()
    assert ha1("u", "r", "p", Algorithm.SHA_256_SESS) == ha1("u", "r", "p", Algorithm.SHA_256)


def test_session_algorithm_rekeys_ha1() -> None:
    value = (
        'Digest username="u", realm="r", nonce="n", uri="sip:r", algorithm=SHA-256-sess,'
        ' qop=auth, nc=00000001, cnonce="c", response="00"'
    )
    credentials = parse_authorization(value)
    stored = ha1("u", "r", "p")
    h = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    key = h(f"{stored}:n:c")
    expected = h(f"{key}:n:00000001:c:auth:{h('REGISTER:sip:r')}")
    assert compute_response(credentials, stored, "REGISTER") == expected


def test_rfc2069_response_without_qop() -> None:
    credentials = parse_authorization('Digest username="u", realm="r", nonce="n", uri="sip:r", response="ab"')
    stored = ha1("u", "r", "p", Algorithm.MD5)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert compute_response(credentials, stored, "REGISTER") == h(f"{stored}:n:{h('REGISTER:sip:r')}")


# -- parsing ---------------------------------------------------------------------------------


def test_parse_quoted_strings_with_escapes_and_commas() -> None:
    value = (
        'digest USERNAME="a\\"b", realm="x, y", nonce="n=1,2", uri="sip:r;transport=udp",'
        ' response="AB12",  algorithm=md5 ,,'
    )
    credentials = parse_authorization(value)
    assert credentials.username == 'a"b'
    assert credentials.realm == "x, y"
    assert credentials.nonce == "n=1,2"
    assert credentials.uri == "sip:r;transport=udp"
    assert credentials.response == "ab12"
    assert credentials.algorithm is Algorithm.MD5


def test_parse_username_star_ext_value() -> None:
    credentials = parse_authorization(
        'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n%20Doe, realm="r", nonce="n", uri="/", response="00"'
    )
    assert credentials.username == "Jäsøn Doe"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "missing auth-scheme"),
        ('Digest username*=UTF-8\'\'%ff, realm="r", nonce="n", uri="/", response="0"', "not valid UTF-8"),
        ('Digest username*=koi8-r\'\'x, realm="r", nonce="n", uri="/", response="0"', "ext-value"),
        ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", "not Digest"),
        ('Digest username="u", realm="r', "unterminated quoted-string"),
        ('Digest username="u" realm="r"', "expected ','"),
        ("Digest username", "has no '='"),
        ("Digest username=", "empty value"),
        ("Digest =x", "expected a parameter name"),
        ('Digest username="u", username="v"', "duplicate parameter 'username'"),
        ('Digest username="u", realm="r", nonce="n", uri="/"', "missing response"),
        ('Digest realm="r"', "missing username, nonce, uri, response"),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="0", qop=auth',
            "without nc and cnonce",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="0", qop=auth, nc=1, cnonce="c"',
            "8 hex",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="0", algorithm=SHA-512',
            "unsupported alg",
        ),
        ('Digest username="u", realm="r", nonce="n", uri="/", response="zz"', "not hexadecimal"),
        (
            'Digest username="u", realm="r", nonce="n", uri="/", response="0", algorithm=MD5-sess',
            "requires cnonce",
        ),
        ('Digest username="u", username*=UTF-8\'\'u, realm="r", nonce="n", uri="/", response="0"', "both"),
    ],
)
def test_parse_errors_are_clear(value: str, message: str) -> None:
    with pytest.raises(DigestParseError, match=message) as info:
        parse_authorization(value)
    assert isinstance(info.value, RegistrarError)
    assert info.value.status == 400


# -- challenges ------------------------------------------------------------------------------


def test_challenge_offers_sha256_then_md5_with_one_nonce() -> None:
    auth = DigestAuthenticator("gw.example", b"k" * 32, random_bytes=lambda n: b"\x01" * n)
    first, second = auth.challenge(now=1000.0)
    assert first.startswith('Digest realm="gw.example", nonce="')
    assert first.endswith('", algorithm=SHA-256, qop="auth"')
    assert second.endswith('", algorithm=MD5, qop="auth"')
    assert first.split('nonce="')[1].split('"')[0] == second.split('nonce="')[1].split('"')[0]
    stale = auth.challenge(now=1000.0, stale=True)
    assert all(v.endswith(", stale=true") for v in stale)


def test_build_challenge_escapes_realm() -> None:
    assert build_challenge('a"b\\c', "n", Algorithm.MD5, qop=None, opaque="o") == (
        'Digest realm="a\\"b\\\\c", nonce="n", algorithm=MD5, opaque="o"'
    )


# -- nonces ----------------------------------------------------------------------------------


def test_nonce_codec_round_trip_expiry_and_forgery() -> None:
    codec = NonceCodec("r", b"secret", lifetime=300.0)
    nonce = codec.issue(1_000.0)
    assert "," not in nonce and '"' not in nonce
    assert codec.issued_at(nonce) == 1_000.0
    assert codec.check(nonce, 1_000.0) is NonceState.VALID
    assert codec.check(nonce, 1_300.0) is NonceState.VALID
    assert codec.check(nonce, 1_300.5) is NonceState.EXPIRED
    assert codec.check(nonce, 999.0) is NonceState.EXPIRED  # issued "in the future": clock stepped back
    assert NonceCodec("r", b"other").check(nonce, 1_000.0) is NonceState.FOREIGN
    assert NonceCodec("other-realm", b"secret").check(nonce, 1_000.0) is NonceState.FOREIGN
    assert codec.check("not-a-nonce!", 1_000.0) is NonceState.FOREIGN
    assert (
        codec.check(nonce[:-2] + ("A" if nonce[-2] != "A" else "B") + nonce[-1], 1_000.0)
        is NonceState.FOREIGN
    )


def test_nonces_are_unique() -> None:
    codec = NonceCodec("r", b"secret")
    assert len({codec.issue(5.0) for _ in range(100)}) == 100


def test_nonce_counter_rejects_lower_or_equal_counts() -> None:
    counter = NonceCounter(capacity=10, lifetime=300.0)
    assert counter.accept("n", 0.0, 1) is True
    counter.record("n", 0.0, 1, now=1.0)
    assert counter.accept("n", 0.0, 1) is False
    assert counter.accept("n", 0.0, 2) is True
    counter.record("n", 0.0, 5, now=2.0)
    assert counter.accept("n", 0.0, 4) is False
    assert counter.accept("n", 0.0, 6) is True
    counter.record("m", 0.0, None, now=2.0)  # no qop: single use
    assert counter.accept("m", 0.0, None) is False
    assert counter.accept("m", 0.0, 7) is False


def test_nonce_counter_is_bounded_and_never_trusts_a_forgotten_nonce() -> None:
    counter = NonceCounter(capacity=3, lifetime=300.0)
    for i in range(3):
        counter.record(f"n{i}", float(i), 1, now=10.0)
    counter.record("n3", 3.0, 1, now=10.0)  # evicts n0 (least recently used)
    assert len(counter) == 3
    assert counter.accept("n0", 0.0, 2) is None  # forgotten: refuse, never accept blindly
    assert counter.accept("n9", -1.0, 1) is None  # unknown, issued before an evicted one: refuse too
    assert counter.accept("n9", 0.5, 1) is True  # issued after anything evicted: never recorded
    assert counter.accept("n1", 1.0, 2) is True


def test_nonce_counter_drops_expired_entries_before_evicting_live_ones() -> None:
    counter = NonceCounter(capacity=2, lifetime=300.0)
    counter.record("old", 0.0, 1, now=0.0)
    counter.record("live", 400.0, 1, now=400.0)
    counter.record("new", 401.0, 1, now=401.0)  # over capacity: "old" is past its lifetime
    assert len(counter) == 2
    assert counter.accept("x", 350.0, 1) is True  # no live nonce was forgotten, mark not raised


# -- the authenticator -----------------------------------------------------------------------

REALM = "gw.example"
URI = "sip:gw.example"


class Client:
    """A minimal digest client answering our challenges, as a UA would (RFC 7616 §3.4)."""

    def __init__(self, user: str = "hp-outram-street", password: str = "demo-hp-outram-street") -> None:
        self.user, self.password = user, password
        self.cnonces = (f"c{i}" for i in itertools.count())

    def answer(
        self,
        challenge: str,
        nc: int = 1,
        *,
        password: str | None = None,
        qop: bool = True,
        uri: str = URI,
        method: str = "REGISTER",
    ) -> str:
        nonce = challenge.split('nonce="')[1].split('"')[0]
        algorithm = Algorithm.parse(challenge.split("algorithm=")[1].split(",")[0])
        credentials = DigestCredentials(
            username=self.user,
            realm=REALM,
            nonce=nonce,
            uri=uri,
            response="",
            algorithm=algorithm,
            qop="auth" if qop else None,
            nc=nc if qop else None,
            nc_text=f"{nc:08x}" if qop else None,
            cnonce=next(self.cnonces) if qop else None,
        )
        key = ha1(self.user, REALM, password or self.password, algorithm)
        response = compute_response(credentials, key, method)
        value = (
            f'Digest username="{self.user}", realm="{REALM}", nonce="{nonce}", uri="{uri}",'
            f' response="{response}", algorithm={algorithm.value}'
        )
        if qop:
            value += f', qop=auth, nc={credentials.nc_text}, cnonce="{credentials.cnonce}"'
        return value


def stored(alg: Algorithm, user: str = "hp-outram-street", password: str = "demo-hp-outram-street") -> str:
    return ha1(user, REALM, password, alg)


def verify(auth: DigestAuthenticator, value: str, now: float, uri: str = URI) -> AuthResult:
    credentials = parse_authorization(value)
    return auth.verify(
        credentials, stored(credentials.algorithm), method="REGISTER", request_uri=uri, now=now
    )


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_verify_ok_then_replay_then_next_count(index: int) -> None:
    auth = DigestAuthenticator(REALM, b"secret", nonce_lifetime=300.0)
    challenge = auth.challenge(now=100.0)[index]
    client = Client()
    first = client.answer(challenge, nc=1)
    assert verify(auth, first, now=101.0) is AuthResult.OK
    assert verify(auth, first, now=102.0) is AuthResult.REPLAY  # same nc again
    assert verify(auth, client.answer(challenge, nc=1), now=102.0) is AuthResult.REPLAY  # new cnonce, same nc
    assert verify(auth, client.answer(challenge, nc=2), now=103.0) is AuthResult.OK
    assert verify(auth, client.answer(challenge, nc=2), now=103.0) is AuthResult.REPLAY


def test_wrong_password_is_bad_response_and_does_not_burn_the_count() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    challenge = auth.challenge(now=0.0)[0]
    client = Client()
    assert verify(auth, client.answer(challenge, nc=5, password="guess"), now=1.0) is AuthResult.BAD_RESPONSE
    assert verify(auth, client.answer(challenge, nc=1), now=2.0) is AuthResult.OK


def test_expired_nonce_is_stale_only_when_the_response_is_right() -> None:
    auth = DigestAuthenticator(REALM, b"secret", nonce_lifetime=30.0)
    challenge = auth.challenge(now=0.0)[0]
    client = Client()
    assert verify(auth, client.answer(challenge, nc=1), now=30.0) is AuthResult.OK
    assert verify(auth, client.answer(challenge, nc=2), now=30.5) is AuthResult.STALE
    assert verify(auth, client.answer(challenge, nc=3, password="x"), now=31.0) is AuthResult.BAD_RESPONSE


def test_nonce_from_another_secret_is_stale() -> None:
    old = DigestAuthenticator(REALM, b"before-restart").challenge(now=0.0)[0]
    auth = DigestAuthenticator(REALM, b"after-restart")
    assert verify(auth, Client().answer(old), now=1.0) is AuthResult.STALE


def test_no_qop_allowed_once_per_nonce_and_can_be_refused() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    challenge = auth.challenge(now=0.0)[1]
    value = Client().answer(challenge, qop=False)
    assert verify(auth, value, now=1.0) is AuthResult.OK
    assert verify(auth, value, now=2.0) is AuthResult.REPLAY
    strict = DigestAuthenticator(REALM, b"secret", allow_rfc2069=False)
    assert verify(strict, Client().answer(strict.challenge(now=0.0)[1], qop=False), now=1.0) is (
        AuthResult.UNSUPPORTED
    )


def test_algorithm_not_offered_is_unsupported() -> None:
    auth = DigestAuthenticator(REALM, b"secret", algorithms=(Algorithm.SHA_256,))
    challenge = auth.challenge(now=0.0)[0].replace("SHA-256", "MD5")
    assert verify(auth, Client().answer(challenge), now=1.0) is AuthResult.UNSUPPORTED


def test_uri_must_name_the_request_uri_but_params_are_ignored() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    challenge = auth.challenge(now=0.0)[0]
    client = Client()
    # pyVoIP puts ";transport=UDP" in the digest uri but not in the Request-URI.
    with_params = client.answer(challenge, nc=1, uri="sip:GW.example;transport=UDP")
    assert verify(auth, with_params, now=1.0, uri="sip:gw.example") is AuthResult.OK
    other = client.answer(challenge, nc=2, uri="sip:elsewhere.example")
    assert verify(auth, other, now=1.0, uri="sip:gw.example") is AuthResult.URI_MISMATCH


def test_select_picks_our_realm_and_skips_other_schemes() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    ours = 'Digest username="u", realm="gw.example", nonce="n", uri="sip:x", response="00"'
    theirs = 'Digest username="u", realm="elsewhere", nonce="n", uri="sip:x", response="00"'
    assert auth.select(["Basic abc", theirs, ours]) == parse_authorization(ours)
    assert auth.select([theirs]) is None
    assert auth.select([]) is None
    with pytest.raises(DigestParseError):
        auth.select(['Digest username="u'])


def test_missing_ha1_is_a_bad_response() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    credentials = parse_authorization(Client().answer(auth.challenge(now=0.0)[0]))
    result = auth.verify(credentials, None, method="REGISTER", request_uri=URI, now=1.0)
    assert result is AuthResult.BAD_RESPONSE


# -- fuzzing ---------------------------------------------------------------------------------


@given(st.text(max_size=200))
def test_parser_only_ever_raises_digest_parse_error(value: str) -> None:
    try:
        parse_authorization(value)
    except DigestParseError:
        pass
    try:
        parse_authorization("Digest " + value)
    except DigestParseError:
        pass


_quotable = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(username=_quotable, realm=_quotable, nonce=_quotable, uri=_quotable)
def test_quoted_values_round_trip(username: str, realm: str, nonce: str, uri: str) -> None:
    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    value = f'Digest username={q(username)}, realm={q(realm)}, nonce={q(nonce)}, uri={q(uri)}, response="0a"'
    credentials = parse_authorization(value)
    assert (credentials.username, credentials.realm, credentials.nonce, credentials.uri) == (
        username,
        realm,
        nonce,
        uri,
    )


@given(st.lists(st.sampled_from(['a', 'B', '=', ',', ' ', '\t', '\r\n', '"', '\\', 'x=y', 'q="z"', ',,', 'é', '%']),
                max_size=14))
def test_fast_param_parser_agrees_with_the_exact_one(pieces: list[str]) -> None:
    from gateway.registrar.digest import _parse_params, _parse_params_exact
    from gateway.registrar.errors import DigestParseError

    text = "".join(pieces)

    def outcome(parse):  # type: ignore[no-untyped-def]
        try:
            return parse(text, 0)
        except DigestParseError as exc:
            return ("error", str(exc))

    assert outcome(_parse_params) == outcome(_parse_params_exact)


def test_nonce_count_without_qop_is_not_authenticated_so_it_cannot_reopen_the_nonce() -> None:
    # Without qop the response covers neither nc nor cnonce (RFC 2069): an nc sent alongside is the
    # attacker's to change, so it must not decide whether a captured request may be replayed.
    auth = DigestAuthenticator(REALM, b"secret")
    challenge = auth.challenge(now=0.0)[1]
    value = Client().answer(challenge, qop=False) + ", nc=00000001"
    assert verify(auth, value, now=1.0) is AuthResult.OK
    replayed = value.replace("nc=00000001", "nc=00000002")
    assert verify(auth, replayed, now=2.0) is AuthResult.REPLAY


def test_select_skips_an_empty_initial_authorization() -> None:
    auth = DigestAuthenticator(REALM, b"secret")
    empty = f'Digest username="u", realm="{REALM}", nonce="", uri="sip:x", response=""'
    assert auth.select([empty]) is None
    ours = f'Digest username="u", realm="{REALM}", nonce="n", uri="sip:x", response="00"'
    assert auth.select([empty, ours]) == parse_authorization(ours)
