"""Issue 4 end to end: anchored media through the real gateway, measured on the wire and in the recording.

Peers: a SIPp help point that plays Debian's sample ``g711a.pcap`` (real speech, PCMA, 30 ms packets, 7 s)
and a SIPp operator UAS that plays a 6 s test signal (band-limited noise, written to a pcap by the test) and
then presses ``*1`` as RFC 4733 events (SIPp's ``dtmf_2833_*.pcap``) or ``*2`` as SIP INFO. The gateway
runs with a one-room test dialplan (council-cctv-1, no prompt, no confirm digit), so the outcome never
depends on the time of day.

Measured with ``tcpdump -i lo`` (the instrument; no Python socket takes part in the call):

* zero loss both ways: every packet the help point sent reaches the operator, in order, with the payload
  unchanged (PCMA operator) or transcoded exactly as the stdlib ``audioop`` would (PCMU operator), and
  the same the other way; the gateway's outgoing streams have one SSRC and no sequence gaps;
* the operator's ``*N`` is not relayed, and the help point receives warning N: what it received after the
  digit, decoded, correlates with ``prompts/warning-N.wav`` (normalised cross-correlation > 0.8);
* the recording: stereo 8 kHz 16-bit; its left channel correlates with what the help point sent and the
  right with what the operator sent, and not crosswise (piece by piece, 0.5 s pieces, median NCC > 0.9 and
  80 % of pieces > 0.8: the recording is aligned by arrival time, so a sender that stalls on a loaded
  machine shifts later pieces by tens of milliseconds); the warning is on the left (heard by the help
  point); its length is the wall-clock time from the 183 to the BYE; the SHA-256 in the journal, in
  ``<file>.sha256`` and of the file agree.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from calls_harness import COUNCIL, SAMPLE_PCAP, sha256_file
from media_harness import (
    PT_OF_CODEC,
    MediaRig,
    best_ncc,
    capture_available,
    decode,
    decode_stream,
    finished,
    match,
    probe_signal,
    read_stereo,
    read_wav_mono,
    sdp_audio_port,
    seq_steps,
    subsequence_matches,
    subsequence_pairs,
    transcode,
    write_rtp_pcap,
)
from sip_harness import ROOT, SippResult

pytestmark = pytest.mark.integration

MEDIA = Path(__file__).resolve().parent / "scenarios" / "media"
SAMPLES = Path("/usr/share/sip-tester")
OPERATOR = COUNCIL[0]
HP_HOLD_MS = 14_000  # help point: 7 s of speech, then listens to the warning, BYE at 14 s
OP_SIGNAL_SECONDS = 6.0
MIN_NCC = 0.8


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    for path in (SAMPLE_PCAP, SAMPLES / "dtmf_2833_star.pcap", SAMPLES / "dtmf_2833_1.pcap"):
        if not path.exists():
            pytest.skip(f"SIPp sample pcap missing: {path} (apt-get install -y sip-tester)")
    why = capture_available()
    if why:
        pytest.skip(why)


def response(result: SippResult, status: int, method: str = "INVITE"):  # type: ignore[no-untyped-def]
    found = [m for m in result.received if m.status == status and m.cseq[1] == method]
    assert found, f"no {status} {method} received:\n{result.explain()}"
    return found[-1]


@pytest.mark.parametrize(
    ("op_codec", "scenario", "warning"),
    [("PCMA", "op_rfc4733.xml", 1), ("PCMU", "op_info.xml", 2)],
    ids=["pcma-rfc4733-star1", "pcmu-transcoded-info-star2"],
)
def test_bridged_call_media(rig: MediaRig, tmp_path: Path, op_codec: str, scenario: str, warning: int) -> None:
    """Relay both ways with zero loss (and transcoding), *N plays warning N to the help point, recording."""
    op_pcap = tmp_path / "op_audio.pcap"
    op_payloads = write_rtp_pcap(op_pcap, probe_signal(OP_SIGNAL_SECONDS), op_codec)
    op = rig.operator(MEDIA / scenario, OPERATOR, codec=op_codec, files={
        "op_audio.pcap": op_pcap,
        "dtmf_star.pcap": SAMPLES / "dtmf_2833_star.pcap",
        "dtmf_1.pcap": SAMPLES / "dtmf_2833_1.pcap",
    })
    hp = rig.help_point(MEDIA / "hp_media.xml", hold_ms=HP_HOLD_MS)
    hp_res = finished(hp.wait(60), "help point", rig)
    op_res = finished(op.wait(20), "operator", rig)
    cap = rig.capture
    cap.stop()
    assert not cap.kernel_dropped, f"tcpdump lost {cap.kernel_dropped} packets: the measurement is void"

    act = rig.gw.wait_activations(1)
    assert len(act) == 1, f"activations: {act}\n{rig.gw.log_tail()}"
    act = act[0]
    assert act["outcome"] == "answered" and act["answered_by"] == OPERATOR and act["ended_by"] == "hp", act

    # Who talks to whom: the gateway's ports come from the SDP each peer received.
    gw_hp = sdp_audio_port(response(hp_res, 200).body)
    invites = [m for m in op_res.received if m.method == "INVITE"]
    assert invites, op_res.explain()
    gw_op = sdp_audio_port(invites[0].body)
    hp_sent = [p for p in cap.stream(hp.media_port, gw_hp) if p.pt == 8]
    to_op = cap.stream(gw_op, op.media_port)
    op_sent_all = cap.stream(op.media_port, gw_op)
    op_sent = [p for p in op_sent_all if p.pt == PT_OF_CODEC[op_codec]]
    to_hp = cap.stream(gw_hp, hp.media_port)

    # Offer/answer: the help point got PCMA (its first choice), the operator was offered both laws.
    assert b"RTP/AVP 8 101" in response(hp_res, 200).body, response(hp_res, 200).text
    offer = invites[0].body.decode()
    assert "a=rtpmap:0 PCMU/8000" in offer and "a=rtpmap:8 PCMA/8000" in offer, offer

    # The peers really sent what they were given.
    assert len(hp_sent) == 236, f"SIPp sent {len(hp_sent)} of the 236 packets of g711a.pcap"
    assert [p.payload for p in op_sent] == op_payloads, "the operator's pcap was not sent as written"
    dtmf_in = [p for p in op_sent_all if p.pt == 101]
    assert len(dtmf_in) == (20 if scenario == "op_rfc4733.xml" else 0), len(dtmf_in)

    # Zero loss, help point -> operator: every payload, in order, in the operator's codec.
    op_pt = PT_OF_CODEC[op_codec]
    assert {p.pt for p in to_op} <= {op_pt}, f"gateway sent PTs {sorted({p.pt for p in to_op})} to the operator"
    expected = [transcode(p.payload, "PCMA", op_codec) for p in hp_sent]
    relayed = [p.payload for p in to_op if len(p.payload) == 240]  # relayed packets keep the 30 ms ptime
    matched = subsequence_matches(expected, relayed)
    assert matched == len(hp_sent) == len(relayed), (
        f"help point -> operator: {len(hp_sent)} sent, {len(relayed)} relayed, {matched} matched in order")
    # ... and operator -> help point, transcoded back to the help point's PCMA.
    assert {p.pt for p in to_hp} <= {8}, f"gateway sent PTs {sorted({p.pt for p in to_hp})} to the help point"
    expected = [transcode(p.payload, op_codec, "PCMA") for p in op_sent]
    matched = subsequence_matches(expected, [p.payload for p in to_hp])
    assert matched == len(op_sent), f"operator -> help point: {len(op_sent)} sent, {matched} relayed in order"
    # The gateway's own streams: one SSRC each, no sequence gap (nothing it sent was skipped).
    for name, stream in (("to operator", to_op), ("to help point", to_hp)):
        assert len({p.ssrc for p in stream}) == 1, f"{name}: SSRCs {sorted({p.ssrc for p in stream})}"
        steps = seq_steps(stream)
        assert set(steps) == {1}, f"{name}: sequence steps {sorted(set(steps))}"

    # Added latency through the relay (measured on the wire; reported, not asserted: shared machine).
    pairs = subsequence_pairs([transcode(p.payload, "PCMA", op_codec) for p in hp_sent], [p.payload for p in to_op])
    delays = sorted((to_op[j].t - hp_sent[i].t) * 1000 for i, j in pairs)
    print(f"relay hp->op ({op_codec}) on the wire, ms: p50 {statistics.median(delays):.3f} "
          f"p99 {delays[int(len(delays) * 0.99) - 1]:.3f} max {delays[-1]:.3f} over {len(delays)} packets")

    # *N: not relayed to the help point, and the help point hears warning N.
    warning_wav = read_wav_mono(ROOT / "prompts" / f"warning-{warning}.wav")
    events = [e for e in act["timeline"] if e["event"] == "warning"]
    assert events and events[0]["number"] == warning and events[0]["by"] == "operator-dtmf", act["timeline"]
    pressed_at = op_sent[-1].t  # the digits come after the operator's audio
    heard = decode_stream([p for p in to_hp if p.t >= pressed_at])
    score, lag = best_ncc(heard, warning_wav)
    assert score > MIN_NCC, f"help point's audio after *{warning} vs warning-{warning}.wav: NCC {score:.3f}"
    played = len([p for p in to_hp if p.t >= pressed_at and p.pt == 8])
    assert played * 160 >= len(warning_wav) // 2 * 0.95, f"only {played} packets after *{warning}"

    # The recording: journal line, hashes, format, channels, length.
    rec = rig.gw.wait_recording(act["activation_id"])
    assert rec is not None, f"no recording journalled: {rig.gw.journal_lines()}"
    path = Path(rec["path"])
    digest = sha256_file(path)
    assert rec["sha256"] == digest, "journal sha256 != the file's SHA-256"
    side = Path(str(path) + ".sha256")
    assert side.is_file(), f"no {side.name} beside the recording"
    assert side.read_text().split()[0].lower() == digest, f"{side.name}: {side.read_text()!r} != {digest}"
    wav = read_stereo(path)
    assert (wav.channels, wav.rate, wav.width) == (2, 8000, 2), (wav.channels, wav.rate, wav.width)

    # Channels: each piece of what a side sent is found in its channel (pieces, because the recording is
    # aligned by arrival time and SIPp's sender stalls on a loaded machine), and not in the other channel.
    hp_signal = b"".join(decode(p.payload, "PCMA") for p in hp_sent)
    op_signal = b"".join(decode(p.payload, op_codec) for p in op_sent)
    left_hp, right_op = match(wav.left, hp_signal), match(wav.right, op_signal)
    left_op, right_hp = match(wav.left, op_signal), match(wav.right, hp_signal)
    left_warning = match(wav.left, warning_wav)
    print(f"recording left~hp: {left_hp}\nrecording right~op: {right_op}\nrecording left~op: {left_op}\n"
          f"recording right~hp: {right_hp}\nrecording left~warning: {left_warning}\nwarning heard NCC {score:.3f}")
    for name, m in (("left channel vs what the help point sent", left_hp),
                    ("right channel vs what the operator sent", right_op),
                    (f"left channel vs warning-{warning} (heard by the help point)", left_warning)):
        assert m.median > 0.9 and m.fraction_above(MIN_NCC) >= 0.8, f"{name}: {m}"
    assert left_op.median < 0.3 and right_hp.median < 0.3, f"channels mixed or swapped: {left_op}; {right_hp}"

    sip = rig.capture.sip_start_lines(rig.gw.sip_port)
    t183 = next(t for t, src, dst, line in sip if dst == hp.port and line.startswith("SIP/2.0 183"))
    tbye = next(t for t, src, dst, line in sip if src == hp.port and line.startswith("BYE "))
    assert abs(wav.seconds - (tbye - t183)) <= 0.5, (
        f"recording {wav.seconds:.2f} s, call from 183 to BYE {tbye - t183:.2f} s")
    assert abs(rec["duration"] - wav.seconds) <= 0.05, (rec["duration"], wav.seconds)
