"""Which binding of an AOR comes first, and which one a full AOR gives up: the most recent registration wins.

A 4G help point that reconnects gets a new address from the APN, so its next REGISTER (new Call-ID,
new Contact) adds a second binding while the dead one lingers until it expires.  The shell probes and
talks down to ``lookup(...)[0]``: that must be the contact the unit registered last.
"""

from __future__ import annotations

from gateway.registrar import BindingPolicy, ContactSpec, RegisterRequest, Registrar, Source, update_bindings
from gateway.registrar.bindings import BindingRequest

T0 = 1_767_225_600.0
AOR = "sip:hp-outram-street@gw.example"
OLD_NAT = Source("203.0.113.7", 40123, "UDP")
NEW_NAT = Source("203.0.113.99", 51000, "UDP")


def admitted_registrar() -> Registrar:
    return Registrar(
        "gw.example",
        b"secret",
        policy=BindingPolicy(min_expires=60, max_expires=3600),
        admitted_networks={"hp-outram-street": ["203.0.113.0/24"]},
    )


def register(contact: str, source: Source, call_id: str, cseq: int, expires: str) -> RegisterRequest:
    return RegisterRequest(
        request_uri="sip:gw.example",
        to_user="hp-outram-street",
        call_id=call_id,
        cseq=cseq,
        contacts=(ContactSpec(contact),),
        source=source,
        expires=expires,
        user_agent="2N IP Verso 2.40",
    )


def test_unit_that_reconnected_with_a_new_contact_is_looked_up_at_its_new_contact_first() -> None:
    registrar = admitted_registrar()
    old = register("sip:hp-outram-street@10.64.1.5:5060", OLD_NAT, "boot-1", 1, "3600")
    assert registrar.handle_register(old, None, T0).status == 200
    # 4G link dropped; the unit comes back 10 minutes later with a new APN address and asks for 600 s.
    new = register("sip:hp-outram-street@10.64.9.77:5060", NEW_NAT, "boot-2", 1, "600")
    assert registrar.handle_register(new, None, T0 + 600).status == 200
    found = registrar.lookup("hp-outram-street", T0 + 601)
    assert len(found) == 2  # the dead one lingers until it expires (no RFC 5626 instance matching)
    assert (found[0].contact, found[0].source) == ("sip:hp-outram-street@10.64.9.77:5060", NEW_NAT)


def test_refresh_of_the_older_contact_makes_it_the_most_recent_again() -> None:
    registrar = admitted_registrar()
    a = register("sip:hp-outram-street@10.64.1.5:5060", OLD_NAT, "a", 1, "3600")
    b = register("sip:hp-outram-street@10.64.9.77:5060", NEW_NAT, "b", 1, "3600")
    assert registrar.handle_register(a, None, T0).status == 200
    assert registrar.handle_register(b, None, T0 + 10).status == 200
    assert registrar.lookup("hp-outram-street", T0 + 20)[0].call_id == "b"
    refresh = register("sip:hp-outram-street@10.64.1.5:5060", OLD_NAT, "a", 2, "3600")
    assert registrar.handle_register(refresh, None, T0 + 30).status == 200
    assert registrar.lookup("hp-outram-street", T0 + 31)[0].call_id == "a"


def test_order_survives_a_restart_in_stored_order() -> None:
    registrar = admitted_registrar()
    registrar.handle_register(register("sip:hp@10.64.1.5", OLD_NAT, "a", 1, "3600"), None, T0)
    ok = registrar.handle_register(register("sip:hp@10.64.9.77", NEW_NAT, "b", 1, "120"), None, T0 + 5)
    assert ok.persist is not None
    restarted = admitted_registrar()
    restarted.load(ok.persist, T0 + 10)  # the store returns rows in the order they were saved
    assert restarted.lookup("hp-outram-street", T0 + 10)[0].contact == "sip:hp@10.64.9.77"


def test_q_value_still_ranks_before_recency() -> None:
    registrar = admitted_registrar()
    high = register("sip:hp@10.64.1.5", OLD_NAT, "a", 1, "3600")
    high = RegisterRequest(**{**high.__dict__, "contacts": (ContactSpec("sip:hp@10.64.1.5", q="1.0"),)})
    low = register("sip:hp@10.64.9.77", NEW_NAT, "b", 1, "3600")
    low = RegisterRequest(**{**low.__dict__, "contacts": (ContactSpec("sip:hp@10.64.9.77", q="0.5"),)})
    registrar.handle_register(high, None, T0)
    registrar.handle_register(low, None, T0 + 5)
    assert [b.q for b in registrar.lookup("hp-outram-street", T0 + 6)] == [1.0, 0.5]


def test_full_aor_evicts_the_least_recently_registered_not_a_live_short_lived_binding() -> None:
    policy = BindingPolicy(min_expires=60, max_expires=3600, max_contacts=3)

    def req(contact: str, call_id: str, cseq: int, expires: int) -> BindingRequest:
        return BindingRequest(AOR, (ContactSpec(contact),), expires, call_id, cseq, OLD_NAT)

    bindings = update_bindings((), req("sip:stale1@h", "s1", 1, 3600), T0, policy).bindings
    bindings = update_bindings(bindings, req("sip:stale2@h", "s2", 1, 3600), T0 + 1, policy).bindings
    # A softphone behind NAT that refreshes every 50 s with a 60 s expiry: alive and well.
    for i, t in enumerate((T0 + 2, T0 + 52, T0 + 102)):
        bindings = update_bindings(bindings, req("sip:live@h", "live", i + 1, 60), t, policy).bindings
    result = update_bindings(bindings, req("sip:new@h", "new", 1, 3600), T0 + 110, policy)
    assert result.status == 200
    assert sorted(b.contact for b in result.bindings) == ["sip:live@h", "sip:new@h", "sip:stale2@h"]
