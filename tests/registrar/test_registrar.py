"""The pure Registrar: REGISTER in, Decision out; time advanced by hand."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from gateway.registrar import (
    Algorithm,
    BindingPolicy,
    ContactSpec,
    Decision,
    DigestCredentials,
    RegisterOutcome,
    RegisterRequest,
    Registrar,
    Source,
    compute_response,
    ha1,
)

REALM = "gw.example"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the registrar runs on wall-clock seconds
SRC = Source("203.0.113.7", 40123, "UDP")


@dataclass(frozen=True)
class Creds:
    ha1_md5: str | None
    ha1_sha256: str | None


def creds_for(user: str, password: str) -> Creds:
    return Creds(ha1(user, REALM, password, Algorithm.MD5), ha1(user, REALM, password, Algorithm.SHA_256))


DB = {
    "council-cctv-1": creds_for("council-cctv-1", "demo-council-cctv-1"),
    "hp-outram-street": creds_for("hp-outram-street", "demo-hp-outram-street"),
}


def make_registrar(**kwargs: object) -> Registrar:
    defaults: dict[str, object] = {
        "policy": BindingPolicy(min_expires=60, max_expires=3600),
        "admitted_networks": {"hp-portland-square": ["198.51.100.0/24"]},
    }
    defaults.update(kwargs)
    return Registrar(REALM, b"test-secret", **defaults)  # type: ignore[arg-type]


def register(
    user: str = "council-cctv-1",
    *,
    contacts: tuple[ContactSpec, ...] = (ContactSpec("sip:council-cctv-1@10.1.2.3:5060"),),
    expires: str | None = "600",
    cseq: int = 1,
    call_id: str = "reg-1@10.1.2.3",
    authorization: tuple[str, ...] = (),
    source: Source = SRC,
) -> RegisterRequest:
    return RegisterRequest(
        request_uri=f"sip:{REALM}",
        to_user=user,
        call_id=call_id,
        cseq=cseq,
        contacts=contacts,
        source=source,
        expires=expires,
        authorization=authorization,
        user_agent="Linphone/5.2",
    )


def challenge_values(decision: Decision) -> list[str]:
    return [value for name, value in decision.headers if name == "WWW-Authenticate"]


def answer(
    challenge: str,
    *,
    user: str = "council-cctv-1",
    password: str | None = None,
    nc: int = 1,
    qop: bool = True,
    uri: str = f"sip:{REALM}",
) -> str:
    nonce = challenge.split('nonce="')[1].split('"')[0]
    algorithm = Algorithm.parse(challenge.split("algorithm=")[1].split(",")[0])
    credentials = DigestCredentials(
        user, REALM, nonce, uri, "", algorithm,
        qop="auth" if qop else None, nc=nc, nc_text=f"{nc:08x}", cnonce=f"cn{nc}",
    )  # fmt: skip
    response = compute_response(
        credentials, ha1(user, REALM, password or f"demo-{user}", algorithm), "REGISTER"
    )
    value = f'Digest username="{user}",realm="{REALM}",nonce="{nonce}",uri="{uri}",response="{response}"'
    value += f",algorithm={algorithm.value}"
    if qop:
        value += f',qop=auth,nc={nc:08x},cnonce="cn{nc}"'
    return value


def handle(registrar: Registrar, request: RegisterRequest, now: float) -> Decision:
    """What the shell does: look up the credentials of the named user, then decide."""
    user = registrar.username_to_look_up(request)
    return registrar.handle_register(request, DB.get(user) if user else None, now)


def authenticated(registrar: Registrar, request: RegisterRequest, now: float, index: int = 0) -> Decision:
    first = handle(registrar, replace(request, cseq=request.cseq - 1), now)
    assert first.status == 401
    auth = answer(challenge_values(first)[index], user=request.to_user or "")
    return handle(registrar, replace(request, authorization=(auth,)), now)


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_challenge_then_register_then_contact_echo(index: int) -> None:
    registrar = make_registrar()
    first = handle(registrar, register(cseq=1), T0)
    assert (first.status, first.reason, first.counter) == (401, "Unauthorized", RegisterOutcome.CHALLENGED)
    sha, md5 = challenge_values(first)
    assert "algorithm=SHA-256" in sha and "algorithm=MD5" in md5
    assert first.persist is None

    auth = answer(challenge_values(first)[index])
    ok = handle(registrar, register(cseq=2, authorization=(auth,)), T0 + 1)
    assert (ok.status, ok.counter, ok.username, ok.aor) == (200, RegisterOutcome.OK, "council-cctv-1",
                                                           "sip:council-cctv-1@gw.example")  # fmt: skip
    assert ok.headers == (
        ("Contact", "<sip:council-cctv-1@10.1.2.3:5060>;expires=600"),
        ("Expires", "600"),
        ("Date", "Thu, 01 Jan 2026 00:00:01 GMT"),
    )
    assert ok.persist == ok.bindings and len(ok.bindings) == 1
    binding = ok.bindings[0]
    assert (binding.source, binding.user_agent, binding.expires_at) == (SRC, "Linphone/5.2", T0 + 601)
    assert registrar.lookup("council-cctv-1", T0 + 2) == ok.bindings
    assert registrar.lookup("sip:council-cctv-1@gw.example", T0 + 601) == ()


def test_unknown_user_gets_403_and_is_counted() -> None:
    registrar = make_registrar()
    first = handle(registrar, register("nobody", contacts=(ContactSpec("sip:nobody@h"),)), T0)
    auth = answer(challenge_values(first)[0], user="nobody")
    decision = handle(registrar, register("nobody", cseq=2, authorization=(auth,)), T0)
    assert (decision.status, decision.counter) == (403, RegisterOutcome.UNKNOWN_USER)
    assert "WWW-Authenticate" not in dict(decision.headers)


def test_wrong_password_gets_403_and_a_retry_can_still_succeed() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    bad = answer(challenge, password="letmein", nc=1)
    decision = handle(registrar, register(cseq=2, authorization=(bad,)), T0)
    assert (decision.status, decision.counter, decision.persist) == (403, RegisterOutcome.BAD_PASSWORD, None)
    assert registrar.lookup("council-cctv-1", T0) == ()
    good = answer(challenge, nc=1)
    assert handle(registrar, register(cseq=3, authorization=(good,)), T0).status == 200


def test_stale_nonce_gets_401_stale_true() -> None:
    registrar = make_registrar(nonce_lifetime=300.0)
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    auth = answer(challenge)
    decision = handle(registrar, register(cseq=2, authorization=(auth,)), T0 + 301)
    assert (decision.status, decision.counter) == (401, RegisterOutcome.STALE_NONCE)
    assert all(v.endswith("stale=true") for v in challenge_values(decision))
    fresh = answer(challenge_values(decision)[0])
    assert handle(registrar, register(cseq=3, authorization=(fresh,)), T0 + 302).status == 200


def test_replayed_register_is_refused() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    request = register(cseq=2, authorization=(answer(challenge, nc=1),))
    assert handle(registrar, request, T0 + 1).status == 200
    replayed = handle(registrar, replace(request, cseq=3), T0 + 2)
    assert (replayed.status, replayed.counter) == (401, RegisterOutcome.REPLAY)
    refresh = register(cseq=4, authorization=(answer(challenge, nc=2),), expires="900")
    assert handle(registrar, refresh, T0 + 3).status == 200  # the next nonce-count is fine


def test_nonces_survive_a_restart_with_the_same_secret() -> None:
    before = make_registrar()
    challenge = challenge_values(handle(before, register(), T0))[0]
    after = make_registrar()
    assert handle(after, register(cseq=2, authorization=(answer(challenge),)), T0 + 5).status == 200


def test_malformed_authorization_is_400_never_raises() -> None:
    registrar = make_registrar()
    decision = handle(registrar, register(authorization=('Digest username="council-cctv-1, realm=',)), T0)
    assert (decision.status, decision.counter) == (400, RegisterOutcome.MALFORMED)
    assert "unterminated" in decision.detail


def test_credentials_of_another_user_cannot_register_this_aor() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register("council-cctv-1"), T0))[0]
    auth = answer(challenge, user="hp-outram-street")
    decision = handle(registrar, register("council-cctv-1", cseq=2, authorization=(auth,)), T0)
    assert (decision.status, decision.counter, decision.persist) == (403, RegisterOutcome.FORBIDDEN, None)


def test_digest_uri_for_another_resource_is_400() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    auth = answer(challenge, uri="sip:other.example")
    decision = handle(registrar, register(cseq=2, authorization=(auth,)), T0)
    assert (decision.status, decision.counter) == (400, RegisterOutcome.MALFORMED)


def test_pyvoip_style_md5_without_qop_and_transport_param() -> None:
    registrar = make_registrar()
    md5 = challenge_values(handle(registrar, register(), T0))[1]
    auth = answer(md5, qop=False, uri=f"sip:{REALM};transport=UDP")
    assert handle(registrar, register(cseq=2, authorization=(auth,)), T0).status == 200


def test_interval_too_brief_is_423_with_min_expires() -> None:
    registrar = make_registrar()
    decision = authenticated(registrar, register(cseq=2, expires="10"), T0)
    assert (decision.status, decision.reason, decision.counter) == (
        423, "Interval Too Brief", RegisterOutcome.INTERVAL_TOO_BRIEF,
    )  # fmt: skip
    assert decision.headers == (("Min-Expires", "60"),)
    assert decision.persist is None


def test_out_of_order_cseq_is_rejected() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    assert handle(registrar, register(cseq=5, authorization=(answer(challenge, nc=1),)), T0).status == 200
    late = handle(registrar, register(cseq=4, authorization=(answer(challenge, nc=2),)), T0)
    assert (late.status, late.counter) == (400, RegisterOutcome.REJECTED)


def test_wildcard_deregistration_persists_an_empty_set() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    assert handle(registrar, register(cseq=2, authorization=(answer(challenge, nc=1),)), T0).status == 200
    wildcard = register(
        cseq=3, contacts=(ContactSpec("*"),), expires="0", authorization=(answer(challenge, nc=2),)
    )
    decision = handle(registrar, wildcard, T0 + 1)
    assert (decision.status, decision.persist, decision.bindings) == (200, (), ())
    assert [name for name, _ in decision.headers] == ["Expires", "Date"]
    assert registrar.lookup("council-cctv-1", T0 + 1) == ()
    bad = register(
        cseq=4, contacts=(ContactSpec("*"),), expires="60", authorization=(answer(challenge, nc=3),)
    )
    assert handle(registrar, bad, T0 + 2).counter is RegisterOutcome.MALFORMED


def test_help_point_admitted_by_source_network_only_from_inside() -> None:
    registrar = make_registrar()
    contacts = (ContactSpec("sip:hp-portland-square@198.51.100.20"),)
    inside = Source("198.51.100.20", 5060, "UDP")
    request = register("hp-portland-square", contacts=contacts, source=inside)
    assert registrar.username_to_look_up(request) is None
    decision = registrar.handle_register(request, None, T0)
    assert (decision.status, decision.counter, decision.username) == (
        200,
        RegisterOutcome.OK,
        "hp-portland-square",
    )
    assert decision.detail == "admitted by source network"

    mapped = register(
        "hp-portland-square", contacts=contacts, cseq=2, source=Source("::ffff:198.51.100.21", 5060)
    )
    assert registrar.handle_register(mapped, None, T0).status == 200

    outside = register("hp-portland-square", contacts=contacts, cseq=3, source=Source("192.0.2.1", 5060))
    decision = registrar.handle_register(outside, None, T0)
    assert (decision.status, decision.counter) == (401, RegisterOutcome.CHALLENGED)
    garbage = register("hp-portland-square", contacts=contacts, cseq=4, source=Source("not-an-ip", 5060))
    assert registrar.handle_register(garbage, None, T0).status == 401


def test_digest_user_with_a_network_entry_still_authenticates_from_elsewhere() -> None:
    registrar = make_registrar(admitted_networks={"hp-outram-street": ["10.20.0.0/16"]})
    request = register(
        "hp-outram-street",
        contacts=(ContactSpec("sip:hp-outram-street@192.0.2.9"),),
        source=Source("192.0.2.9", 5060),
    )
    decision = authenticated(registrar, replace(request, cseq=2), T0)
    assert (decision.status, decision.counter) == (200, RegisterOutcome.OK)
    assert decision.detail == "digest"


def test_missing_to_user_is_400() -> None:
    decision = make_registrar().handle_register(replace(register(), to_user=None), None, T0)
    assert (decision.status, decision.counter) == (400, RegisterOutcome.MALFORMED)


def test_multiple_contacts_load_lookup_and_sweep() -> None:
    registrar = make_registrar()
    contacts = (
        ContactSpec("sip:council-cctv-1@10.1.2.3:5060", expires="60", q="0.2"),
        ContactSpec("sip:council-cctv-1@10.1.2.4:5060", expires="120", q="0.9"),
    )
    ok = authenticated(registrar, register(cseq=2, contacts=contacts, expires=None), T0)
    assert [v for n, v in ok.headers if n == "Contact"] == [
        "<sip:council-cctv-1@10.1.2.3:5060>;expires=60;q=0.2",
        "<sip:council-cctv-1@10.1.2.4:5060>;expires=120;q=0.9",
    ]
    assert "Expires" not in dict(ok.headers)
    assert [b.q for b in registrar.lookup("council-cctv-1", T0)] == [0.9, 0.2]

    restarted = make_registrar()
    restarted.load(ok.bindings, T0 + 61)
    assert [b.expires_at for b in restarted.all_bindings(T0 + 61)] == [T0 + 120]

    gone = registrar.sweep(T0 + 60)
    assert [b.contact for b in gone] == ["sip:council-cctv-1@10.1.2.3:5060"]
    assert registrar.sweep(T0 + 60) == ()
    assert [b.contact for b in registrar.sweep(T0 + 200)] == ["sip:council-cctv-1@10.1.2.4:5060"]
    assert registrar.all_bindings(T0 + 200) == ()


def test_credentials_without_the_hash_of_the_chosen_algorithm_fail_closed() -> None:
    registrar = make_registrar()
    challenge = challenge_values(handle(registrar, register(), T0))[0]
    request = register(cseq=2, authorization=(answer(challenge),))
    only_md5 = Creds(DB["council-cctv-1"].ha1_md5, None)
    decision = registrar.handle_register(request, only_md5, T0)
    assert (decision.status, decision.counter) == (403, RegisterOutcome.BAD_PASSWORD)


@pytest.mark.parametrize("user", ["council-cctv-1", "nobody"])
def test_empty_initial_authorization_is_challenged_not_forbidden(user: str) -> None:
    # IMS-style initial REGISTER (3GPP TS 24.229 §5.1.1.2; PJSIP's initial_auth): credentials with an
    # empty nonce and response, to name the user before any challenge.  It is no answer to anything:
    # a 403 would lock a right password out; a known and an unknown user must get the same answer.
    registrar = make_registrar()
    empty = f'Digest username="{user}", realm="{REALM}", nonce="", uri="sip:{REALM}", response=""'
    request = register(user, contacts=(ContactSpec(f"sip:{user}@10.1.2.3"),), authorization=(empty,))
    assert registrar.username_to_look_up(request) is None  # nothing to look up in the store
    decision = handle(registrar, request, T0)
    assert (decision.status, decision.counter) == (401, RegisterOutcome.CHALLENGED)
    if user == "council-cctv-1":
        auth = answer(challenge_values(decision)[0])
        assert handle(registrar, register(cseq=2, authorization=(auth,)), T0 + 1).status == 200
