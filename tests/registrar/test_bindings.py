"""RFC 3261 §10.3 binding rules on plain values."""

from __future__ import annotations

import pytest

from gateway.registrar import (
    Binding,
    BindingPolicy,
    BindingRequest,
    ContactSpec,
    Source,
    expired,
    update_bindings,
)
from gateway.registrar.bindings import active, contact_key

AOR = "sip:hp-outram-street@gw.example"
SRC = Source("203.0.113.7", 40123, "UDP")
POLICY = BindingPolicy(min_expires=60, max_expires=3600, default_expires=1800, max_contacts=3)


def req(
    *contacts: ContactSpec | str,
    expires: str | int | None = None,
    call_id: str = "call-1",
    cseq: int = 1,
) -> BindingRequest:
    specs = tuple(ContactSpec(c) if isinstance(c, str) else c for c in contacts)
    return BindingRequest(AOR, specs, expires, call_id, cseq, SRC, "2N IP Verso 2.40")


def apply(existing: tuple[Binding, ...], request: BindingRequest, now: float = 1000.0):  # noqa: ANN201
    return update_bindings(existing, request, now, POLICY)


def test_add_binding_with_header_expires() -> None:
    result = apply((), req("sip:hp@10.0.0.5:5060", expires="600"))
    assert (result.status, result.reason, result.changed, result.granted_expires) == (200, "OK", True, 600)
    (binding,) = result.bindings
    assert binding == Binding(AOR, "sip:hp@10.0.0.5:5060", 1600.0, "call-1", 1, SRC, "2N IP Verso 2.40")
    assert binding.contact_value(1000.0) == "<sip:hp@10.0.0.5:5060>;expires=600"
    assert binding.contact_value(1599.6) == "<sip:hp@10.0.0.5:5060>;expires=1"
    assert binding.remaining(1600.0) == 0


def test_contact_param_beats_header_and_default_applies() -> None:
    result = apply((), req(ContactSpec("sip:a@h1", expires="120"), "sip:b@h2", expires="300"))
    assert [b.expires_at - 1000.0 for b in result.bindings] == [120.0, 300.0]
    assert result.granted_expires is None  # two contacts: no single Expires value
    result = apply((), req("sip:a@h1"))
    assert result.bindings[0].expires_at == 1000.0 + POLICY.default_expires


def test_malformed_expires_is_treated_as_default() -> None:
    result = apply((), req(ContactSpec("sip:a@h1", expires="soon"), expires="later"))
    assert result.bindings[0].expires_at == 1000.0 + POLICY.default_expires


def test_too_brief_gives_423_and_changes_nothing() -> None:
    existing = apply((), req("sip:a@h1", expires=600)).bindings
    result = apply(existing, req("sip:b@h2", ContactSpec("sip:a@h1", expires="30"), cseq=2))
    assert (result.status, result.reason, result.min_expires) == (423, "Interval Too Brief", 60)
    assert result.bindings == existing and not result.changed


def test_too_long_is_clamped() -> None:
    result = apply((), req("sip:a@h1", expires=str(2**40)))
    assert result.granted_expires == 3600
    assert result.bindings[0].expires_at == 4600.0


def test_refresh_same_call_id_needs_higher_cseq() -> None:
    first = apply((), req("sip:a@h1", expires=600, cseq=5)).bindings
    refreshed = apply(first, req("sip:a@h1", expires=900, cseq=6), now=1100.0)
    assert refreshed.status == 200
    assert [(b.expires_at, b.cseq) for b in refreshed.bindings] == [(2000.0, 6)]
    for cseq in (5, 4):
        stale = apply(first, req("sip:a@h1", expires=900, cseq=cseq), now=1100.0)
        assert (stale.status, stale.reason, stale.changed) == (400, "Invalid CSeq Number", False)
        assert stale.bindings == first


def test_new_call_id_replaces_the_binding_whatever_the_cseq() -> None:
    first = apply((), req("sip:a@h1", expires=600, cseq=50)).bindings
    result = apply(first, req("sip:a@h1", expires=600, call_id="after-reboot", cseq=1), now=1010.0)
    assert result.status == 200
    assert [(b.call_id, b.cseq) for b in result.bindings] == [("after-reboot", 1)]


def test_contact_uri_comparison_follows_rfc3261_loosely() -> None:
    first = apply((), req("sip:hp@HOST.example:5060;Transport=udp", expires=600)).bindings
    result = apply(first, req("<sip:hp@host.example:5060;transport=UDP>", expires=0, cseq=2))
    assert result.status == 200 and result.bindings == ()
    assert contact_key("sip:Hp@h") != contact_key("sip:hp@h")  # user part is case-sensitive


