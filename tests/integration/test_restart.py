"""Bindings survive a restart of the real process (same data directory); SIGTERM is a quick, clean exit 0."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from sip_harness import GatewayProcess, SippRunner, contact_expires, query_bindings

pytestmark = pytest.mark.integration

SIGTERM_BUDGET = 5.0  # seconds from SIGTERM to exit when nothing is in progress


def contacts_of(resp) -> dict[str, int | None]:
    return {c.split("<", 1)[1].split(">", 1)[0]: contact_expires(c) for c in resp.contacts}


def sigterm(gw: GatewayProcess) -> tuple[int, float]:
    """SIGTERM the process; (exit code, seconds it took)."""
    assert gw.proc is not None and gw.running
    start = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    try:
        code = gw.proc.wait(SIGTERM_BUDGET + 10)
    except subprocess.TimeoutExpired:
        gw.kill()
        pytest.fail(f"no exit {SIGTERM_BUDGET + 10}s after SIGTERM; log:\n{gw.log_tail()}")
    return code, time.monotonic() - start


def test_bindings_survive_restart(gateway_proc: GatewayProcess, sipp_runner: SippRunner) -> None:
    registered: dict[str, str] = {}
    for user, transport in (("hp-outram-street", "u1"), ("council-cctv-1", "u1"), ("police-control-1", "t1")):
        result = sipp_runner.run("register_auth.xml", user=user, transport=transport, keys={"tag": "persist"})
        assert result.returncode == 0, result.explain()
        sent = next(m for m in result.sent if m.contacts)
        registered[user] = sent.contacts[0].split("<", 1)[1].split(">", 1)[0]

    before = {user: contacts_of(query_bindings(gateway_proc, user)) for user in registered}
    for user, uri in registered.items():
        assert uri in before[user], f"{user}: {uri} not bound before the restart: {before[user]}"

    code = gateway_proc.restart()
    assert code == 0, f"graceful stop exited {code}; log:\n{gateway_proc.log_tail()}"

    for user, uri in registered.items():
        after = contacts_of(query_bindings(gateway_proc, user))
        assert uri in after, f"{user}: binding {uri} lost across the restart; now {after}"
        assert after[uri] is not None and 0 < after[uri] <= (before[user][uri] or 3600), (before[user], after)

    # SIPp's own view, through a query-only REGISTER after the restart.
    result = sipp_runner.run("register_query.xml", user="hp-outram-street")
    assert result.returncode == 0, result.explain()
    assert registered["hp-outram-street"] in contacts_of(result.responses[-1])


def test_sigterm_exits_zero_quickly(gateway_proc: GatewayProcess) -> None:
    # Traffic first: a REGISTER leaves a completed server transaction (Timer J) that must not delay the exit.
    query_bindings(gateway_proc, "council-cctv-2")
    code, took = sigterm(gateway_proc)
    assert code == 0, f"exit code {code} after SIGTERM; log:\n{gateway_proc.log_tail()}"
    assert took < SIGTERM_BUDGET, f"took {took:.1f}s to exit after SIGTERM"
    gateway_proc.exit_codes.append(code)
    # Start again on the same data directory: the database from the previous run is reused.
    gateway_proc.start()
    assert query_bindings(gateway_proc, "council-cctv-1").status == 200
