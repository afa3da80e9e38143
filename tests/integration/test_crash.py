"""kill -9 of the real gateway in the middle of a bridged call: nothing is lost (issue 5).

A help point (SIPp) is bridged to council-cctv-1 (SIPp) and talking when the gateway is killed with
SIGKILL. The gateway is started again on the same data directory: the activation that was in progress is
in the database as ``interrupted`` (with the timeline written before the crash), and the partial
recording is repaired, sealed with a SHA-256 (``.sha256`` beside it) and linked to the activation.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import wave
from pathlib import Path

import pytest
from calls_harness import CallGateway, SippAgent, answering_operator, calling_help_point, single_room_dialplan
from sip_harness import wait_for

pytestmark = pytest.mark.integration


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def test_kill_9_mid_call_leaves_an_interrupted_record_and_a_sealed_partial_recording(
    sipp: str, tmp_path: Path
) -> None:
    gw = CallGateway(tmp_path, single_room_dialplan())
    agents: list[SippAgent] = []
    try:
        gw.start()
        agents.append(answering_operator(sipp, gw, tmp_path))
        agents.append(calling_help_point(sipp, gw, tmp_path, hold_ms=30000))
        db = gw.data_dir / "gateway.db"
        # Wait until the call is bridged and its row and first events are in the database.
        assert wait_for(lambda: db.exists() and rows(
            db, "select count(*) from activation_events e join activations a on a.id = e.activation_id "
                "where e.event = 'bridged'")[0][0] == 1, 20.0), gw.log_tail()
        time.sleep(3.0)  # three seconds of bridged audio go to disk
        (activation_id,) = rows(db, "select id from activations")[0]
        gw.kill()  # SIGKILL: no drain, no flush, no seal
        wav = gw.data_dir / "recordings" / f"{activation_id}.wav"
        assert wav.exists() and not Path(f"{wav}.sha256").exists()

        gw.start()  # same data directory
        assert wait_for(lambda: rows(db, f"select count(*) from recordings where activation_id = '{activation_id}'")
                        [0][0] == 1, 20.0), gw.log_tail()
        outcome, ended_at = rows(db, f"select outcome, ended_at from activations where id = '{activation_id}'")[0]
        assert outcome == "interrupted" and ended_at is not None
        events = [e for (e,) in rows(db, f"select event from activation_events where activation_id = "
                                         f"'{activation_id}' order by seq")]
        assert events[:1] == ["offered"] and "bridged" in events
        path, sha256, duration = rows(db, f"select path, sha256, duration from recordings where "
                                          f"activation_id = '{activation_id}'")[0]
        data = Path(path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha256
        assert Path(f"{path}.sha256").read_text().split()[0] == sha256
        with wave.open(path) as w:  # repaired: a valid WAV whose header matches its data
            assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
            seconds = w.getnframes() / 8000
        assert seconds >= 2.0 and abs(seconds - duration) < 0.05, (seconds, duration)
        assert "partial recording recovered" in gw.log_text()
    finally:
        for agent in agents:
            agent.stop()
        gw.stop()
