"""Talk-down against the real gateway: an operator asks the HTTP API to call a help point and play warning 1
twice; the help point (a SIPp UAS standing in for an auto-answering intercom that does not register, so it is
reached at its inventory ``static_uri``) is called, hears the warning and is hung up on; the attempt is
journalled as a talk-down with its outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from calls_harness import ROOT, CallGateway, SippAgent, single_room_dialplan
from sip_harness import free_port, wait_for

pytestmark = pytest.mark.integration

UNIT = "hp-old-market-place"


def test_talkdown_calls_a_unit_at_its_static_uri_plays_the_warning_and_records_it(sipp: str, tmp_path: Path) -> None:
    port = free_port()
    units = yaml.safe_load((ROOT / "sip-config" / "help-points.yaml").read_text())
    (unit,) = [hp for hp in units["help_points"] if hp["id"] == UNIT]
    unit["static_uri"] = f"sip:{UNIT}@127.0.0.1:{port}"
    inventory = tmp_path / "help-points.yaml"
    inventory.write_text(yaml.safe_dump(units, sort_keys=False))
    gw = CallGateway(tmp_path / "gw", single_room_dialplan())
    config = yaml.safe_load(gw.config.read_text())
    config["inventory"]["help_points"] = str(inventory)
    gw.config.write_text(yaml.safe_dump(config, sort_keys=False))
    token = subprocess.run(
        [sys.executable, "-m", "gateway", "tokens", "create", "--config", str(gw.config), "--name", "desk-1",
         "--role", "operator"], env=gw.env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    # The intercom: answers (op_answer.xml also sends a harmless INFO), then waits for the gateway's BYE.
    unit_agent = SippAgent(sipp, "op_answer.xml", gw, tmp_path, name="unit", keys={"opuser": UNIT}, timeout=60,
                           port=port)
    try:
        gw.start()
        unit_agent.start()
        unit_agent.wait_listening()
        request = urllib.request.Request(
            f"http://127.0.0.1:{gw.http_port}/api/talkdown", method="POST",
            data=json.dumps({"help_point": UNIT, "warning": 1, "times": 2}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status in (200, 201, 202)
            activation_id = json.loads(response.read())["activation_id"]
        result = unit_agent.wait(60.0)
        assert result.returncode == 0, f"unit:\n{result.explain()}\n{gw.log_tail()}"
        (invite,) = [m for m in result.received if m.method == "INVITE"]
        assert invite.text.splitlines()[0] == f"INVITE sip:{UNIT}@127.0.0.1:{port} SIP/2.0", invite.text
        (bye,) = [m for m in result.received if m.method == "BYE"]
        assert "warnings played" in (bye.get("Reason") or ""), bye.text
        assert wait_for(lambda: any(a["activation_id"] == activation_id for a in gw.activations()), 20.0)
        (record,) = [a for a in gw.activations() if a["activation_id"] == activation_id]
        assert record["outcome"] == "talkdown-played", record
        plays = [e for e in record["timeline"] if e["event"] == "warning-played"]
        assert [e["play"] for e in plays] == [1, 2], record["timeline"]
    finally:
        unit_agent.stop()
        gw.stop()
