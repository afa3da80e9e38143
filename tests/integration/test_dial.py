"""A dialplan's last resort, ``dial``, against the real gateway: nobody of the police room is registered, so
the plan dials its last-resort number, which a SIPp UAS answers (a PBX or trunk behind the number), and the
help point is bridged to it.  Once through ``sip.trunk`` (digits), once to a sip: URI (no trunk needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from calls_harness import CallGateway, SippAgent, calling_help_point
from sip_harness import free_port

pytestmark = pytest.mark.integration


def _plan(number: str) -> str:
    return textwrap.dedent(
        f"""\
        name: lastresort
        serves:
          help_points: [hp-portland-square]
        rooms:
          police-control:
            positions: [police-control-1]
        steps:
          - ring: {{room: police-control, ring_timeout: 10, connect_timeout: 4}}
          - dial: {{number: "{number}", ring_timeout: 20, connect_timeout: 4}}
        """
    )


@pytest.mark.parametrize("how", ["trunk", "sip-uri"])
def test_last_resort_number_is_dialled_and_bridged(sipp: str, tmp_path: Path, how: str) -> None:
    port = free_port()  # the PBX's SIP port: in the dialplan or the trunk before the gateway starts
    number = "+441623000000" if how == "trunk" else f"sip:duty-officer@127.0.0.1:{port}"
    gw = CallGateway(tmp_path / "gw", _plan(number))
    if how == "trunk":
        config = yaml.safe_load(gw.config.read_text())
        config["sip"]["trunk"] = f"sip:{{number}}@127.0.0.1:{port}"
        gw.config.write_text(yaml.safe_dump(config, sort_keys=False))
    pbx = SippAgent(sipp, "op_answer.xml", gw, tmp_path, name="pbx", keys={"opuser": "pbx"}, timeout=60,
                    port=port)
    agents = [pbx]
    try:
        gw.start()
        pbx.start()
        pbx.wait_listening()
        hp = calling_help_point(sipp, gw, tmp_path, hold_ms=1500, user="hp-portland-square")
        agents.append(hp)
        result = hp.wait(60.0)
        assert result.returncode == 0, f"help point:\n{result.explain()}\n{gw.log_tail()}"
        pbx_result = pbx.wait(30.0)
        assert pbx_result.returncode == 0, f"pbx:\n{pbx_result.explain()}\n{gw.log_tail()}"
        (invite,) = [m for m in pbx_result.received if m.method == "INVITE"]
        expected = f"sip:+441623000000@127.0.0.1:{port}" if how == "trunk" else number
        assert invite.text.splitlines()[0] == f"INVITE {expected} SIP/2.0", invite.text
        assert "rtsp://" in (invite.get("Call-Info") or ""), invite.text  # the camera goes with the call
        (act,) = gw.wait_activations(1)
        assert act["outcome"] == "answered", act
        names = [e["event"] for e in act["timeline"]]
        assert names.index("leg-unreachable") < names.index("leg-started") < names.index("bridged"), names
    finally:
        for agent in agents:
            agent.stop()
        gw.stop()
