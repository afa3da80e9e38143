"""Activation records on SQLite (memory, file) and PostgreSQL: migration 0002, the ActivationWriter
(queue, overflow, interrupted marking, repeat links), tokens, inventory sync, retention and verification."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from gateway import metrics
from gateway.calls.events import CallSummary
from gateway.records import RetentionPolicy
from gateway.store import (
    ActivationWriter,
    Records,
    Store,
    StoreUnavailableError,
    apply_retention,
    create_token,
    verify_recordings,
)
from gateway.store.models import ActivationEventRow, ActivationRow, AuditRow, RecordingRow

T0 = 1_793_534_400.0  # 2026-11-01T12:00:00Z
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
RECORD_TABLES = {"help_points", "positions", "activations", "activation_events", "recordings",
                 "dialplan_versions", "audit_log", "api_tokens"}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def summary(aid: str, at: float, **changes: Any) -> CallSummary:
    values: dict[str, Any] = dict(
        activation_id=aid, help_point="hp-outram", started_at=at, outcome="answered", answered_by="cctv-1",
        answered_room="council", ended_by="hp", duration=42.5, talk_time=30.0, dialplan="town",
        dialplan_version=3, timeline=[{"t": 0.0, "event": "offered"}, {"t": 2.0, "event": "ringing", "leg": "x"},
                                      {"t": 42.5, "event": "ended", "by": "hp"}])
    values.update(changes)
    return CallSummary(**values)


async def events_of(store: Store, aid: str) -> list[tuple[int, float, str, dict[str, Any]]]:
    async with store.engine.connect() as connection:
        rows = (await connection.execute(
            select(ActivationEventRow.seq, ActivationEventRow.t, ActivationEventRow.event, ActivationEventRow.data)
            .where(ActivationEventRow.activation_id == aid).order_by(ActivationEventRow.seq))).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


# -- migration --------------------------------------------------------------------------------------


async def test_migration_0002_up_and_down(empty_store: Store) -> None:
    await empty_store.upgrade("0001")
    await empty_store.set_credentials("hp1", "realm", "pw")
    await empty_store.upgrade("0002")
    assert await empty_store.current_revision() == "0002"
    async with empty_store.engine.connect() as connection:
        assert RECORD_TABLES <= await connection.run_sync(_tables)
    await empty_store.downgrade("0001")
    assert await empty_store.current_revision() == "0001"
    async with empty_store.engine.connect() as connection:
        assert not RECORD_TABLES & await connection.run_sync(_tables)
    assert await empty_store.get_credentials("hp1", "realm") is not None  # 0001's data survives
    await empty_store.upgrade()
    await empty_store.downgrade()
    async with empty_store.engine.connect() as connection:
        assert await connection.run_sync(_tables) <= {"alembic_version"}


# -- the writer --------------------------------------------------------------------------------------


async def test_started_events_ended_make_one_record(store: Store) -> None:
    records = Records(store)
    writer = ActivationWriter(records, clock=lambda: T0)
    assert await writer.start() == []
    assert writer.started("a1", "hp-outram", T0, "town", 3, "rtsp://cam/1", "Outram St") is None
    writer.event("a1", {"t": 0.0, "event": "offered"})
    writer.event("a1", {"t": 2.0, "event": "ringing", "leg": "x"})
    writer.ended(summary("a1", T0))
    await writer.close()
    detail = await records.get_activation("a1")
    assert detail is not None
    row = detail.activation
    assert (row.outcome, row.answered_room, row.duration, row.camera_url, row.location) == (
        "answered", "council", 42.5, "rtsp://cam/1", "Outram St")
    assert row.started_at == NOW and row.ended_at == NOW + timedelta(seconds=42.5)
    assert await events_of(store, "a1") == [(0, 0.0, "offered", {}), (1, 2.0, "ringing", {"leg": "x"}),
                                            (2, 42.5, "ended", {"by": "hp"})]


async def test_the_write_path_leaves_no_reference_cycles_behind(store: Store) -> None:
    """`gateway serve` runs with the cyclic garbage collector off (gateway/calls/heap.py): what the writer
    builds for each batch (statements, bind parameters) must be freed by reference counting alone."""
    records = Records(store)
    writer = ActivationWriter(records, clock=lambda: T0)
    await writer.start()

    async def one_call(aid: str) -> None:
        writer.started(aid, "hp-outram", T0, "town", 3, None, None)
        writer.event(aid, {"t": 0.0, "event": "offered"})
        await writer.flush()  # the end comes in a later batch: the existing-row query and the update
        writer.ended(summary(aid, T0))
        writer.recording(aid, f"/rec/{aid}.wav", 42.5, "ab" * 32, 1000)
        await writer.flush()

    await one_call("warm-up")  # first executions compile and cache statements: kept, not garbage
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for n in range(5):
            await one_call(f"a{n}")
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if type(o).__module__.startswith("sqlalchemy.sql")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    await writer.close()
    assert [type(o).__name__ for o in left] == []
    detail = await records.get_activation("a4")
    assert detail is not None and detail.activation.outcome == "answered" and len(detail.recordings) == 1


async def test_ended_alone_creates_the_record_with_its_timeline(store: Store) -> None:
    records = Records(store)
    writer = ActivationWriter(records, clock=lambda: T0)
    await writer.start()
    writer.ended(dataclasses.asdict(summary("solo", T0, outcome="unanswered", silent=True)))
    await writer.close()
    detail = await records.get_activation("solo")
    assert detail is not None and detail.activation.outcome == "unanswered" and detail.activation.silent
    assert [e.event for e in detail.events] == ["offered", "ringing", "ended"]


async def test_kill_mid_call_leaves_an_interrupted_record(store: Store) -> None:
    """A writer that never sees ``ended`` (the process died); the next start marks the call interrupted."""
    records = Records(store)
    first = ActivationWriter(records, clock=lambda: T0)
    await first.start()
    first.started("mid", "hp-outram", T0, "town", 3, None, None)
    first.event("mid", {"t": 0.0, "event": "offered"})
    first.event("mid", {"t": 17.25, "event": "answered", "leg": "cctv-1#1"})
    first.started("done", "hp-portland", T0, "town", 3, None, None)
    first.ended(summary("done", T0, help_point="hp-portland"))
    await first.flush()  # what was written before the kill; the writer is then abandoned

    second = ActivationWriter(records, clock=lambda: T0 + 600)
    assert await second.start() == ["mid"]
    await second.close()
    mid = await records.get_activation("mid")
    done = await records.get_activation("done")
    assert mid is not None and done is not None
    assert (mid.activation.outcome, mid.activation.duration, mid.activation.ended_by) == ("interrupted", 17.25,
                                                                                         "gateway")
    assert mid.activation.ended_at == NOW + timedelta(seconds=600)
    assert done.activation.outcome == "answered"
    await first.close()


async def test_repeat_presses_link_to_the_first_of_the_chain_across_a_restart(store: Store) -> None:
    records = Records(store)
    writer = ActivationWriter(records, repeat_window=120, clock=lambda: T0)
    await writer.start()
    assert writer.started("p1", "hp-outram", T0, "town", 3, None, None) is None
    assert writer.started("p2", "hp-outram", T0 + 100, "town", 3, None, None) == "p1"
    assert writer.started("other", "hp-portland", T0 + 110, "town", 3, None, None) is None
    assert writer.started("p3", "hp-outram", T0 + 215, "town", 3, None, None) == "p1"
    assert writer.started("p4", "hp-outram", T0 + 400, "town", 3, None, None) is None
    await writer.close()
    # A restart seeds the linker from the database: a press 60 s after p4 still links.
    restarted = ActivationWriter(records, repeat_window=120, clock=lambda: T0 + 420)
    await restarted.start()
    assert restarted.started("p5", "hp-outram", T0 + 460, "town", 3, None, None) == "p4"
    await restarted.close()
    detail = await records.get_activation("p1")
    assert detail is not None and detail.linked == ["p2", "p3"]


async def test_full_queue_drops_events_loudly_but_never_an_end(store: Store,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    records = Records(store)
    writer = ActivationWriter(records, max_queue=5, clock=lambda: T0)
    dropped = metrics.DB_WRITES_DROPPED.labels("event")._value.get()
    with caplog.at_level(logging.ERROR, logger="gateway.store.records"):
        for i in range(4):  # the consumer is not running yet: the queue fills
            writer.started(f"q{i}", "hp-outram", T0 + i * 1000, "town", 3, None, None)
        writer.event("q0", {"t": 0.0, "event": "offered"})
        writer.event("q0", {"t": 1.0, "event": "lost"})
        for i in range(4):
            writer.ended(summary(f"q{i}", T0 + i * 1000, timeline=[]))
        writer.recording("q3", "/r/q3.wav", 1.0, "00" * 32, 10)
    assert "activation write queue FULL" in caplog.text
    assert metrics.DB_WRITES_DROPPED.labels("event")._value.get() == dropped + 1
    assert writer.pending == 10
    await writer.start()
    await writer.close()
    for i in range(4):
        detail = await records.get_activation(f"q{i}")
        assert detail is not None and detail.activation.outcome == "answered"
    q3 = await records.get_activation("q3")
    assert q3 is not None and len(q3.recordings) == 1
    assert writer.pending == 0


async def test_database_outage_is_retried_and_nothing_is_lost(store: Store) -> None:
    class Flaky(Records):
        failures = 2

        async def write_batch(self, ops: Any) -> None:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailableError("database restarting")
            await super().write_batch(ops)

    records = Flaky(store)
    writer = ActivationWriter(records, retry_delay=0, clock=lambda: T0)
    await writer.start()
    writer.started("f1", "hp-outram", T0, "town", 3, None, None)
    writer.ended(summary("f1", T0))
    await writer.close()
    detail = await records.get_activation("f1")
    assert records.failures == 0 and detail is not None and detail.activation.outcome == "answered"


async def test_a_refused_item_is_dropped_alone(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    records = Records(store)
    writer = ActivationWriter(records, clock=lambda: T0)
    await writer.start()
    writer.started("ok", "hp-outram", T0, "town", 3, None, None)
    writer.event("never-started", {"t": 0.0, "event": "offered"})  # foreign key: refused
    writer.ended(summary("ok", T0))
    with caplog.at_level(logging.ERROR, logger="gateway.store.records"):
        await writer.close()
    assert "dropped: event never-started" in caplog.text
    detail = await records.get_activation("ok")
    assert detail is not None and detail.activation.outcome == "answered" and len(detail.events) == 3


async def test_queue_depth_gauge_returns_to_where_it_was(store: Store) -> None:
    before = metrics.DB_QUEUE_DEPTH._value.get()
    writer = ActivationWriter(Records(store), clock=lambda: T0)
    writer.started("g1", "hp-outram", T0, "town", 3, None, None)
    writer.event("g1", {"t": 0.0, "event": "offered"})
    assert metrics.DB_QUEUE_DEPTH._value.get() == before + 2
    await writer.start()
    await writer.close()
    assert metrics.DB_QUEUE_DEPTH._value.get() == before


# -- tokens, inventory, dialplan versions -----------------------------------------------------------------


async def test_tokens(store: Store) -> None:
    records = Records(store)
    token = await create_token(store, "alice", "auditor")
    assert token.startswith("hpg_") and len(token) > 40
    identity = await records.authenticate(token)
    assert identity is not None and (identity.name, identity.role) == ("alice", "auditor")
    assert await records.authenticate(token + "x") is None
    with pytest.raises(ValueError, match="role must be one of"):
        await create_token(store, "bob", "root")
    assert await records.revoke_tokens("alice") == 1
    assert await records.authenticate(token) is None


async def test_sync_inventory_marks_removed_help_points_inactive(store: Store) -> None:
    @dataclasses.dataclass
    class Loc:
        lat: float
        lon: float
        address: str

    @dataclasses.dataclass
    class HP:
        id: str
        name: str
        sip_user: str = "u"
        camera_url: str | None = None
        tags: tuple[str, ...] = ()
        location: Loc = dataclasses.field(default_factory=lambda: Loc(53.1, -1.2, "Outram Street"))

    @dataclasses.dataclass
    class Pos:
        id: str
        name: str
        sip_user: str

    @dataclasses.dataclass
    class Room:
        id: str
        name: str
        positions: tuple[Pos, ...]

    records = Records(store)
    await records.sync_inventory([HP("hp-a", "A"), HP("hp-b", "B")], [Room("council", "CCTV", (Pos("c1", "Desk 1",
                                                                                                "cctv1"),))])
    await records.sync_inventory([HP("hp-b", "B renamed")], [])
    assert [(h.id, h.name, h.active, h.address) for h in await records.list_help_points()] == [
        ("hp-a", "A", False, "Outram Street"), ("hp-b", "B renamed", True, "Outram Street")]
    assert [(p.id, p.room, p.active) for p in await records.list_positions()] == [("c1", "council", False)]
    await records.record_dialplan_version(4, "ab" * 32, ["dialplans/town.yaml"], now=NOW)
    assert [(v.version, v.files) for v in await records.list_dialplan_versions()] == [(4, ["dialplans/town.yaml"])]


# -- retention and verification ----------------------------------------------------------------------------


async def _recorded(records: Records, tmp_path: Path, aid: str, at: float, **changes: Any) -> Path:
    writer = ActivationWriter(records, clock=lambda: at)
    await writer.start()
    writer.started(aid, "hp-outram", at, "town", 3, "rtsp://cam/1", "Outram Street")
    writer.ended(summary(aid, at, **changes))
    path = tmp_path / f"{aid}.wav"
    path.write_bytes(aid.encode() * 100)
    writer.recording(aid, str(path), 3.0, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    await writer.close()
    return path


async def test_retention_deletes_what_is_due_and_audits_it(store: Store, tmp_path: Path) -> None:
    records = Records(store, retention=RetentionPolicy(by_outcome={"abandoned": 7}))
    day = 86400.0
    prank = await _recorded(records, tmp_path, "prank", T0 - 40 * day)
    genuine = await _recorded(records, tmp_path, "genuine", T0 - 40 * day)
    held = await _recorded(records, tmp_path, "held", T0 - 400 * day)
    young = await _recorded(records, tmp_path, "young", T0 - 10 * day)
    abandoned = await _recorded(records, tmp_path, "abandoned", T0 - 10 * day, outcome="abandoned")
    auditor = (await records.authenticate(await create_token(store, "aud", "auditor")))
    assert auditor is not None
    await records.classify("prank", "prank", "kids again", actor=auditor)
    await records.classify("genuine", "genuine", "assault", actor=auditor)
    await records.set_hold("held", True, actor=auditor)

    report = await apply_retention(records, now=NOW)

    assert sorted(p["activation_id"] for p in report.purged) == ["abandoned", "prank"]
    assert not prank.exists() and not abandoned.exists()
    assert genuine.exists() and held.exists() and young.exists()
    detail = await records.get_activation("prank")
    assert detail is not None
    row = detail.activation
    assert (row.location, row.camera_url, row.note, row.classification) == (None, None, None, "prank")
    assert row.purged_at == NOW and detail.recordings[0].deleted_at == NOW
    audit, _ = await records.list_audit(action="retention.delete")
    entries = {a.target: a.detail for a in audit}
    assert entries["prank"]["reason"].startswith("classified prank: 31 days")
    assert entries["prank"]["fields"] == ["location", "camera_url", "note"]
    assert entries["abandoned"]["reason"].startswith("unclassified, abandoned: 7 days")
    assert {a.actor for a in audit} == {"retention"}
    assert (await apply_retention(records, now=NOW)).purged == []  # idempotent
    # A year later the genuine one goes too; the held one never does.
    later = await apply_retention(records, now=NOW + timedelta(days=330))
    assert sorted(p["activation_id"] for p in later.purged) == ["genuine", "young"]
    assert held.exists()


async def test_retention_until_follows_classification_and_hold(store: Store, tmp_path: Path) -> None:
    records = Records(store)
    await _recorded(records, tmp_path, "r1", T0)
    actor = await records.authenticate(await create_token(store, "x", "admin"))
    assert actor is not None

    async def until() -> datetime | None:
        detail = await records.get_activation("r1")
        assert detail is not None
        return detail.recordings[0].retention_until

    assert await until() == NOW + timedelta(days=31)
    await records.classify("r1", "genuine", None, actor=actor)
    assert await until() == NOW + timedelta(days=365)
    await records.set_hold("r1", True, actor=actor)
    assert await until() is None


async def test_verify_recordings_reports_tampered_missing_and_truncated(store: Store, tmp_path: Path) -> None:
    records = Records(store)
    good = await _recorded(records, tmp_path, "good", T0)
    tampered = await _recorded(records, tmp_path, "tampered", T0)
    missing = await _recorded(records, tmp_path, "missing", T0)
    truncated = await _recorded(records, tmp_path, "truncated", T0)
    data = bytearray(tampered.read_bytes())
    data[5] ^= 0xFF
    tampered.write_bytes(bytes(data))
    missing.unlink()
    truncated.write_bytes(truncated.read_bytes()[:-1])
    found = {m.activation_id: m.problem for m in await verify_recordings(store)}
    assert found == {"tampered": "sha256", "missing": "missing", "truncated": "size"}
    assert good.exists()


async def test_audit_rows_are_json(store: Store) -> None:
    records = Records(store)
    actor = await records.authenticate(await create_token(store, "x", "admin"))
    assert actor is not None
    await records.audit(actor, "test.thing", "t1", {"when": NOW, "tuple": (1, 2), "path": Path("/a")})
    async with store.engine.connect() as connection:
        detail = (await connection.execute(select(AuditRow.detail).where(AuditRow.action == "test.thing"))).scalar()
    assert detail == {"when": "2026-11-01T12:00:00Z", "tuple": [1, 2], "path": "/a"}
    async with store.engine.connect() as connection:
        assert (await connection.execute(text("SELECT COUNT(*) FROM audit_log"))).scalar() == 2
    assert ActivationRow.__tablename__ == "activations" and RecordingRow.__tablename__ == "recordings"
