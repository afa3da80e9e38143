"""Dialogs (RFC 3261 §12): identity, route set, CSeq rules, in-dialog requests."""

from __future__ import annotations

import pytest

from gateway.sip.dialog import Dialog
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.message import parse_message

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK74bf9\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK74bf9\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=8321234356\r\n"
    b"Call-ID: 3848276298220188511@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_uac_dialog_reverses_record_route_and_targets_contact():
    d = Dialog.from_uac(parse_message(INVITE), parse_message(OK))
    assert d.id == ("3848276298220188511@atlanta.example.com", "9fxced76sl", "8321234356")
    assert d.route_set == ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
    assert d.remote_target == "sip:bob@192.0.2.4"
    d2, bye = d.create_request("BYE")
    assert bye.uri == "sip:bob@192.0.2.4"
    assert bye.cseq == (2, "BYE") and d2.local_cseq == 2 and d.local_cseq == 1
    assert bye.headers.values("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.to.tag == "8321234356" and bye.from_.tag == "9fxced76sl"


def test_uas_dialog_keeps_record_route_order_and_checks_cseq():
    d = Dialog.from_uas(parse_message(INVITE), "8321234356")
    assert d.route_set == ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    assert d.local_uri.endswith(";tag=8321234356")
    bye = parse_message(INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE").replace(b"INVITE sip", b"BYE sip"))
    with pytest.raises(RemoteProtocolError) as exc:
        d.receive_request(bye)
    assert exc.value.status == 500
    later = parse_message(INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: 2 BYE").replace(b"INVITE sip", b"BYE sip"))
    assert d.receive_request(later).remote_cseq == 2


def test_ack_needs_the_invite_cseq():
    d = Dialog.from_uac(parse_message(INVITE), parse_message(OK))
    with pytest.raises(LocalProtocolError):
        d.create_request("ACK")
    same, ack = d.create_request("ACK", cseq=1)
    assert ack.cseq == (1, "ACK") and same is d


def test_dialog_matching_uses_both_tags():
    d = Dialog.from_uas(parse_message(INVITE), "8321234356")
    bye = parse_message(
        INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:bob@biloxi.example.com>;tag=8321234356")
    )
    assert d.matches(bye)
    other = parse_message(INVITE.replace(b"tag=9fxced76sl", b"tag=other"))
    assert not d.matches(other)


def test_response_without_tag_cannot_create_a_dialog():
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uac(parse_message(INVITE), parse_message(OK.replace(b";tag=8321234356", b"")))


def test_loose_routing_flag_is_case_insensitive_and_strict_routes_may_have_display_names():
    """§19.1.1: ``;LR`` is a loose router like ``;lr``; a strict router written with a display name still
    gives a plain URI as the Request-URI."""
    loose = Dialog.from_uac(parse_message(INVITE), parse_message(OK.replace(b";lr>, <sip:p2.example.com;lr>",
                                                                              b";LR>, <sip:p2.example.com;lr>")))
    _, bye = loose.create_request("BYE")
    assert bye.uri == "sip:bob@192.0.2.4"
    strict = Dialog.from_uac(parse_message(INVITE), parse_message(OK.replace(
        b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>",
        b'Record-Route: "Edge" <sip:p1.example.com>')))
    _, bye = strict.create_request("BYE")
    assert bye.uri == "sip:p1.example.com"
    assert bye.headers.values("Route") == ["<sip:bob@192.0.2.4>"]
