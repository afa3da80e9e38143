"""SDP parsing/serialising and RFC 3264 offer/answer against offers real peers send."""

from __future__ import annotations

import pytest

from gateway.media import (
    MediaError,
    NegotiatedMedia,
    SdpNegotiationError,
    SdpParseError,
    accept_answer,
    answer,
    build_offer,
    parse_sdp,
)


def crlf(text: str) -> bytes:
    return ("\r\n".join(line.strip() for line in text.strip().splitlines()) + "\r\n").encode()


# baresip 1.0.0 with opus loaded before g711 (its module order decides codec order)
BARESIP = crlf("""
v=0
o=- 1803593283 2406013345 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10584 RTP/AVP 96 0 8 101
b=AS:100
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=ssrc:2104914434 cname:0a1b2c3d-4e5f
a=rtcp-rsize
a=ptime:20
""")

# Linphone 5.x: three telephone-event rates, the 8 kHz one is pt 100
LINPHONE = crlf("""
v=0
o=operator 3215 1826 IN IP4 192.168.1.23
s=Talk
c=IN IP4 192.168.1.23
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 8 0 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
""")

# PJSIP 2.14 (pjsua, as in many intercoms): media-level c=, session b= before t=, a=rtcp
PJSIP = crlf("""
v=0
o=- 3905683208 3905683208 IN IP4 10.20.0.7
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 96 97 3 0 8 9 120 121
c=IN IP4 10.20.0.7
b=TIAS:64000
a=rtcp:4011 IN IP4 10.20.0.7
a=sendrecv
a=rtpmap:96 speex/16000
a=rtpmap:97 speex/8000
a=rtpmap:3 GSM/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:120 telephone-event/16000
a=fmtp:120 0-16
a=rtpmap:121 telephone-event/8000
a=fmtp:121 0-16
a=ssrc:1497528463 cname:3c6e0c9a5e8b4d2c
""")

# SIPp 3.6 uac_pcap scenario (the help point in integration tests)
SIPP_PCAP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11,16
""")

# SIPp 3.6 default uac scenario: static PCMU, no rtpmap needed but present
SIPP_UAC = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
""")


@pytest.mark.parametrize("body", [BARESIP, LINPHONE, PJSIP, SIPP_PCAP, SIPP_UAC], ids=["baresip", "linphone", "pjsip",
                                                                                      "sipp-pcap", "sipp-uac"])
def test_peer_bodies_round_trip_byte_exact(body: bytes) -> None:
    assert bytes(parse_sdp(body)) == body


# (offer, supported, expected NegotiatedMedia, answer m-line)
CASES = [
    ("baresip", BARESIP, ("PCMU", "PCMA"),
     NegotiatedMedia("127.0.0.1", 10584, "PCMU", 0, 8000, 20, 101, "sendrecv"), "m=audio 30000 RTP/AVP 0 101"),
    ("baresip-pcma-only", BARESIP, ("PCMA",),
     NegotiatedMedia("127.0.0.1", 10584, "PCMA", 8, 8000, 20, 101, "sendrecv"), "m=audio 30000 RTP/AVP 8 101"),
    ("linphone", LINPHONE, ("PCMU", "PCMA"),
     NegotiatedMedia("192.168.1.23", 7078, "PCMA", 8, 8000, 20, 100, "sendrecv"), "m=audio 30000 RTP/AVP 8 100"),
    ("pjsip", PJSIP, ("PCMU", "PCMA"),
     NegotiatedMedia("10.20.0.7", 4000, "PCMU", 0, 8000, 20, 121, "sendrecv", 4011), "m=audio 30000 RTP/AVP 0 121"),
    ("sipp-pcap", SIPP_PCAP, ("PCMU", "PCMA"),
     NegotiatedMedia("127.0.0.1", 6000, "PCMA", 8, 8000, 20, 101, "sendrecv"), "m=audio 30000 RTP/AVP 8 101"),
    ("sipp-uac", SIPP_UAC, ("PCMU", "PCMA"),
     NegotiatedMedia("127.0.0.1", 6000, "PCMU", 0, 8000, 20, None, "sendrecv"), "m=audio 30000 RTP/AVP 0"),
]