def test_remove_one_of_two_and_remove_unknown_is_fine() -> None:
    both = apply((), req("sip:a@h1", "sip:b@h2", expires=600)).bindings
    result = apply(both, req(ContactSpec("sip:a@h1", expires="0"), "sip:zzz@nowhere", expires=0, cseq=2))
    assert [b.contact for b in result.bindings] == ["sip:b@h2"]


def test_query_without_contacts_lists_live_bindings() -> None:
    existing = apply((), req("sip:a@h1", "sip:b@h2", expires=600)).bindings
    short = (Binding(AOR, "sip:gone@h3", 999.0, "x", 1, SRC),)
    result = apply(existing + short, req(cseq=2))
    assert result.status == 200 and result.bindings == existing
    assert result.changed  # the expired one should be deleted from the store
    assert apply(existing, req(cseq=3)).changed is False


def test_wildcard_removes_everything() -> None:
    existing = apply((), req("sip:a@h1", "sip:b@h2", expires=600, call_id="c1")).bindings
    result = apply(existing, req("*", expires="0", call_id="c2"))
    assert (result.status, result.bindings, result.changed) == (200, (), True)


@pytest.mark.parametrize(
    "request_",
    [
        req("*"),  # no Expires
        req("*", expires="60"),  # Expires not 0
        req("*", "sip:a@h1", expires="0"),  # not alone
        req(ContactSpec("*", expires="60"), expires="0"),
    ],
)
def test_wildcard_misuse_is_400(request_: BindingRequest) -> None:
    existing = apply((), req("sip:a@h1", expires=600)).bindings
    result = apply(existing, request_)
    assert (result.status, result.bindings, result.changed) == (400, existing, False)


def test_wildcard_with_same_call_id_needs_higher_cseq() -> None:
    existing = apply((), req("sip:a@h1", expires=600, cseq=7)).bindings
    assert apply(existing, req("*", expires=0, cseq=7)).status == 400
    assert apply(existing, req("*", expires=0, cseq=8)).status == 200


def test_max_contacts_evicts_soonest_expiring_other_binding() -> None:
    existing = apply(
        (), req(ContactSpec("sip:a@h1", expires="100"), "sip:b@h2", "sip:c@h3", expires=600)
    ).bindings
    result = apply(existing, req("sip:d@h4", expires=600, call_id="reboot"), now=1001.0)
    assert result.status == 200
    assert sorted(b.contact for b in result.bindings) == ["sip:b@h2", "sip:c@h3", "sip:d@h4"]


def test_max_contacts_refuses_when_eviction_is_off_or_request_alone_too_big() -> None:
    strict = BindingPolicy(max_contacts=1, evict_oldest=False)
    existing = update_bindings((), req("sip:a@h1"), 0.0, strict).bindings
    result = update_bindings(existing, req("sip:b@h2", call_id="other"), 0.0, strict)
    assert (result.status, result.reason, result.bindings) == (403, "Too Many Contacts", existing)
    result = apply((), req("sip:a@h1", "sip:b@h2", "sip:c@h3", "sip:d@h4"))
    assert result.status == 403


def test_q_value_is_kept_and_echoed() -> None:
    result = apply((), req(ContactSpec("sip:a@h1", q="0.5"), ContactSpec("sip:b@h2", q="bogus"), expires=60))
    assert [b.q for b in result.bindings] == [0.5, None]
    assert result.bindings[0].contact_value(1000.0) == "<sip:a@h1>;expires=60;q=0.5"
    assert ContactSpec.from_params("sip:x@y", [("Expires", "30"), ("Q", "1"), ("+sip.instance", None)]) == (
        ContactSpec("sip:x@y", "30", "1")
    )


def test_contact_without_scheme_is_400() -> None:
    assert apply((), req("garbage")).status == 400


def test_expiry_sweep_helpers() -> None:
    bindings = apply(
        (), req(ContactSpec("sip:a@h1", expires="60"), ContactSpec("sip:b@h2", expires="120"))
    ).bindings
    assert expired(bindings, 1059.9) == ()
    assert [b.contact for b in expired(bindings, 1060.0)] == ["sip:a@h1"]
    assert [b.contact for b in active(bindings, 1060.0)] == ["sip:b@h2"]


def test_same_contact_twice_in_one_request_last_wins() -> None:
    existing = apply((), req("sip:a@h1", expires=600)).bindings
    result = apply(existing, req("sip:a@h1", ContactSpec("sip:a@h1", expires="120"), expires=600, cseq=2))
    assert result.status == 200
    assert [(b.contact, b.expires_at) for b in result.bindings] == [("sip:a@h1", 1120.0)]
