"""The real gateway's registrar and OPTIONS, driven by SIPp over UDP and TCP on loopback.

Outcomes come from SIPp's exit code and ``-trace_stat``; the headers the gateway sent come from the
``-trace_msg`` file, or, when SIPp needs the MD5-only relay (see conftest), from the relay's unmodified copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sip_harness import (
    CONFIG,
    LOOPBACK,
    ROOT,
    GatewayProcess,
    SipMessage,
    SippResult,
    SippRunner,
    contact_expires,
    digest_params,
    query_bindings,
)

pytestmark = pytest.mark.integration


def statuses(result: SippResult) -> list[int]:
    return [m.status for m in result.responses if m.status is not None]


def assert_ok(result: SippResult, calls: int = 1) -> None:
    assert result.returncode == 0, result.explain()
    assert int(result.stat("SuccessfulCall(C)")) == calls, result.explain()
    assert int(result.stat("FailedCall(C)")) == 0, result.explain()


def challenge_of(result: SippResult) -> SipMessage:
    return next(m for m in result.responses if m.status == 401)


def assert_challenge(resp: SipMessage, realm: str) -> None:
    """Two WWW-Authenticate headers, SHA-256 first then MD5 (RFC 8760 section 2.4), qop=auth, our realm."""
    values = resp.get_all("WWW-Authenticate")
    assert len(values) == 2, f"expected 2 WWW-Authenticate, got {values}\n{resp.text}"
    params = [digest_params(v) for v in values]
    assert [p["scheme"].lower() for p in params] == ["digest", "digest"], values
    assert [p.get("algorithm", "MD5").upper() for p in params] == ["SHA-256", "MD5"], values
    for p in params:
        assert p["realm"] == realm, values
        assert "auth" in [q.strip() for q in p.get("qop", "").split(",")], values
        assert p.get("nonce"), values


def our_contact(result: SippResult) -> str:
    """The Contact URI SIPp sent in its REGISTER."""
    sent = next(m for m in result.sent if m.method == "REGISTER" and m.contacts)
    return sent.contacts[0].split("<", 1)[1].split(">", 1)[0]


def bound(resp: SipMessage) -> dict[str, int | None]:
    """Contact URI -> expires, as echoed in a 2xx to REGISTER."""
    out: dict[str, int | None] = {}
    for c in resp.contacts:
        uri = c.split("<", 1)[1].split(">", 1)[0] if "<" in c else c.split(";", 1)[0]
        out[uri] = contact_expires(c)
    return out


def delta(gw: GatewayProcess, before: dict[str, float], result: str) -> float:
    return gw.metric("gateway_register_total", result=result) - before[result]


def counters(gw: GatewayProcess) -> dict[str, float]:
    return {
        r: gw.metric("gateway_register_total", result=r)
        for r in ("ok", "challenged", "bad_password", "unknown_user")
    }


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_register_with_digest(gateway_proc: GatewayProcess, sipp_runner: SippRunner, transport: str) -> None:
    user = {"u1": "council-cctv-1", "t1": "police-control-1"}[transport]
    before = counters(gateway_proc)
    result = sipp_runner.run("register_auth.xml", transport=transport, user=user, keys={"expires": "1800"})
    assert_ok(result)
    assert statuses(result) == [401, 200], result.explain()
    assert_challenge(challenge_of(result), gateway_proc.realm)
    ok = result.responses[-1]
    contact = our_contact(result)
    assert bound(ok).get(contact) == 1800, f"200 must echo {contact} with expires=1800:\n{ok.text}"
    assert delta(gateway_proc, before, "ok") == 1
    assert delta(gateway_proc, before, "challenged") == 1


def test_multiple_contacts_are_all_echoed(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    user = "council-cctv-2"
    first = sipp_runner.run("register_auth.xml", user=user, keys={"tag": "desk"})
    second = sipp_runner.run("register_auth.xml", user=user, keys={"tag": "spare", "expires": "600"})
    assert_ok(first)
    assert_ok(second)
    contacts = bound(second.responses[-1])
    assert contacts.get(our_contact(first)) is not None and 0 < contacts[our_contact(first)] <= 3600, contacts
    assert contacts.get(our_contact(second)) == 600, contacts


def test_wrong_password_is_refused(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    before = counters(gateway_proc)
    result = sipp_runner.run("register_reject.xml", user="hp-outram-street", password="not-the-password")
    assert result.returncode == 0, result.explain()
    assert statuses(result) == [401, 403], result.explain()
    assert delta(gateway_proc, before, "bad_password") == 1
    assert delta(gateway_proc, before, "ok") == 0
    assert gateway_proc.running


def test_unknown_user_is_refused(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    before = counters(gateway_proc)
    result = sipp_runner.run("register_reject.xml", user="no-such-user", password="whatever")
    assert result.returncode == 0, result.explain()
    assert statuses(result) == [401, 403], result.explain()
    assert delta(gateway_proc, before, "unknown_user") == 1
    assert delta(gateway_proc, before, "ok") == 0


def test_options_probe(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    result = sipp_runner.run("options.xml", auth=False)
    assert_ok(result)
    resp = result.received[-1]
    assert resp.status == 200, resp.text
    allow = {m.strip().upper() for v in resp.get_all("Allow") for m in v.split(",")}
    assert {"REGISTER", "OPTIONS", "INVITE", "ACK", "BYE", "CANCEL"} <= allow, allow
    assert resp.get("Accept") is not None, resp.text
    assert "application/sdp" in resp.get("Accept", "").lower(), resp.text


def test_udp_retransmission_gets_the_same_response(
    gateway_proc: GatewayProcess, sipp_runner: SippRunner
) -> None:
    before = counters(gateway_proc)
    result = sipp_runner.run("register_retrans.xml", user="hp-portland-square", extra=["-nr"])
    assert result.returncode == 0, result.explain()
    responses = result.responses
    assert statuses(result) == [401, 401, 200, 200], result.explain()
    assert responses[0].raw == responses[1].raw, (
        "retransmitted REGISTER must get the same 401 (same nonce, tag)"
    )
    assert responses[2].raw == responses[3].raw, "retransmitted REGISTER must get the same 200"
    # The copies were absorbed by the server transactions, not processed again.
    assert delta(gateway_proc, before, "challenged") == 1
    assert delta(gateway_proc, before, "ok") == 1


def test_interval_too_brief(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    result = sipp_runner.run(
        "register_423.xml", user="hp-outram-street", keys={"expires": "30", "tag": "brief"}
    )
    assert result.returncode == 0, result.explain()
    assert statuses(result) == [401, 423], result.explain()
    resp = result.responses[-1]
    assert resp.get("Min-Expires") == "60", resp.text
    assert our_contact(result) not in bound(query_bindings(gateway_proc, "hp-outram-street"))


def test_wildcard_deregistration(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    user = "hp-old-market-place"
    result = sipp_runner.run("register_wildcard.xml", user=user)
    assert_ok(result)
    assert statuses(result) == [401, 200, 401, 200, 401, 200], result.explain()
    oks = [m for m in result.responses if m.status == 200]
    assert our_contact(result) in bound(oks[0])
    assert oks[1].contacts == [] and oks[2].contacts == [], f"{oks[1].text}\n{oks[2].text}"
    assert query_bindings(gateway_proc, user).contacts == []


def test_small_batch_all_succeed(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    """Fifty registrations at 25/s, five at a time: every one authenticated and bound."""
    result = sipp_runner.run(
        "register_auth.xml",
        user="council-cctv-1",
        calls=50,
        rate=25,
        limit=5,
        keys={"tag": "batch"},
        timeout=60,
    )
    assert_ok(result, calls=50)


# ------------------------------------------------------------------ unmodified SIPp, gateway offering MD5 first


def md5_first_config(tmp: Path) -> Path:
    """The demo config with ``registrar.algorithms: [MD5, SHA-256]`` and its relative paths made absolute."""
    data = yaml.safe_load(CONFIG.read_text())
    data["registrar"]["algorithms"] = ["MD5", "SHA-256"]

    def absolutise(node: object) -> object:
        if isinstance(node, dict):
            return {k: absolutise(v) for k, v in node.items()}
        if isinstance(node, list):
            return [absolutise(v) for v in node]
        if isinstance(node, str) and "/" not in node[:1] and (ROOT / node).exists() and node not in ("",):
            return str(ROOT / node)
        return node

    path = tmp / "gateway-md5-first.yaml"
    path.write_text(yaml.safe_dump(absolutise(data)))
    return path


@pytest.fixture(scope="module")
def gateway_md5_first(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gateway-md5")
    gw = GatewayProcess(tmp, config=md5_first_config(tmp))
    try:
        gw.start()
    except Exception:
        gw.kill()
        raise
    yield gw
    gw.stop()


def test_unmodified_sipp_against_md5_first(
    sipp: str, gateway_md5_first: GatewayProcess, tmp_path: Path
) -> None:
    runner = SippRunner(sipp, gateway_md5_first, tmp_path)
    try:
        assert runner.md5_first(), "registrar.algorithms [MD5, SHA-256] must put the MD5 challenge first"
        for transport in ("u1", "t1"):
            result = runner.run(
                "register_auth.xml", transport=transport, user="council-cctv-1", keys={"tag": transport}
            )
            assert_ok(result)
            assert not result.gateway_messages  # no relay: SIPp talked to the gateway itself
            values = challenge_of(result).get_all("WWW-Authenticate")
            assert [digest_params(v).get("algorithm", "MD5").upper() for v in values] == ["MD5", "SHA-256"]
            assert our_contact(result) in bound(result.responses[-1])
            assert result.sent[-1].get("Authorization", "").startswith("Digest")
            assert LOOPBACK in our_contact(result)
    finally:
        runner.close()


def test_help_point_is_up_while_registered_and_a_deregistration_does_not_say_up(tmp_path: Path) -> None:
    """Liveness from REGISTER, real process (a gateway of its own: no earlier registration): a unit that
    de-registers (Expires: 0) with nothing bound is not marked up; once it registers, it is."""
    from calls_harness import register
    from sip_harness import free_port

    gw = GatewayProcess(tmp_path)
    unit, port = "hp-old-market-place", free_port()

    def up() -> float:
        return gw.metric("gateway_help_point_up", help_point=unit)

    try:
        gw.start()
        assert register(gw, unit, port, expires=0).status == 200
        assert up() == 0
        assert register(gw, unit, port, expires=300).status == 200
        assert up() == 1
    finally:
        gw.stop()
