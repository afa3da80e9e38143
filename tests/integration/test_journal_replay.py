"""The journal makes up for what the database missed, against the real gateway and SQLite.

A call is answered and ends; then the database is put back as a gateway killed with that call's end still
queued would leave it (the row in progress, the last timeline rows never written).  At the next start the
activation is not just marked "interrupted": its end and missing timeline entries are replayed from the
journal, where they were written (fsync'd) as the call ended.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from calls_harness import CallGateway, SippAgent, answering_operator, calling_help_point, single_room_dialplan
from sip_harness import wait_for

pytestmark = pytest.mark.integration


def _row(db: Path, activation_id: str) -> tuple[str, int]:
    with sqlite3.connect(db) as conn:
        (outcome,) = conn.execute("SELECT outcome FROM activations WHERE id = ?", (activation_id,)).fetchone()
        (events,) = conn.execute("SELECT count(*) FROM activation_events WHERE activation_id = ?",
                                 (activation_id,)).fetchone()
    return outcome, events


def test_an_end_the_database_missed_is_replayed_from_the_journal(sipp: str, tmp_path: Path) -> None:
    gw = CallGateway(tmp_path, single_room_dialplan())
    agents: list[SippAgent] = []
    try:
        gw.start()
        agents.append(answering_operator(sipp, gw, tmp_path))
        hp = calling_help_point(sipp, gw, tmp_path, hold_ms=1000)
        agents.append(hp)
        assert hp.wait(60.0).returncode == 0, gw.log_tail()
        (act,) = gw.wait_activations(1)
        assert act["outcome"] == "answered"
        activation_id, entries = act["activation_id"], len(act["timeline"])
        assert gw.stop() == 0
        db = gw.data_dir / "gateway.db"
        assert _row(db, activation_id) == ("answered", entries)
        # What a kill with the end still queued leaves behind: in progress, the last entries missing.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE activations SET outcome = 'in-progress', ended_at = NULL, ended_by = NULL, "
                         "answered_by = NULL WHERE id = ?", (activation_id,))
            conn.execute("DELETE FROM activation_events WHERE activation_id = ? AND seq >= ?",
                         (activation_id, entries - 3))
        gw.start()
        assert wait_for(lambda: _row(db, activation_id) == ("answered", entries), 20.0), (
            _row(db, activation_id), gw.log_tail())
        assert "end replayed from the journal" in gw.log_text()
    finally:
        for agent in agents:
            agent.stop()
        gw.stop()
