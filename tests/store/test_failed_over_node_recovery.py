"""Start-up recovery on a node of an active/standby pair (ops/ha) that shares its database with its peer.

Node A dies (SIGKILL, power) with one call just ended (its end and recording row still queued: only A's
journal and A's disk have them) and one call up (a partial WAV on A's disk).  Node B takes over and, at its
start, marks both activations interrupted: B's journal and disk have nothing of them.  When A's gateway
starts again later (it becomes the VIP holder again), it must still make up for what only it has: replay the
end from its journal and link (or repair and link) its recordings.  Before the fix A's start only looked at
the activations *it* marked interrupted, which B had already done, so the answered call stayed
``interrupted`` and the evidential recordings stayed unlinked for ever.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from test_records_review import stereo_wav

from gateway.config import RecordsConfig
from gateway.service_records import start_records
from gateway.store import Store

T0 = 1_793_534_400.0  # 2026-11-01T12:00:00Z


class _Journal:
    """The part of the activation journal start-up uses, over a list of documents."""

    def __init__(self, docs: list[dict[str, Any]] | None = None) -> None:
        self.docs = list(docs or [])

    def read_tail(self, max_bytes: int) -> list[dict[str, Any]]:
        return list(self.docs)

    def append_recording(self, activation_id: str, path: str, duration: float, digest: str) -> None:
        self.docs.append({"recording": {"activation_id": activation_id, "path": path, "duration": duration,
                                        "sha256": digest}})


def _node(store: Store, data_dir: Path, journal: _Journal) -> Any:
    """What start_records reads of a Gateway."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = SimpleNamespace(data_dir=str(data_dir), records=RecordsConfig())
    return SimpleNamespace(config=config, store=store, summaries=journal,
                           inventory=SimpleNamespace(help_points=(), rooms=()), records=None, activations=None)


def _ended(aid: str) -> dict[str, Any]:
    return dict(activation_id=aid, help_point="hp-outram", started_at=T0, outcome="answered",
                answered_by="cctv-1", answered_room="council", ended_by="hp", duration=42.5, talk_time=30.0,
                dialplan="town", dialplan_version=3, silent=False,
                timeline=[{"t": 0.0, "event": "offered"}, {"t": 42.5, "event": "ended", "by": "hp"}])


async def test_a_node_that_rejoins_recovers_what_only_its_journal_and_disk_hold(store: Store, tmp_path: Path) -> None:
    # Node A, before it dies: two activations in the shared database, both still in progress there.
    a_dir = tmp_path / "node-a"
    a = _node(store, a_dir, _Journal())
    await start_records(a)
    a.activations.started("ended-on-a", "hp-outram", T0, "town", 3, None, None)
    a.activations.started("up-on-a", "hp-outram", T0 + 5, "town", 3, None, None)
    await a.activations.flush()
    await a.activations.close()
    # ... what only A has: the first call's end in its journal, its sealed recording; the second's partial WAV.
    a.summaries.docs.append(_ended("ended-on-a"))
    sealed = a_dir / "recordings" / "ended-on-a.wav"
    stereo_wav(sealed, 2.5)
    digest = hashlib.sha256(sealed.read_bytes()).hexdigest()
    Path(f"{sealed}.sha256").write_text(f"{digest}  ended-on-a.wav\n")
    stereo_wav(a_dir / "recordings" / "up-on-a.wav", 1.0)

    # Node B takes over: its start marks both interrupted; it has nothing of them.
    b = _node(store, tmp_path / "node-b", _Journal())
    await start_records(b)
    await b.activations.close()
    for aid in ("ended-on-a", "up-on-a"):
        detail = await b.records.get_activation(aid)
        assert detail is not None and detail.activation.outcome == "interrupted"
        assert detail.recordings == []

    # Later node A's gateway starts again (it took the VIP back).
    a2 = _node(store, a_dir, a.summaries)
    await start_records(a2)
    await a2.activations.flush()
    await a2.activations.close()

    ended = await a2.records.get_activation("ended-on-a")
    assert ended is not None
    assert (ended.activation.outcome, ended.activation.answered_by, ended.activation.ended_by) == (
        "answered", "cctv-1", "hp")
    assert [e.event for e in ended.events] == ["offered", "ended"]
    assert [(r.path, r.sha256) for r in ended.recordings] == [(str(sealed), digest)]

    up = await a2.records.get_activation("up-on-a")
    assert up is not None and up.activation.outcome == "interrupted"
    assert len(up.recordings) == 1 and up.recordings[0].duration == 1.0
    assert Path(f"{a_dir / 'recordings' / 'up-on-a.wav'}.sha256").exists()

    # And a further start changes nothing (no second link, no second replay).
    a3 = _node(store, a_dir, a.summaries)
    await start_records(a3)
    await a3.activations.flush()
    await a3.activations.close()
    for aid in ("ended-on-a", "up-on-a"):
        detail = await a3.records.get_activation(aid)
        assert detail is not None and len(detail.recordings) == 1
