"""SIGTERM after a call that was forked to a dead contact: the graceful stop is still quick.

A softphone that died without unregistering leaves a stale binding: the gateway forks to it and to the
live softphone, which answers. The dead leg cannot be cancelled (a CANCEL waits for a provisional
response, RFC 3261 §9.1), so its INVITE client transaction lives until Timer B (64*T1 = 32 s). Once every
call has ended, SIGTERM waits for such an INVITE only until nothing has answered it for 8*T1 (4 s), not
for Timer B (each second of draining is a second in which presses are turned away). INVITEs that are
still being settled are waited for: tests/sip/test_transaction.py covers those with hand-advanced time.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from calls_harness import (
    COUNCIL,
    HELP_POINT,
    CallGateway,
    SippAgent,
    answering_operator,
    calling_help_point,
    register,
    single_room_dialplan,
)
from sip_harness import free_port, wait_for

pytestmark = pytest.mark.integration

SIGTERM_BUDGET = 8.0  # seconds from SIGTERM to exit: at most the dead leg's 4 s plus the flush (drain_timeout: 32)


def test_sigterm_does_not_wait_for_a_dead_forked_leg(sipp: str, tmp_path: Path) -> None:
    gw = CallGateway(tmp_path, single_room_dialplan())
    agents: list[SippAgent] = []
    try:
        gw.start()
        dead_port = free_port()  # nothing listens there: the softphone that died
        assert register(gw, COUNCIL[0], dead_port).status == 200
        agents.append(answering_operator(sipp, gw, tmp_path, COUNCIL[0]))
        hp = calling_help_point(sipp, gw, tmp_path, hold_ms=1000)
        agents.append(hp)
        result = hp.wait(45.0)
        assert result.returncode == 0, f"help point scenario failed:\n{result.explain()}\n{gw.log_tail()}"
        assert wait_for(lambda: len(gw.activations()) == 1, 20.0), gw.log_tail()
        (act,) = gw.activations()
        assert act["outcome"] == "answered", act
        started = [e for e in act["timeline"] if e["event"] == "leg-started"]
        contacts = {e["contact"] for e in started}
        assert f"sip:{COUNCIL[0]}@127.0.0.1:{dead_port}" in contacts and len(contacts) == 2, started

        assert gw.proc is not None
        begin = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.wait(SIGTERM_BUDGET + 40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit {SIGTERM_BUDGET + 40:.0f} s after SIGTERM; log:\n{gw.log_tail()}")
        took = time.monotonic() - begin
        assert code == 0, f"exit code {code}; log:\n{gw.log_tail()}"
        assert took < SIGTERM_BUDGET, f"took {took:.1f} s to exit after SIGTERM; log:\n{gw.log_tail()}"
    finally:
        for agent in agents:
            agent.stop()
        gw.stop()


def test_calls_still_up_when_the_drain_time_is_over_are_hung_up_and_recorded(sipp: str, tmp_path: Path) -> None:
    """SIGTERM during a bridged call that outlives ``drain_timeout``: the gateway does not just vanish.  The
    help point and the operator each get a BYE (Reason: 503 "Gateway shutting down"), the activation is
    journalled as answered and ended by the gateway, its recording is sealed and linked, and the process
    exits 0 soon after the drain time."""
    gw = CallGateway(tmp_path, single_room_dialplan())
    config = yaml.safe_load(gw.config.read_text())
    config["drain_timeout"] = 2
    gw.config.write_text(yaml.safe_dump(config, sort_keys=False))
    agents: list[SippAgent] = []
    try:
        gw.start()
        op = answering_operator(sipp, gw, tmp_path, COUNCIL[0])
        agents.append(op)
        hp = SippAgent(sipp, "hp_wait_bye.xml", gw, tmp_path, name="hp", keys={"hpuser": HELP_POINT},
                       user=HELP_POINT, timeout=60).start()
        agents.append(hp)
        # The gateway answers the help point once the operator has answered and confirmed: bridged.
        assert wait_for(lambda: any(m.cseq == (2, "INVITE") for m in hp.received(status=200)), 30.0), \
            gw.log_tail()
        assert gw.proc is not None
        begin = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        try:
            code = gw.proc.wait(40)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 40 s after SIGTERM; log:\n{gw.log_tail()}")
        took = time.monotonic() - begin
        assert code == 0, f"exit code {code}; log:\n{gw.log_tail()}"
        assert took < 2 + 4 + 8, f"took {took:.1f} s to exit after SIGTERM; log:\n{gw.log_tail()}"
        for agent in (hp, op):
            result = agent.wait(30.0)
            assert result.returncode == 0, f"{agent.name}:\n{result.explain()}\n{gw.log_tail()}"
            (bye,) = [m for m in result.received if m.method == "BYE"]
            assert "Gateway shutting down" in (bye.get("Reason") or ""), bye.text
        (act,) = gw.activations()
        assert (act["outcome"], act["ended_by"]) == ("answered", "gateway"), act
        assert "gateway-stopping" in [e["event"] for e in act["timeline"]], act["timeline"]
        (rec,) = gw.recordings()
        assert rec["activation_id"] == act["activation_id"] and rec["sha256"], rec
    finally:
        for agent in agents:
            agent.stop()
        gw.stop()