@pytest.mark.parametrize(("offer", "supported", "expected", "mline"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answer_to_real_peers(offer: bytes, supported: tuple[str, ...], expected: NegotiatedMedia, mline: str) -> None:
    sdp, negotiated = answer(offer, "192.0.2.1", 30000, supported, session_id=7, version=1)
    assert negotiated == expected
    text = bytes(sdp).decode()
    assert mline + "\r\n" in text
    assert "o=gateway 7 1 IN IP4 192.0.2.1\r\n" in text
    assert "c=IN IP4 192.0.2.1\r\n" in text
    assert "a=ptime:20\r\n" in text and text.endswith("a=sendrecv\r\n")
    if expected.telephone_event is not None:
        assert f"a=rtpmap:{expected.telephone_event} telephone-event/8000\r\n" in text
    # the answer is itself valid SDP and the offerer can accept it
    assert parse_sdp(bytes(sdp)) == sdp


def test_answer_keeps_offerers_fmtp_for_telephone_event() -> None:
    sdp, _ = answer(SIPP_PCAP, "192.0.2.1", 30000, session_id=1)
    assert "a=fmtp:101 0-11,16\r\n" in bytes(sdp).decode()


def test_without_telephone_event_support() -> None:
    sdp, negotiated = answer(BARESIP, "192.0.2.1", 30000, telephone_event=False, session_id=1)
    assert negotiated.telephone_event is None
    assert "telephone-event" not in bytes(sdp).decode()


def _with(body: bytes, old: str, new: str) -> bytes:
    assert old.encode() in body
    return body.replace(old.encode(), new.encode())


@pytest.mark.parametrize(("offer_direction", "ours"), [("sendrecv", "sendrecv"), ("sendonly", "recvonly"),
                                                      ("recvonly", "sendonly"), ("inactive", "inactive")])
def test_direction_answer_rules(offer_direction: str, ours: str) -> None:
    body = _with(BARESIP, "a=sendrecv", f"a={offer_direction}")
    sdp, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert negotiated.direction == ours
    assert sdp.media[0].direction == ours
    assert negotiated.sends == (ours in ("sendrecv", "sendonly"))


def test_session_level_direction_applies() -> None:
    body = _with(SIPP_PCAP, "t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    assert answer(body, "192.0.2.1", 1000, session_id=1)[1].direction == "recvonly"


def test_legacy_hold_with_zero_address() -> None:
    body = _with(SIPP_PCAP, "c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    _, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert negotiated.direction == "recvonly"
    assert negotiated.on_hold and not negotiated.sends


def test_video_stream_rejected_audio_taken() -> None:
    body = BARESIP + crlf("""
        m=video 10586 RTP/AVP 96
        a=rtpmap:96 H264/90000
    """)
    sdp, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert negotiated.codec == "PCMU"
    assert [m.port for m in sdp.media] == [30000, 0]
    assert bytes(sdp).decode().endswith("m=video 0 RTP/AVP 96\r\n")


def test_disabled_first_audio_stream_uses_second() -> None:
    body = crlf("""
        v=0
        o=- 1 1 IN IP4 10.0.0.9
        s=-
        c=IN IP4 10.0.0.9
        t=0 0
        m=audio 0 RTP/AVP 0
        m=audio 5004 RTP/AVP 8
    """)
    sdp, negotiated = answer(body, "192.0.2.1", 30000, session_id=1)
    assert (negotiated.remote_port, negotiated.codec) == (5004, "PCMA")
    assert [m.port for m in sdp.media] == [0, 30000]


@pytest.mark.parametrize("body", [
    _with(SIPP_UAC, "RTP/AVP 0", "RTP/AVP 18"),                        # G.729 only
    _with(SIPP_UAC, "m=audio 6000 RTP/AVP 0", "m=video 6000 RTP/AVP 96"),  # no audio
    _with(SIPP_UAC, "RTP/AVP 0", "RTP/SAVP 0"),                        # SRTP only
    _with(SIPP_UAC, "m=audio 6000", "m=audio 0"),                      # audio disabled
    _with(LINPHONE, "96 97 98 8 0 18 101 99 100", "96 97 98 18 101 99 100"),
], ids=["g729-only", "video-only", "srtp-only", "port-zero", "linphone-no-g711"])
def test_not_acceptable_is_488(body: bytes) -> None:
    with pytest.raises(SdpNegotiationError) as info:
        answer(body, "192.0.2.1", 30000, session_id=1)
    assert (info.value.status, info.value.reason) == (488, "Not Acceptable Here")
    assert isinstance(info.value, MediaError)


def test_no_connection_line_is_488() -> None:
    body = _with(SIPP_UAC, "c=IN IP4 127.0.0.1\r\n", "")
    with pytest.raises(SdpNegotiationError):
        answer(body, "192.0.2.1", 30000, session_id=1)


@pytest.mark.parametrize("body", [b"", b"hello", b"v=0\r\ns=-\r\n", b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
                                  crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nm=audio abc RTP/AVP 0")])
def test_malformed_raises_parse_error(body: bytes) -> None:
    with pytest.raises(SdpParseError) as info:
        parse_sdp(body)
    assert info.value.status == 488


def test_lf_only_and_unknown_lines_kept() -> None:
    sd = parse_sdp(b"v=0\no=- 1 2 IN IP4 10.0.0.1\ns=x\nc=IN IP4 10.0.0.1\nt=0 0\nz=0 0\nm=audio 9 RTP/AVP 0\n"
                   b"i=voice\nk=prompt\na=x-custom:1 2\na=ptime:30\n")
    assert sd.lines == (("t", "0 0"), ("z", "0 0"))
    m = sd.media[0]
    assert m.lines == (("i", "voice"), ("k", "prompt"))
    assert m.attribute("x-custom") == "1 2" and m.ptime == 30
    assert b"a=x-custom:1 2\r\n" in bytes(sd)


def test_build_offer_exact_bytes() -> None:
    offer = build_offer("192.0.2.1", 40000, session_id=42, version=3)
    assert bytes(offer) == crlf("""
        v=0
        o=gateway 42 3 IN IP4 192.0.2.1
        s=-
        c=IN IP4 192.0.2.1
        t=0 0
        m=audio 40000 RTP/AVP 0 8 101
        a=rtpmap:0 PCMU/8000
        a=rtpmap:8 PCMA/8000
        a=rtpmap:101 telephone-event/8000
        a=fmtp:101 0-16
        a=ptime:20
        a=sendrecv
    """)


def test_build_offer_ipv6_hold_pcma_first() -> None:
    offer = build_offer("2001:db8::1", 40000, codecs=("PCMA",), telephone_event=False, ptime=30, session_id=1,
                        direction="sendonly")
    text = bytes(offer).decode()
    assert "c=IN IP6 2001:db8::1\r\n" in text and "m=audio 40000 RTP/AVP 8\r\n" in text
    assert "a=ptime:30\r\na=sendonly\r\n" in text


def test_offer_answer_with_ourselves_both_ways() -> None:
    offer = build_offer("192.0.2.1", 40000, codecs=("PCMA", "PCMU"), session_id=1)
    sdp, theirs = answer(bytes(offer), "198.51.100.2", 50000, ("PCMU", "PCMA"), session_id=2)
    ours = accept_answer(offer, bytes(sdp))
    assert theirs == NegotiatedMedia("192.0.2.1", 40000, "PCMA", 8, 8000, 20, 101, "sendrecv")
    assert ours == NegotiatedMedia("198.51.100.2", 50000, "PCMA", 8, 8000, 20, 101, "sendrecv")


ANSWERS = [
    ("linphone-pcmu", crlf("""
        v=0
        o=operator 1 2 IN IP4 192.168.1.23
        s=Talk
        c=IN IP4 192.168.1.23
        t=0 0
        m=audio 7078 RTP/AVP 0 101
        a=rtpmap:101 telephone-event/8000
        a=rtcp:7079
        a=recvonly
    """), NegotiatedMedia("192.168.1.23", 7078, "PCMU", 0, 8000, 20, 101, "sendonly", 7079)),
    ("baresip-pcma-no-te", crlf("""
        v=0
        o=- 1 2 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio 10000 RTP/AVP 8
        a=rtpmap:8 PCMA/8000
        a=ptime:30
        a=sendrecv
    """), NegotiatedMedia("127.0.0.1", 10000, "PCMA", 8, 8000, 30, None, "sendrecv")),
]


@pytest.mark.parametrize(("body", "expected"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_accept_answer(body: bytes, expected: NegotiatedMedia) -> None:
    offer = build_offer("192.0.2.1", 40000, session_id=1)
    assert accept_answer(offer, body) == expected


@pytest.mark.parametrize("body", [
    crlf("v=0\no=- 1 2 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 0 RTP/AVP 0"),
    crlf("v=0\no=- 1 2 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 5000 RTP/AVP 18"),
    crlf("v=0\no=- 1 2 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0"),
], ids=["rejected", "codec-not-offered", "no-m-line"])
def test_accept_answer_errors(body: bytes) -> None:
    offer = build_offer("192.0.2.1", 40000, session_id=1)
    with pytest.raises(SdpNegotiationError):
        accept_answer(offer, body)
