"""Issue 6 end to end: a silent help-point call stays up, and both phones keep getting a 20 ms stream.

The help point (SIPp) sends 3 s of real speech (a slice of Debian's ``g711a.pcap``), then *no RTP at all*
for 45.5 s, then the same 3 s again, and hangs up 4 s later. The operator (an independent SIPp UAS) answers
and stays on mute (sends no RTP) until the gateway's BYE. Measured with ``tcpdump -i lo``:

* the operator's RTP port received a packet at least every 60 ms from the bridge to the help point's BYE
  (keep-alive silence while the help point is quiet, the relayed speech otherwise), one SSRC, no sequence
  gap, timestamps that follow the wall clock across the switches; the same towards the help point, whose
  operator is muted the whole call;
* every packet the help point sent was relayed;
* the call is still up at the end: nobody received a BYE before the help point sent its own, the
  activation ended by the help point's BYE, and nothing in the timeline ends it for silence;
* the timeline has ``silence`` then ``audio-resumed`` for side ``hp`` and the activation ``"silent": true``;
* the recording is as long as the call (183 to BYE, within 0.5 s) and shows the quiet at the right time:
  the second burst sits in the left channel where it happened on the wall clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from calls_harness import COUNCIL, SAMPLE_PCAP
from media_harness import (
    RATE,
    MediaRig,
    Rtp,
    capture_available,
    decode,
    finished,
    gaps,
    match,
    read_stereo,
    rms,
    sdp_audio_port,
    seq_steps,
    slice_pcap,
    subsequence_matches,
)

pytestmark = pytest.mark.integration

MEDIA = Path(__file__).resolve().parent / "scenarios" / "media"
OPERATOR = COUNCIL[0]
BURST_FIRST, BURST_PACKETS = 70, 100  # 3 s of speech from the sample (30 ms packets)
QUIET_AT_LEAST = 45.0
MAX_GAP = 0.060


@pytest.fixture(scope="module", autouse=True)
def _need_tools() -> None:
    if not SAMPLE_PCAP.exists():
        pytest.skip(f"SIPp sample pcap missing: {SAMPLE_PCAP} (apt-get install -y sip-tester)")
    why = capture_available()
    if why:
        pytest.skip(why)


def check_stream(name: str, stream: list[Rtp], start: float, end: float) -> str:
    """Assert a packet every <= 60 ms in [start, end], one SSRC, no sequence gap, timestamps on the wall clock."""
    window = [p for p in stream if start <= p.t <= end]
    assert window, f"{name}: no packet between the bridge and the BYE"
    times = [start, *[p.t for p in window], end]
    worst = max(gaps(times))
    at = gaps(times).index(worst)
    assert worst <= MAX_GAP, (
        f"{name}: {worst * 1000:.1f} ms without a packet at +{times[at] - start:.3f} s "
        f"({len(window)} packets over {end - start:.1f} s)")
    assert len({p.ssrc for p in window}) == 1, f"{name}: SSRCs {sorted({p.ssrc for p in window})}"
    steps = seq_steps(window)
    assert set(steps) == {1}, f"{name}: sequence steps {sorted(set(steps))}"
    # RTP time follows the wall clock: per packet within 60 ms, and no drift over the call.
    drift = [((b.ts - a.ts) & 0xFFFFFFFF) / RATE - (b.t - a.t) for a, b in zip(window, window[1:], strict=False)]
    jump = max(drift, key=abs)
    assert abs(jump) <= MAX_GAP, f"{name}: timestamp jumps {jump * 1000:+.1f} ms against the wall clock"
    total = ((window[-1].ts - window[0].ts) & 0xFFFFFFFF) / RATE - (window[-1].t - window[0].t)
    assert abs(total) <= 0.1, f"{name}: RTP clock drifts {total * 1000:+.1f} ms over the call"
    return (f"{name}: {len(window)} packets over {end - start:.1f} s, largest gap {worst * 1000:.1f} ms, "
            f"largest timestamp step error {jump * 1000:+.1f} ms, drift {total * 1000:+.1f} ms")


def test_silent_help_point_call_stays_up(rig: MediaRig, tmp_path: Path) -> None:
    burst = tmp_path / "burst.pcap"
    slice_pcap(SAMPLE_PCAP, burst, BURST_FIRST, BURST_PACKETS)
    op = rig.operator(MEDIA / "op_mute.xml", OPERATOR, codec="PCMA", files={}, timeout=100)
    hp = rig.help_point(MEDIA / "hp_silent.xml", files={"burst.pcap": burst}, timeout=100)
    hp_res = finished(hp.wait(100), "help point", rig)
    op_res = finished(op.wait(20), "operator", rig)
    cap = rig.capture
    cap.stop()
    assert not cap.kernel_dropped, f"tcpdump lost {cap.kernel_dropped} packets: the measurement is void"

    gw_hp = sdp_audio_port(next(m for m in hp_res.received if m.status == 200 and m.cseq[1] == "INVITE").body)
    gw_op = sdp_audio_port(next(m for m in op_res.received if m.method == "INVITE").body)
    hp_sent = cap.stream(hp.media_port, gw_hp)
    to_op = cap.stream(gw_op, op.media_port)
    to_hp = cap.stream(gw_hp, hp.media_port)
    assert not cap.stream(op.media_port, gw_op), "the muted operator sent RTP"

    # The help point did what the test says: two bursts with at least 45 s of nothing between them.
    assert len(hp_sent) == 2 * BURST_PACKETS, f"help point sent {len(hp_sent)} packets"
    first_end, second_start = hp_sent[BURST_PACKETS - 1].t, hp_sent[BURST_PACKETS].t
    assert second_start - first_end >= QUIET_AT_LEAST, f"quiet only {second_start - first_end:.1f} s"

    # SIP on the wire: 183, 200 and ACK to/from the help point, and who sent BYE when.
    sip = cap.sip_start_lines(rig.gw.sip_port)
    t183 = next(t for t, _s, d, line in sip if d == hp.port and line.startswith("SIP/2.0 183"))
    hp_bye = next(t for t, s, _d, line in sip if s == hp.port and line.startswith("BYE "))
    op_bye = next(t for t, _s, d, line in sip if d == op.port and line.startswith("BYE "))
    assert not [m for m in hp_res.received if m.method == "BYE"], "the gateway hung up on the help point"
    assert op_bye >= hp_bye, "the operator got a BYE before the help point hung up"
    bridged_at = min(p.t for p in to_op)  # the first packet the gateway sent the operator

    # A packet every 20 ms (no gap over 60 ms) at the operator's RTP port, throughout; same at the help point.
    report = [check_stream("gateway -> operator", to_op, bridged_at, hp_bye),
              check_stream("gateway -> help point", to_hp, min(p.t for p in to_hp), hp_bye)]
    print("\n".join(report))
    quiet = [p for p in to_op if first_end + 0.1 < p.t < second_start - 0.1]
    assert len(quiet) >= (second_start - first_end - 0.2) / 0.02 * 0.95, f"{len(quiet)} keep-alive packets"
    # Every packet of both bursts was relayed to the operator, in order.
    relayed = [p.payload for p in to_op if len(p.payload) == 240]
    assert subsequence_matches([p.payload for p in hp_sent], relayed) == len(hp_sent) == len(relayed)

    # The activation: ended by the help point's BYE, silence then resume on side hp, marked silent.
    acts = rig.gw.wait_activations(1)
    assert len(acts) == 1, acts
    act = acts[0]
    assert act["outcome"] == "answered" and act["answered_by"] == OPERATOR, act
    assert act["ended_by"] == "hp", act
    names = [e["event"] for e in act["timeline"]]
    assert "hp-bye" in names and names[-1] == "ended", names
    assert not {"session-timer-expired", "refresh-failed", "operator-bye"} & set(names), names
    hp_events = [(e["event"], e["t"]) for e in act["timeline"]
                 if e["event"] in ("silence", "audio-resumed") and e.get("side") == "hp"]
    assert [n for n, _ in hp_events] == ["silence", "audio-resumed"], act["timeline"]
    # ... at the right times (timeline t counts from the INVITE, which the 183 follows within milliseconds).
    timeout = float(yaml.safe_load(rig.gw.config.read_text())["media"]["silence_timeout"])
    silent_at, resumed_at = hp_events[0][1] + t183, hp_events[1][1] + t183
    assert timeout - 0.5 <= silent_at - first_end <= timeout + 1.0, (silent_at - first_end, timeout)
    assert -0.2 <= resumed_at - second_start <= 0.5, (resumed_at - second_start)
    assert act["silent"] is True, act

    # The recording: as long as the call, quiet where the help point was quiet, the second burst in place.
    rec = rig.gw.wait_recording(act["activation_id"])
    assert rec is not None, rig.gw.journal_lines()
    wav = read_stereo(Path(rec["path"]))
    wall = hp_bye - t183
    assert abs(wav.seconds - wall) <= 0.5, f"recording {wav.seconds:.2f} s, call (183 to BYE) {wall:.2f} s"
    second = b"".join(decode(p.payload, "PCMA") for p in hp_sent[BURST_PACKETS:])
    expected_at = (second_start - t183) * RATE
    window = slice(int(expected_at - RATE) * 2, int(expected_at + 4 * RATE) * 2)
    found = match(wav.left[window], second)
    found_at = window.start // 2 + found.median_lag
    print(f"recording {wav.seconds:.2f} s for a {wall:.2f} s call; second burst at "
          f"{found_at / RATE:.3f} s (wall clock {expected_at / RATE:.3f} s), {found}")
    assert found.median > 0.9 and found.fraction_above(0.8) >= 0.8, (
        f"second burst not found in the left channel near {expected_at / RATE:.1f} s: {found}")
    assert abs(found_at - expected_at) / RATE <= 0.25, (found_at / RATE, expected_at / RATE)
    q0, q1 = int((first_end - t183 + 0.3) * RATE) * 2, int((second_start - t183 - 0.3) * RATE) * 2
    assert rms(wav.left[q0:q1]) == 0, "the quiet period is not silence on the left channel"
