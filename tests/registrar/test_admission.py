"""INVITE admission: the Authorization values are parsed once and handed to ``admit``."""

from __future__ import annotations

from gateway.registrar import Algorithm, BindingPolicy, Registrar, ha1
from gateway.registrar.service import Admission, Presented, admit, digest_user, presented_credentials
from gateway.sip.message import Headers, Request

REALM = "gw.example"


def registrar() -> Registrar:
    return Registrar(REALM, b"test-secret", policy=BindingPolicy(min_expires=60, max_expires=3600),
                     admitted_networks={"hp-portland-square": ["198.51.100.0/24"]})


def invite(user: str, *authorization: str) -> Request:
    return Request("INVITE", "sip:999@gw.example", Headers([
        ("From", f"<sip:{user}@gw.example>;tag=1"), ("To", "<sip:999@gw.example>"), ("Call-ID", "c"),
        ("CSeq", "1 INVITE"), *(("Authorization", a) for a in authorization),
    ]))


class Record:
    ha1_md5 = ha1("hp-a", REALM, "pw", Algorithm.MD5)
    ha1_sha256 = ha1("hp-a", REALM, "pw", Algorithm.SHA_256)


SRC = ("UDP", "203.0.113.7", 5060)


def test_presented_credentials_name_the_user_or_the_problem() -> None:
    reg = registrar()
    good = invite("hp-a", f'Digest username="hp-a", realm="{REALM}", nonce="n", uri="sip:999@gw.example", '
                          'response="00"')
    other_realm = invite("hp-a", 'Digest username="x", realm="elsewhere", nonce="n", uri="u", response="00"')
    broken = invite("hp-a", f'Digest username="hp-a", realm="{REALM}')
    assert presented_credentials(reg, good).username == "hp-a" == digest_user(reg, good)
    assert presented_credentials(reg, other_realm) == Presented(None) and digest_user(reg, other_realm) is None
    assert presented_credentials(reg, invite("hp-a")) == Presented(None)
    parsed = presented_credentials(reg, broken)
    assert parsed.digest is None and parsed.error is not None and "unterminated" in parsed.error


def test_admit_gives_the_same_verdict_with_or_without_the_parsed_credentials() -> None:
    reg = registrar()
    cases = [
        (invite("hp-a"), None, SRC),
        (invite("hp-a", f'Digest username="hp-a", realm="{REALM}'), None, SRC),
        (invite("hp-a", f'Digest username="hp-a", realm="{REALM}", nonce="n", uri="sip:999@gw.example", '
                        'response="00"'), Record(), SRC),
        (invite("hp-a", f'Digest username="nobody", realm="{REALM}", nonce="n", uri="u", response="00"'), None, SRC),
        # Admitted by network: even malformed credentials are not looked at.
        (invite("hp-portland-square", f'Digest username="x", realm="{REALM}'), None, ("UDP", "198.51.100.4", 5060)),
    ]
    verdicts = []
    for request, record, source in cases:
        once = admit(reg, request, source, record, 0.0, presented_credentials(reg, request))  # type: ignore[arg-type]
        assert once == admit(reg, request, source, record, 0.0)  # type: ignore[arg-type]
        verdicts.append(once[0])
    assert verdicts == [Admission.CHALLENGE, Admission.MALFORMED, Admission.FORBIDDEN, Admission.FORBIDDEN,
                        Admission.OK]


async def test_a_register_whose_credentials_cannot_be_read_gets_503_not_silence() -> None:
    """The credentials store fails while a REGISTER waits for its user's record: the device gets 503 with
    Retry-After (it registers again shortly) instead of no answer at all, and nothing is bound."""
    import asyncio

    from gateway.registrar.registrar import RegisterOutcome
    from gateway.registrar.service import CredentialCache, RegistrarService

    async def broken_store(user: str, realm: str) -> None:
        raise OSError("database unavailable")

    tasks: list[asyncio.Task[None]] = []
    sunk: list[object] = []
    service = RegistrarService(registrar(), CredentialCache(broken_store, REALM), lambda aor, b: sunk.append(b),
                               lambda coro: tasks.append(asyncio.ensure_future(coro)))
    request = Request("REGISTER", "sip:gw.example", Headers([
        ("Via", "SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bKr1"), ("From", "<sip:hp-a@gw.example>;tag=1"),
        ("To", "<sip:hp-a@gw.example>"), ("Call-ID", "r1"), ("CSeq", "1 REGISTER"),
        ("Contact", "<sip:hp-a@203.0.113.7:5060>"), ("Expires", "300"),
        ("Authorization", f'Digest username="hp-a", realm="{REALM}", nonce="n", uri="sip:gw.example", '
                          'response="00"'),
    ]))
    answers: list[tuple[int, str | None, object]] = []
    service.handle(request, SRC, lambda response, decision: answers.append(
        (response.status, response.headers.get("Retry-After"), decision and decision.counter)), "tag1")
    await asyncio.gather(*tasks)
    assert answers == [(503, "5", RegisterOutcome.UNAVAILABLE)]
    assert sunk == []
