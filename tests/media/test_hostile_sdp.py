"""Offers and answers with values out of range: a 488, or the bad attribute ignored, never a crash.

Each body below is a real peer's (SIPp 3.6 uac, in test_media_sdp.py) with one value changed.  Before
the checks, these reached the media plane and stopped the clock every call shares (struct.error from a
payload type > 127, OverflowError from a port > 65535, a blocking DNS lookup from a hostname), or made
``answer()`` raise ValueError/OverflowError, which the call layer does not turn into a 488.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.media import (
    NegotiatedMedia,
    SdpError,
    SdpNegotiationError,
    SdpParseError,
    accept_answer,
    answer,
    build_offer,
)

# SIPp 3.6 default uac offer, plus a=rtpmap/a=rtcp/a=ptime lines to vary.
OFFER = (b"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         b"m=audio 6000 RTP/AVP 0\r\n")


def offer_with(old: bytes, new: bytes, extra: bytes = b"") -> bytes:
    assert old in OFFER
    return OFFER.replace(old, new) + extra


def negotiate(body: bytes, side: str, local: str = "192.0.2.1") -> NegotiatedMedia:
    """``body`` as a help point's offer (answer()) or an operator's answer to our offer (accept_answer()),
    with our media on ``local``."""
    if side == "offer":
        return answer(body, local, 30000, session_id=1)[1]
    return accept_answer(build_offer(local, 40000, session_id=1), body)


SIDES = pytest.mark.parametrize("side", ["offer", "answer"])

# (id, body, what the error message must name)
REJECTED = [
    ("port-70000", offer_with(b"audio 6000", b"audio 70000"), "port 70000"),
    ("port-65536", offer_with(b"audio 6000", b"audio 65536"), "port 65536"),
    ("address-0xff", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 \xff"), r"'\udcff' is not an IP4 address"),
    ("address-hostname", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 pbx.example.com"),
     "'pbx.example.com' is not an IP4 address"),
    ("address-leading-zero", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 127.0.0.01"), "'127.0.0.01'"),
    ("ip6-in-ip4", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP4 ::1"), "'::1' is not an IP4 address"),
    ("ip4-in-ip6", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP6 127.0.0.1"),
     "'127.0.0.1' is not an IP6 address"),
    ("ip6-zone", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IP6 fe80::1%eth0"), "'fe80::1%eth0'"),
    ("addrtype", offer_with(b"c=IN IP4 127.0.0.1", b"c=IN IPX 127.0.0.1"), "not IN IP4 or IN IP6"),
    ("nettype", offer_with(b"c=IN IP4 127.0.0.1", b"c=ATM IP4 127.0.0.1"), "not IN IP4 or IN IP6"),
]


@SIDES
@pytest.mark.parametrize(("body", "named"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_unusable_port_or_address_is_488_naming_the_value(body: bytes, named: str, side: str) -> None:
    with pytest.raises(SdpNegotiationError) as info:
        negotiate(body, side)
    assert (info.value.status, info.value.reason) == (488, "Not Acceptable Here")
    assert named in str(info.value)


# Numbers that str.isdigit() takes and int() refuses, or too long for int(): the grammar rejects them.
UNPARSABLE = [
    ("port-superscript", offer_with(b"audio 6000", "audio ²".encode())),
    ("port-arabic-indic", offer_with(b"audio 6000", "audio ٦٠٠٠".encode())),
    ("port-5000-digits", offer_with(b"audio 6000", b"audio " + b"9" * 5000)),
    ("origin-superscript", offer_with(b"user1 53655765", "user1 ²".encode())),
]


@SIDES
@pytest.mark.parametrize("body", [u[1] for u in UNPARSABLE], ids=[u[0] for u in UNPARSABLE])
def test_non_ascii_or_huge_numbers_are_parse_errors(body: bytes, side: str) -> None:
    with pytest.raises(SdpParseError) as info:
        negotiate(body, side)
    assert info.value.status == 488


def test_payload_type_over_127_is_never_chosen() -> None:
    # m=audio 4000 RTP/AVP 300 with a=rtpmap:300 PCMU/8000: the only PCMU is no payload type.
    body = offer_with(b"RTP/AVP 0", b"RTP/AVP 300", b"a=rtpmap:300 PCMU/8000\r\n")
    with pytest.raises(SdpNegotiationError) as info:
        answer(body, "192.0.2.1", 30000, session_id=1)
    assert "not RTP payload types 0-127: ['300']" in str(info.value)


@pytest.mark.parametrize("bad", ["300", "128", "²", "-1", "0x8"])
def test_formats_that_are_no_payload_type_are_skipped(bad: str) -> None:
    body = offer_with(b"RTP/AVP 0", f"RTP/AVP {bad} 8 {bad}".encode(),
                      f"a=rtpmap:{bad} PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n".encode())
    sdp, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert (negotiated.codec, negotiated.payload_type) == ("PCMA", 8)
    assert sdp.media[0].formats == ("8",)


def test_telephone_event_on_a_payload_type_over_127_is_not_negotiated() -> None:
    body = offer_with(b"RTP/AVP 0", b"RTP/AVP 0 300", b"a=rtpmap:300 telephone-event/8000\r\n")
    sdp, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert negotiated.telephone_event is None and sdp.media[0].formats == ("0",)
    ours = build_offer("192.0.2.1", 40000, session_id=1)
    assert accept_answer(ours, body).telephone_event is None  # 300 was not offered


@pytest.mark.parametrize("rate", ["²", "8000x", "9" * 5000])
def test_rtpmap_clock_rate_that_is_no_number_is_ignored(rate: str) -> None:
    body = offer_with(b"RTP/AVP 0", b"RTP/AVP 96 0", f"a=rtpmap:96 PCMU/{rate}\r\n".encode())
    assert answer(body, "192.0.2.1", 30000, session_id=1)[1].payload_type == 0


@SIDES
@pytest.mark.parametrize("value", ["70001", "65536", "0", "²", "abc", "", " ", "-5", "9" * 5000])
def test_unusable_rtcp_port_is_ignored(value: str, side: str) -> None:
    negotiated = negotiate(OFFER + f"a=rtcp:{value}\r\n".encode(), side)
    assert negotiated.remote_rtcp_port is None and negotiated.rtcp_port == 6001


@SIDES
def test_rtcp_port_with_address_is_kept(side: str) -> None:
    negotiated = negotiate(OFFER + b"a=rtcp:53020 IN IP4 127.0.0.1\r\n", side)
    assert negotiated.rtcp_port == 53020


@SIDES
def test_rtp_on_65535_without_a_rtcp_has_no_rtcp_port(side: str) -> None:
    negotiated = negotiate(offer_with(b"audio 6000", b"audio 65535"), side)
    assert (negotiated.remote_port, negotiated.rtcp_port) == (65535, None)
    assert NegotiatedMedia("127.0.0.1", 65535, "PCMU", 0, remote_rtcp_port=7000).rtcp_port == 7000


@SIDES
@pytest.mark.parametrize(("value", "ptime"), [
    ("inf", 20), ("nan", 20), ("-inf", 20), ("1e400", 20), ("²", 20), ("0", 20), ("-20", 20), ("", 20),
    ("99999", 20), ("9" * 5000, 20), ("20.²", 20), ("30", 30), ("30.5", 30), ("1000", 1000), ("1001", 20),
])
def test_unusable_ptime_falls_back_to_20(value: str, ptime: int, side: str) -> None:
    assert negotiate(OFFER + f"a=ptime:{value}\r\n".encode(), side).ptime == ptime


@SIDES
@pytest.mark.parametrize(("c_line", "address", "on_hold"), [
    (b"c=IN IP4 0.0.0.0", "0.0.0.0", True),
    (b"c=IN IP6 ::", "::", True),
    (b"c=IN IP6 0:0:0:0:0:0:0:0", "::", True),
    (b"c=IN IP6 2001:DB8:0:0::1", "2001:db8::1", False),  # as recvfrom will give the source
])
def test_address_literals_are_kept_canonical(c_line: bytes, address: str, on_hold: bool, side: str) -> None:
    local = "2001:db8::100" if b"IP6" in c_line else "192.0.2.1"
    negotiated = negotiate(offer_with(b"c=IN IP4 127.0.0.1", c_line), side, local)
    assert (negotiated.remote_address, negotiated.on_hold) == (address, on_hold)


@SIDES
@pytest.mark.parametrize(("c_line", "local", "named"), [
    (b"c=IN IP6 2001:db8::1", "192.0.2.1", "2001:db8::1 is IPv6, and this gateway's media is on IPv4"),
    (b"c=IN IP4 198.51.100.7", "2001:db8::100", "198.51.100.7 is IPv4, and this gateway's media is on IPv6"),
])
def test_an_address_of_the_other_ip_version_is_488(c_line: bytes, local: str, named: str, side: str) -> None:
    # Our one media socket could never send to it: refuse with a reason, not a call that sends nothing.
    with pytest.raises(SdpNegotiationError, match=named):
        negotiate(offer_with(b"c=IN IP4 127.0.0.1", c_line), side, local)


@SIDES
@pytest.mark.parametrize(("c_line", "local"), [
    (b"c=IN IP4 224.2.1.1/127", "192.0.2.1"),
    (b"c=IN IP4 239.255.255.250", "192.0.2.1"),
    (b"c=IN IP4 255.255.255.255", "192.0.2.1"),
    (b"c=IN IP6 ff02::1", "2001:db8::100"),
])
def test_a_group_or_broadcast_address_is_488(c_line: bytes, local: str, side: str) -> None:
    # A call has one peer: a hostile SDP must not aim our keep-alives and relayed audio at a whole network.
    with pytest.raises(SdpNegotiationError, match="is not a unicast address"):
        negotiate(offer_with(b"c=IN IP4 127.0.0.1", c_line), side, local)


@SIDES
@pytest.mark.parametrize(("c_line", "local"), [(b"c=IN IP6 ::", "192.0.2.1"), (b"c=IN IP4 0.0.0.0", "2001:db8::1")])
def test_a_hold_address_of_the_other_ip_version_is_fine(c_line: bytes, local: str, side: str) -> None:
    assert negotiate(offer_with(b"c=IN IP4 127.0.0.1", c_line), side, local).on_hold


# -- property: whatever the values, answer() gives SdpError or media the media plane can use -------------
_NUMBERS = st.one_of(st.integers(-5, 70000).map(str), st.sampled_from(
    ["²", "٣", "", "inf", "nan", "1e400", "0x10", "9" * 5000, "65535", "65536", "127", "128", "300", "20.5"]))
_ADDRESSES = st.sampled_from(["127.0.0.1", "0.0.0.0", "::1", "::", "\udcff", "pbx.example.com", "1.2.3",
                              "fe80::1%eth0", "2001:db8::1", "300.1.1.1", "224.2.1.1/127", ""])


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(port=_NUMBERS, pt=_NUMBERS, te=_NUMBERS, rtcp=_NUMBERS, ptime=_NUMBERS, address=_ADDRESSES,
       addrtype=st.sampled_from(["IP4", "IP6", "XX"]), codec=st.sampled_from(["PCMU", "PCMA", "opus"]),
       side=st.sampled_from(["offer", "answer"]))
def test_any_values_give_sdp_error_or_usable_media(port: str, pt: str, te: str, rtcp: str, ptime: str,
                                                    address: str, addrtype: str, codec: str,
                                                    side: str) -> None:
    body = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN {addrtype} {address}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP {pt} 0 {te}\r\na=rtpmap:{pt} {codec}/8000\r\n"
            f"a=rtpmap:{te} telephone-event/8000\r\na=rtcp:{rtcp}\r\na=ptime:{ptime}\r\n"
            ).encode("utf-8", "surrogateescape")
    try:
        m = negotiate(body, side)
    except SdpError as exc:
        assert exc.status == 488
        return
    assert 0 <= m.remote_port <= 65535 and 0 <= m.payload_type <= 127
    assert m.telephone_event is None or 0 <= m.telephone_event <= 127
    assert m.rtcp_port is None or 1 <= m.rtcp_port <= 65535
    assert 1 <= m.ptime <= 1000
    assert str(ipaddress.ip_address(m.remote_address)) == m.remote_address
