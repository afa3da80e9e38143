"""Help-point calls through the real gateway, with SIPp as the help point and as the operator positions.

Each test starts its own gateway (``python -m gateway serve``) with a *test* dialplan (see calls_harness):
council CCTV always open (ring_timeout 3 s, connect_timeout 1 s, confirm digit 1 within 3 s), then police
(same timers), then the message ``all-rooms-unavailable``, then council again, forever. Outcomes therefore
never depend on the time of day (the demo council room closes at 23:00).

Operator positions are SIPp UAS processes registered from Python with a Contact on their own port. The
assertions are on what each peer really received (SIPp ``-trace_msg``), the activation line the gateway
journalled in ``activations.jsonl`` (outcome, timeline), the recording's hash and the metrics.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from calls_harness import (
    CALL_SCENARIOS,
    COUNCIL,
    HELP_POINT,
    POLICE,
    CallGateway,
    RtpSink,
    SippAgent,
    check_dialplan,
    event_names,
    events,
    first_at,
    first_event,
    make_dialplan,
    register,
    sha256_file,
)
from sip_harness import SipMessage, SippResult, wait_for

pytestmark = pytest.mark.integration

RING_TIMEOUT = 3.0
CONFIRM_WITHIN = 3.0
TOLERANCE = 0.5
HP_NAME = "Portland Square"
HP_CAMERA = "rtsp://cctv.example.invalid/cam/portland-square"


class Env:
    """One gateway with the test dialplan, plus the SIPp agents a test starts (all stopped at teardown)."""

    def __init__(self, sipp: str, folder: Path, dialplan: str) -> None:
        self.sipp = sipp
        self.folder = folder
        self.gw = CallGateway(folder, dialplan)
        self.agents: list[SippAgent] = []

    def operator(
        self,
        scenario: str,
        user: str,
        *,
        keys: dict[str, str] | None = None,
        extra: list[str] | None = None,
        register_it: bool = True,
    ) -> SippAgent:
        """Start a SIPp UAS for position ``user`` and register it (Contact = its port)."""
        agent = SippAgent(
            self.sipp,
            scenario,
            self.gw,
            self.folder,
            name=f"{user}-{Path(scenario).stem}",
            keys={"opuser": user, **(keys or {})},
            extra=extra,
            timeout=60,
        ).start()
        self.agents.append(agent)
        agent.wait_listening()
        if register_it:
            ok = register(self.gw, user, agent.port)
            assert ok.status == 200, f"REGISTER {user}: {ok.text}"
        return agent

    def help_point(
        self,
        scenario: str,
        *,
        user: str = HELP_POINT,
        password: str | None = None,
        hold_ms: int = 1000,
        keys: dict[str, str] | None = None,
        auth: bool = True,
    ) -> SippAgent:
        """Start a SIPp UAC help point (digest as ``user``) that pauses ``hold_ms`` where its scenario says."""
        agent = SippAgent(
            self.sipp,
            scenario,
            self.gw,
            self.folder,
            name=f"hp-{Path(scenario).stem}",
            keys={"hpuser": user, **(keys or {})},
            user=user if auth else None,
            password=password,
            extra=["-d", str(hold_ms)],
            timeout=60,
        )
        self.agents.append(agent)
        return agent.start()

    def activation(self, timeout: float = 20.0) -> dict:
        found = self.gw.wait_activations(1, timeout)
        assert found, f"no activation journalled; gateway log:\n{self.gw.log_tail()}"
        assert len(found) == 1, f"expected one activation, got {len(found)}"
        return found[0]

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        code = self.gw.stop() if self.gw.proc is not None else None
        if code not in (0, None):
            print(f"gateway exited {code}; log tail:\n{self.gw.log_tail()}")


@pytest.fixture
def env_factory(sipp: str, tmp_path: Path) -> Iterator:
    made: list[Env] = []

    def make(dialplan: str | None = None) -> Env:
        env = Env(
            sipp,
            tmp_path / f"gw{len(made)}",
            dialplan
            or make_dialplan(
                ring_timeout=RING_TIMEOUT, connect_timeout=1, confirm_within=int(CONFIRM_WITHIN)
            ),
        )
        made.append(env)
        checked = check_dialplan(env.gw.config)
        assert checked.returncode == 0, f"test dialplan rejected:\n{checked.stdout}{checked.stderr}"
        env.gw.start()
        return env

    yield make
    for env in made:
        env.close()


@pytest.fixture
def env(env_factory) -> Env:  # type: ignore[no-untyped-def]
    return env_factory()


# ------------------------------------------------------------------------------------------- helpers


def done(agent: SippAgent, gw: CallGateway, timeout: float = 45.0) -> SippResult:
    """Wait for a SIPp agent, and assert its scenario ran to the end."""
    result = agent.wait(timeout)
    assert result.returncode == 0, (
        f"{agent.name} failed:\n{result.explain()}\ngateway log:\n{gw.log_tail(40)}"
    )
    return result


def got(result: SippResult, method: str) -> SipMessage:
    msgs = [m for m in result.received if m.method == method]
    assert msgs, f"no {method} received by {result.workdir.name}:\n{result.explain()}"
    return msgs[0]


def statuses(result: SippResult) -> list[int]:
    return [m.status for m in result.received if m.status is not None]


def invite_statuses(result: SippResult) -> list[int]:
    """Statuses of the responses to the *authenticated* INVITE (CSeq 2)."""
    return [m.status for m in result.received if m.status is not None and m.cseq == (2, "INVITE")]


def assert_failover_headers(
    invite: SipMessage, failed: list[tuple[str, int | None]], room: str = "council-cctv"
) -> None:
    """History-Info names each failed council position with its cause; Reason names the last one.

    A cause of None checks only that the position is named (the cause the gateway picks is its choice)."""
    history = invite.get("History-Info")
    assert history, f"police INVITE has no History-Info:\n{invite.text}"
    for target, cause in failed:
        assert f"sip:{target}@" in history, history
        if cause is not None:
            assert f"cause%3D{cause}" in history, history
        assert f"x-room={room}" in history, history
    reason = invite.get("Reason")
    assert reason and reason.startswith("SIP;cause="), f"police INVITE Reason: {reason}\n{invite.text}"
    assert room in reason, reason
    if failed[-1][1] is not None:
        assert f"cause={failed[-1][1]}" in reason, reason


def leg_started(act: dict, target: str) -> dict:
    return first_event(act, "leg-started", target=target)


# ------------------------------------------------------------------------------------------- tests


def test_council_answers_and_confirms(env: Env) -> None:
    """(1) Council answers and confirms: 183 then 200 at the help point, metadata at the operator, recording."""
    started0 = env.gw.metric("gateway_activations_started_total")
    op1 = env.operator("op_answer.xml", COUNCIL[0])
    op2 = env.operator("op_ring.xml", COUNCIL[1])
    hp = done(env.help_point("hp_call.xml", hold_ms=3000), env.gw)
    r1, r2 = done(op1, env.gw), done(op2, env.gw)
    act = env.activation()

    # The help point's side: challenged, then 183 with SDP (early media) before the 200 with SDP.
    assert statuses(hp)[:1] in ([100], [401]), statuses(hp)
    assert 401 in statuses(hp)
    flow = invite_statuses(hp)
    assert 183 in flow and 200 in flow and flow.index(183) < flow.index(200), flow
    early = next(m for m in hp.received if m.status == 183)
    ok = next(m for m in hp.received if m.status == 200 and m.cseq == (2, "INVITE"))
    for resp in (early, ok):
        assert (resp.get("Content-Type") or "").startswith("application/sdp"), resp.text
        assert b"m=audio" in resp.body, resp.text
    assert early.get("To") == ok.get("To"), "183 and 200 must be the same dialog (same To tag)"
    bye_ok = [m for m in hp.received if m.status == 200 and m.cseq[1] == "BYE"]
    assert bye_ok, statuses(hp)

    # The operator's INVITE carries the help point's metadata.
    invite = got(r1, "INVITE")
    assert invite.get("From", "f").startswith(f'"{HP_NAME}" <sip:{HELP_POINT}@'), invite.get("From", "f")
    assert invite.get("Subject") == f"Help point {HP_NAME}", invite.text
    call_info = invite.get("Call-Info") or ""
    assert f"<{HP_CAMERA}>;purpose=helppoint.camera" in call_info, call_info
    assert f"{act['activation_id']}>;purpose=helppoint.record" in call_info, call_info
    assert invite.get("X-Helppoint-Id") == HELP_POINT, invite.text
    location = invite.get("X-Helppoint-Location") or ""
    assert location.startswith("53.124660,-1.260810") and "Portland Square, Sutton-in-Ashfield" in location, (
        location
    )
    assert invite.get("X-Activation-Id") == act["activation_id"], invite.text
    assert invite.get("History-Info") is None, "first attempt: no History-Info"
    assert (invite.get("Content-Type") or "").startswith("application/sdp") and b"m=audio" in invite.body
    # The operator who answered was ACKed, confirmed with INFO (200) and got the BYE when the help point hung up.
    assert got(r1, "ACK") and got(r1, "BYE")
    assert any(m.status == 200 and m.cseq[1] == "INFO" for m in r1.received), statuses(r1)
    # The other council position was cancelled, saying why (RFC 3326).
    cancel = got(r2, "CANCEL")
    assert "cause=200" in (cancel.get("Reason") or ""), cancel.text

    # The activation record.
    assert act["help_point"] == HELP_POINT
    assert act["outcome"] == "answered", act
    assert act["answered_by"] == COUNCIL[0] and act["answered_room"] == "council-cctv", act
    assert act["ended_by"] == "hp"
    assert act["talk_time"] > 2.5, act
    names = event_names(act)
    for before, after in [
        ("offered", "prompt"),
        ("prompt", "leg-started"),
        ("leg-started", "leg-answered"),
        ("leg-answered", "confirm-requested"),
        ("confirm-requested", "digit"),
        ("digit", "bridged"),
        ("bridged", "hp-bye"),
        ("hp-bye", "ended"),
    ]:
        assert names.index(before) < names.index(after), names
    assert first_event(act, "digit")["digit"] == "1"
    assert first_event(act, "prompt")["prompt"] == "connecting"

    # The recording is journalled beside it, and its hash is the file's.
    rec = env.gw.wait_recording(act["activation_id"])
    assert rec is not None, f"no recording line; journal: {env.gw.journal_lines()}"
    path = Path(rec["path"])
    assert path.is_file(), rec
    assert rec["sha256"] == sha256_file(path), "journalled sha256 does not match the recording file"
    with wave.open(str(path)) as wav:
        assert wav.getnchannels() == 2, "recordings are stereo (help point | operator)"
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds >= 3.0, f"recording only {seconds:.2f} s"

    assert env.gw.metric("gateway_activations_started_total") == started0 + 1
    assert env.gw.metric("gateway_activations_total", outcome="answered") == 1
    # The database links the same file, with its SHA-256 and its exact size.
    db = env.gw.data_dir / "gateway.db"

    def linked() -> list[tuple]:
        with sqlite3.connect(db) as conn:
            return conn.execute("select path, sha256, size from recordings where activation_id = ?",
                                (act["activation_id"],)).fetchall()

    assert wait_for(lambda: len(linked()) == 1, 20.0), env.gw.log_tail()
    assert linked()[0] == (str(path), rec["sha256"], path.stat().st_size)
    # The event-loop lag probe runs in the real process (four samples a second; the call took > 3 s).
    assert env.gw.metric("gateway_event_loop_lag_seconds_count") >= 4
    # The media clock's error counter is exported by the real process, and nothing failed in this call.
    assert "gateway_media_tick_errors_total" in env.gw.metrics()
    assert env.gw.metric("gateway_media_tick_errors_total") == 0


def test_council_busy_fails_over_to_police(env: Env) -> None:
    """(2) Both council positions 486 -> police answers; its INVITE says why (History-Info, Reason)."""
    c1 = env.operator("op_busy.xml", COUNCIL[0])
    c2 = env.operator("op_busy.xml", COUNCIL[1])
    police = env.operator("op_answer.xml", POLICE)
    hp = done(env.help_point("hp_call.xml", hold_ms=1000), env.gw)
    done(c1, env.gw), done(c2, env.gw)
    rp = done(police, env.gw)
    act = env.activation()

    assert 200 in invite_statuses(hp)
    invite = got(rp, "INVITE")
    assert_failover_headers(invite, [(COUNCIL[0], 486), (COUNCIL[1], 486)])
    assert invite.get("X-Activation-Id") == act["activation_id"]

    assert act["outcome"] == "answered" and act["answered_by"] == POLICE, act
    assert act["answered_room"] == "police-control"
    failed = events(act, "leg-failed")
    assert sorted((e["leg"].split("#")[0], e["status"]) for e in failed) == [
        (COUNCIL[0], 486),
        (COUNCIL[1], 486),
    ]
    police_start = leg_started(act, POLICE)
    names = act["timeline"]
    assert all(names.index(e) < names.index(police_start) for e in failed), names
    assert police_start["t"] < 1.0, "busy fails over at once, not after a ring timeout"


def ring_timeout_call(env: Env) -> tuple[dict, SippResult, SippResult, SippResult, SippResult]:
    """Both council positions ring and never answer; police answers and confirms."""
    c1 = env.operator("op_ring.xml", COUNCIL[0])
    c2 = env.operator("op_ring.xml", COUNCIL[1])
    police = env.operator("op_answer.xml", POLICE)
    hp = done(env.help_point("hp_call.xml", hold_ms=1000), env.gw)
    r1, r2 = done(c1, env.gw), done(c2, env.gw)
    rp = done(police, env.gw)
    return env.activation(), hp, r1, r2, rp


def test_council_never_answers_fails_over_after_ring_timeout(env: Env) -> None:
    """(3) Council rings and never answers -> CANCEL with Reason after ring_timeout, then police."""
    act, hp, r1, r2, rp = ring_timeout_call(env)
    assert 200 in invite_statuses(hp)

    # Timing from the activation's timeline (the gateway's clock) ...
    council_start = leg_started(act, COUNCIL[0])["t"]
    police_start = leg_started(act, POLICE)["t"]
    assert abs((police_start - council_start) - RING_TIMEOUT) <= TOLERANCE, act["timeline"]
    cancelled = [e for e in events(act, "leg-cancelled") if e["leg"].startswith("council")]
    assert len(cancelled) == 2 and all("Ring timeout" in e["reason"] for e in cancelled), cancelled
    # ... and from what the council phones saw (SIPp's clock): INVITE in -> CANCEL in.
    for res in (r1, r2):
        rang = first_at(res, "received", "INVITE ")
        cancel_at = first_at(res, "received", "CANCEL ")
        assert abs((cancel_at - rang) - RING_TIMEOUT) <= TOLERANCE, cancel_at - rang
        cancel = got(res, "CANCEL")
        reason = cancel.get("Reason") or ""
        assert reason.startswith("SIP;cause=480") and "Ring timeout" in reason, cancel.text
    assert got(rp, "INVITE").get("X-Activation-Id") == act["activation_id"]
    assert act["outcome"] == "answered" and act["answered_by"] == POLICE


def unconfirmed_call(env: Env) -> tuple[dict, SippResult, SippResult, SippResult]:
    """council-cctv-1 answers and never confirms (council-cctv-2 not registered); police answers and confirms."""
    c1 = env.operator("op_unconfirmed.xml", COUNCIL[0])
    police = env.operator("op_answer.xml", POLICE)
    hp = done(env.help_point("hp_call.xml", hold_ms=1000), env.gw)
    r1 = done(c1, env.gw)
    rp = done(police, env.gw)
    return env.activation(), hp, r1, rp


def test_answer_without_confirm_is_hung_up_and_fails_over(env: Env) -> None:
    """(6) An operator that answers but never presses 1 gets BYE after the confirm window; police takes it."""
    act, hp, r1, rp = unconfirmed_call(env)
    answered = first_event(act, "leg-answered", target=COUNCIL[0])
    byes = [e for e in events(act, "leg-bye-sent") if e["leg"].startswith(COUNCIL[0])]
    assert byes, act["timeline"]
    assert abs((byes[0]["t"] - answered["t"]) - CONFIRM_WITHIN) <= TOLERANCE, act["timeline"]
    assert "not confirmed" in byes[0]["reason"], byes
    bye = got(r1, "BYE")
    assert "cause=480" in (bye.get("Reason") or ""), bye.text
    # Measured at the council phone too: its 200 OK -> the gateway's BYE.
    answered_at = first_at(r1, "sent", "SIP/2.0 200")
    assert abs((first_at(r1, "received", "BYE ") - answered_at) - CONFIRM_WITHIN) <= TOLERANCE
    assert leg_started(act, POLICE)["t"] >= byes[0]["t"], act["timeline"]
    assert act["outcome"] == "answered" and act["answered_by"] == POLICE, act
    # The help point was not answered by the unconfirmed operator: its 200 came after the police confirm.
    assert 200 in invite_statuses(hp)
    assert first_at(hp, "received", "SIP/2.0 200") - first_at(hp, "received", "SIP/2.0 183") >= CONFIRM_WITHIN




def test_police_invite_names_council_ring_timeout(env: Env) -> None:
    """Issue 3 item 4: after the council room rang out, the police INVITE carries History-Info and Reason."""
    act, _, _, _, rp = ring_timeout_call(env)
    assert act["answered_by"] == POLICE
    assert_failover_headers(got(rp, "INVITE"), [(COUNCIL[0], None), (COUNCIL[1], None)])


def test_police_invite_names_unconfirmed_council_answer(env: Env) -> None:
    """Issue 3 item 4: the police INVITE names the council position that answered without confirming."""
    act, _, _, rp = unconfirmed_call(env)
    assert act["answered_by"] == POLICE
    invite = got(rp, "INVITE")
    assert COUNCIL[0] in (invite.get("History-Info") or ""), invite.text
    assert "council-cctv" in (invite.get("Reason") or ""), invite.text


@pytest.mark.parametrize(("scenario", "status"), [("op_unavailable.xml", 503), ("op_decline.xml", 603)])
def test_council_503_or_603_fails_over(env: Env, scenario: str, status: int) -> None:
    """(4) 503 (server_error) or 603 (decline) from the council positions -> police."""
    c1 = env.operator(scenario, COUNCIL[0])
    c2 = env.operator(scenario, COUNCIL[1])
    police = env.operator("op_answer.xml", POLICE)
    hp = done(env.help_point("hp_call.xml", hold_ms=1000), env.gw)
    done(c1, env.gw), done(c2, env.gw)
    rp = done(police, env.gw)
    act = env.activation()
    assert 200 in invite_statuses(hp)
    assert sorted(e["status"] for e in events(act, "leg-failed")) == [status, status], act["timeline"]
    assert_failover_headers(got(rp, "INVITE"), [(COUNCIL[0], status), (COUNCIL[1], status)])
    assert leg_started(act, POLICE)["t"] < 1.0
    assert act["outcome"] == "answered" and act["answered_by"] == POLICE


def test_council_unreachable_goes_straight_to_police(env: Env) -> None:
    """(5) No council position registered -> leg-unreachable, police rung at once."""
    police = env.operator("op_answer.xml", POLICE)
    hp = done(env.help_point("hp_call.xml", hold_ms=1000), env.gw)
    rp = done(police, env.gw)
    act = env.activation()
    assert 200 in invite_statuses(hp)
    unreachable = events(act, "leg-unreachable")
    assert sorted(e["target"] for e in unreachable) == sorted(COUNCIL), act["timeline"]
    assert not [e for e in events(act, "leg-started") if e["target"] in COUNCIL], "nobody to ring in council"
    assert leg_started(act, POLICE)["t"] < 0.5, act["timeline"]
    assert_failover_headers(got(rp, "INVITE"), [(COUNCIL[0], 480), (COUNCIL[1], 480)])
    assert act["outcome"] == "answered" and act["answered_by"] == POLICE


def test_help_point_cancel_while_ringing(env: Env) -> None:
    """(7) The help point CANCELs while council rings: 487 to it, CANCEL to every leg, outcome abandoned."""
    c1 = env.operator("op_ring.xml", COUNCIL[0])
    c2 = env.operator("op_ring.xml", COUNCIL[1])
    hp = done(env.help_point("hp_cancel.xml", hold_ms=1500), env.gw)
    r1, r2 = done(c1, env.gw), done(c2, env.gw)
    act = env.activation()
    assert 487 in invite_statuses(hp), statuses(hp)
    assert any(m.status == 200 and m.cseq[1] == "CANCEL" for m in hp.received), statuses(hp)
    for res in (r1, r2):
        cancel = got(res, "CANCEL")
        assert "cause=487" in (cancel.get("Reason") or ""), cancel.text
    assert act["outcome"] == "abandoned" and act["ended_by"] == "hp", act
    assert act["answered_by"] is None
    assert len([e for e in events(act, "leg-cancelled") if e["leg"].startswith("council")]) == 2
    assert env.gw.metric("gateway_activations_total", outcome="abandoned") == 1


def test_operator_hangs_up_first(env: Env) -> None:
    """(8) The bridged operator sends BYE -> the gateway sends BYE to the help point."""
    c1 = env.operator("op_answer_bye.xml", COUNCIL[0], extra=["-d", "2000"])
    hp = done(env.help_point("hp_wait_bye.xml"), env.gw)
    done(c1, env.gw)
    act = env.activation()
    assert 200 in invite_statuses(hp)
    got(hp, "BYE")
    assert act["outcome"] == "answered" and act["answered_by"] == COUNCIL[0]
    assert act["ended_by"] == "operator", act
    names = event_names(act)
    assert names.index("bridged") < names.index("operator-bye") < names.index("ended"), names


def test_two_phones_answer_and_the_one_that_confirms_gets_the_call_and_its_audio(env: Env) -> None:
    """(8b) Council-cctv-1 answers and confirms later by SIP INFO; council-cctv-2 answers in between and never
    confirms (an auto-answering softphone).  The gateway moved the operator-side audio to the latest answerer,
    so it must point it back at cctv-1 to bridge: cctv-1's RTP port hears the call, cctv-2's stops, cctv-2
    gets BYE "completed elsewhere", and the record names cctv-1."""
    sink1, sink2 = RtpSink(), RtpSink()
    try:
        op1 = env.operator("op_confirm_later_sink.xml", COUNCIL[0], keys={"oprtp": str(sink1.port)},
                           extra=["-d", "1500"])
        op2 = env.operator("op_unconfirmed_sink.xml", COUNCIL[1], keys={"oprtp": str(sink2.port)},
                           extra=["-d", "800"])
        hp = done(env.help_point("hp_call.xml", hold_ms=3000), env.gw)
        r1, r2 = done(op1, env.gw), done(op2, env.gw)
        act = env.activation()
        time.sleep(0.3)  # the last packets in flight
    finally:
        sink1.close()
        sink2.close()
    assert 200 in invite_statuses(hp)
    assert act["outcome"] == "answered" and act["answered_by"] == COUNCIL[0], act
    bridged = first_event(act, "bridged")
    assert bridged["leg"].startswith(COUNCIL[0]), bridged
    assert first_event(act, "leg-answered", target=COUNCIL[1])["t"] < bridged["t"], act["timeline"]
    bye = got(r2, "BYE")
    assert "cause=200" in (bye.get("Reason") or ""), bye.text
    got(r1, "BYE")  # at the end of the call, when the help point hung up
    # The help point talked to cctv-1 for 3 s after the bridge: the gateway sent cctv-1 the call's audio
    # (keep-alive silence at least, 50 packets a second) and nothing more to cctv-2 once it was hung up.
    assert len(sink1.packets) >= 0.8 * 50 * 3.0, f"cctv-1 got {len(sink1.packets)} RTP packets"
    last1 = max(t for t, _ in sink1.packets)
    late2 = [t for t, _ in sink2.packets if t > last1 - 2.0]
    assert not late2, f"cctv-2 still got {len(late2)} RTP packets in the last 2 s of the call"


def test_nobody_answers_call_is_kept_with_early_media(env: Env) -> None:
    """(9) No room answers: the help point keeps hearing early media and the gateway never drops the call."""
    sink = RtpSink()
    try:
        hold = 10_000
        started = time.monotonic()
        hp_agent = env.help_point("hp_cancel.xml", hold_ms=hold, keys={"hp_rtp": str(sink.port)})
        assert wait_for(lambda: bool(hp_agent.received(status=183)), 10), "no 183"
        t183 = time.monotonic()
        # While nobody answers, the activation stays open: nothing journalled, no final response.
        assert not wait_for(lambda: bool(env.gw.activations()), (hold / 1000) - (t183 - started) - 1.0)
        assert not [s for s in invite_statuses(hp_agent.result()) if s >= 200], (
            "gateway sent a final response"
        )
        hp = done(hp_agent, env.gw)
        audio = sink.count_between(t183, t183 + (hold / 1000) - 1.5)
    finally:
        sink.close()
    assert audio >= 0.8 * 50 * ((hold / 1000) - 1.5), f"only {audio} RTP packets of early media"
    act = env.activation()
    assert 487 in invite_statuses(hp)
    assert act["outcome"] == "abandoned" and act["ended_by"] == "hp", act
    ended = first_event(act, "ended")
    assert ended["t"] >= hold / 1000 - 0.5, ended
    # It kept trying: council and police unreachable, the message, then council again.
    assert len(events(act, "leg-unreachable")) >= 6, act["timeline"]
    assert events(act, "message"), act["timeline"]


def test_unknown_caller_and_wrong_password_are_refused(env: Env) -> None:
    """(10) Unknown From user -> 403 and no activation; a help point with a wrong password -> 403, counted."""
    refused0 = env.gw.metric("gateway_calls_refused_total")
    unknown0 = env.gw.metric("gateway_calls_refused_total", reason="unknown_caller")
    started0 = env.gw.metric("gateway_activations_started_total")

    intruder = done(env.help_point("hp_unknown.xml", user="intruder-7", auth=False), env.gw)
    assert statuses(intruder)[-1] == 403 and 401 not in statuses(intruder), statuses(intruder)
    assert env.gw.metric("gateway_calls_refused_total", reason="unknown_caller") == unknown0 + 1

    bad = done(env.help_point("hp_badauth.xml", password="not-the-password"), env.gw)
    assert 401 in statuses(bad) and statuses(bad)[-1] == 403, statuses(bad)
    assert env.gw.metric("gateway_calls_refused_total") == refused0 + 2

    assert env.gw.metric("gateway_activations_started_total") == started0
    time.sleep(0.5)
    assert env.gw.activations() == []
    assert "refused" in env.gw.log_text()


@pytest.fixture(scope="module", autouse=True)
def _need_pcap() -> None:
    if shutil.which("sipp") and not Path("/usr/share/sip-tester/g711a.pcap").exists():
        pytest.skip("SIPp sample pcaps missing (/usr/share/sip-tester/g711a.pcap)")


def test_unacked_200_is_retransmitted_then_hung_up(env: Env) -> None:
    """A help point that dies right after the 200 must not hold the call (and its RTP ports) forever."""
    c1 = env.operator("op_answer.xml", COUNCIL[0])
    hp_agent = env.help_point("hp_noack.xml")
    hp = hp_agent.wait(60)
    oks = [m for m in hp.received if m.status == 200 and m.cseq == (2, "INVITE")]
    assert len(oks) >= 3, f"the 2xx was not retransmitted (T1, 2*T1, ...): {len(oks)} copies"
    assert hp.returncode == 0 and any(m.method == "BYE" for m in hp.received), (
        f"no BYE within 45 s for the unconfirmed dialog; /health: {env.gw.http_get('/health')[1]!r}"
    )
    got(done(c1, env.gw), "BYE")
    act = env.activation()
    assert act["ended_by"] == "gateway", act


def test_a_gateway_stalled_across_the_ring_timeout_takes_the_answer_that_waited(env: Env, tmp_path: Path) -> None:
    """The gateway process is stopped (SIGSTOP, as a VM pause or a starved host would) from just after the
    council phone rings until after its ring timeout; the phone answers meanwhile, so its 200 waits in the
    socket when the gateway resumes with the ring timeout already due.  The timer must not fail over from the
    room that answered: it waits for the socket, and the council operator gets the call and confirms it."""
    late = tmp_path / "op_answer_late.xml"  # op_answer.xml, answering 2 s after it rings
    late.write_text((CALL_SCENARIOS / "op_answer.xml").read_text().replace(
        '<pause milliseconds="300"/>', '<pause milliseconds="2000"/>'))
    op = env.operator(str(late), COUNCIL[0])
    hp = env.help_point("hp_call.xml", hold_ms=1000)
    assert wait_for(lambda: op.received("INVITE"), 10), f"the council phone never rang:\n{env.gw.log_tail()}"
    time.sleep(0.3)  # its 180 (sent at once) reaches the gateway: the 3 s ring timeout runs
    assert env.gw.proc is not None
    env.gw.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(RING_TIMEOUT + 0.5)  # the 200 comes at 2 s, the ring timeout is due at 3 s
    finally:
        env.gw.proc.send_signal(signal.SIGCONT)
    done(hp, env.gw)
    done(op, env.gw)
    act = env.activation()
    assert act["outcome"] == "answered" and act["answered_by"] == COUNCIL[0], act["timeline"]
    assert not [e for e in events(act, "leg-cancelled") if e["leg"].startswith(COUNCIL[0])], act["timeline"]
    assert not [e for e in events(act, "leg-started") if e["target"] == POLICE], act["timeline"]
    assert env.gw.metric("gateway_call_timers_stalled_total") >= 1, env.gw.log_tail()
    assert "(the event loop was stalled)" in env.gw.log_text()
