"""Defects found in review of the records store: the writer's error handling, retention races, restart
recovery.  Every test runs on SQLite (memory, file) and PostgreSQL, like the rest of tests/store."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import wave
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.service_records import recover_recording, recover_recordings
from gateway.store import (
    ActivationWriter,
    Records,
    Store,
    StoreError,
    StoreUnavailableError,
    TokenInfo,
    apply_retention,
)
from gateway.store.repository import _map_errors

T0 = 1_793_534_400.0  # 2026-11-01T12:00:00Z
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0


def ended(aid: str, at: float, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        activation_id=aid, help_point="hp-outram", started_at=at, outcome="answered", answered_by="cctv-1",
        answered_room="council", ended_by="hp", duration=42.5, talk_time=30.0, dialplan="town",
        dialplan_version=3, silent=False, timeline=[{"t": 0.0, "event": "offered"},
                                                    {"t": 42.5, "event": "ended", "by": "hp"}])
    values.update(changes)
    return values


# -- the writer: a batch the database refuses for a reason other than a constraint -------------------------


async def test_a_batch_refused_for_its_data_does_not_block_every_later_record(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL a value too long for its column is a DataError (not an IntegrityError): it used to be
    retried forever, so every later activation stayed in memory and ``close()`` never returned."""

    class Refusing(Records):
        async def write_batch(self, ops: Any) -> None:
            if any(values.get("answered_by") == "x" * 100 for _, values in ops):
                # What _map_errors makes of asyncpg's StringDataRightTruncationError.
                raise StoreError("writing activation records: value too long for type character varying(64)")
            await super().write_batch(ops)

    records = Refusing(store)
    writer = ActivationWriter(records, retry_delay=0.01, clock=lambda: T0)
    await writer.start()
    writer.started("bad", "hp-outram", T0, "town", 3, None, None)
    writer.ended(ended("bad", T0, answered_by="x" * 100))
    writer.started("good", "hp-outram", T0 + 1000, "town", 3, None, None)
    writer.ended(ended("good", T0 + 1000))
    with caplog.at_level(logging.ERROR, logger="gateway.store.records"):
        await asyncio.wait_for(writer.close(), 5)
    good = await records.get_activation("good")
    assert good is not None and good.activation.outcome == "answered"
    bad = await records.get_activation("bad")
    assert bad is not None and [e.event for e in bad.events] == ["offered", "ended"]  # only the end was refused
    assert "dropped: ended bad" in caplog.text


async def test_over_long_values_reach_the_database_on_every_backend(store: Store) -> None:
    """The real thing on PostgreSQL: ids longer than their columns must not cost the record."""
    records = Records(store)
    writer = ActivationWriter(records, retry_delay=0.01, clock=lambda: T0)
    await writer.start()
    writer.started("long", "hp-outram", T0, "d" * 200, 3, None, None)
    writer.ended(ended("long", T0, answered_by="p" * 100, answered_room="r" * 100, ended_by="e" * 50,
                       dialplan="d" * 200))
    writer.started("after", "hp-outram", T0 + 1000, "town", 3, None, None)
    writer.ended(ended("after", T0 + 1000))
    await asyncio.wait_for(writer.close(), 10)
    after = await records.get_activation("after")
    assert after is not None and after.activation.outcome == "answered"
    long = await records.get_activation("long")
    assert long is not None and long.activation.outcome == "answered"
    assert long.activation.answered_by is not None and long.activation.answered_by.startswith("ppp")


def test_a_lost_connection_is_unavailable_not_a_refusal() -> None:
    """A PostgreSQL restart (57P01 admin shutdown) or a dropped connection must be retried, not dropped."""

    class Orig(Exception):
        pgcode = "57P01"

    for exc, connection_invalidated in ((DBAPIError("COMMIT", None, Orig("terminating connection"), False), False),
                                        (DBAPIError("INSERT", None, Exception("closed"), False), True)):
        exc.connection_invalidated = connection_invalidated
        with pytest.raises(StoreUnavailableError), _map_errors("writing"):
            raise exc
    data_error = DBAPIError("INSERT", None, type("Orig", (Exception,), {"pgcode": "22001"})("too long"), False)
    with pytest.raises(StoreError) as info, _map_errors("writing"):
        raise data_error
    assert not isinstance(info.value, StoreUnavailableError)


async def test_a_terminated_postgresql_connection_is_retried(store: Store, store_url: tuple[str, str | None]) -> None:
    """``pg_terminate_backend`` is what a PostgreSQL restart does to every connection."""
    url, _ = store_url
    if not url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    records = Records(store)
    writer = ActivationWriter(records, retry_delay=0.01, clock=lambda: T0)
    await writer.start()
    writer.started("before", "hp-outram", T0, "town", 3, None, None)
    await writer.flush()
    async with store.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user=url.split("//")[1].split("@")[0],
                                  database="test")
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    writer.ended(ended("before", T0))
    await asyncio.wait_for(writer.close(), 10)
    before = await records.get_activation("before")
    assert before is not None and before.activation.outcome == "answered"


# -- retention: a hold or a classification placed while a run is under way ----------------------------------


async def _recorded(records: Records, tmp_path: Path, aid: str, at: float) -> Path:
    writer = ActivationWriter(records, clock=lambda: at)
    await writer.start()
    writer.started(aid, "hp-outram", at, "town", 3, "rtsp://cam/1", "Outram Street")
    writer.ended(ended(aid, at))
    path = tmp_path / f"{aid}.wav"
    path.write_bytes(aid.encode() * 100)
    writer.recording(aid, str(path), 3.0, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    await writer.close()
    return path


@pytest.mark.parametrize("change", ["hold", "genuine"])
async def test_retention_keeps_evidence_held_or_reclassified_after_the_run_chose_it(
        store: Store, tmp_path: Path, change: str) -> None:
    """A run picks a page of due activations, then purges them one by one: an auditor's hold (or a
    classification as genuine) that lands in between used to be checked only after the files were gone."""
    auditor = TokenInfo("aud-1", "auditor")

    class Racing(Records):
        raced = False

        def _session(self, action: str) -> AbstractAsyncContextManager[AsyncSession]:
            @asynccontextmanager
            async def session() -> AsyncIterator[AsyncSession]:
                if not self.raced and (action.startswith("reading recordings of")
                                       or action.startswith("purging")):
                    self.raced = True  # the auditor acts just after the run decided
                    if change == "hold":
                        await self.set_hold("evidence", True, actor=auditor)
                    else:
                        await self.classify("evidence", "genuine", "assault", actor=auditor)
                async with super(Racing, self)._session(action) as inner:
                    yield inner

            return session()

    records = Racing(store)
    path = await _recorded(records, tmp_path, "evidence", T0 - 40 * DAY)
    report = await apply_retention(records, now=NOW)
    assert records.raced
    assert path.exists()
    assert report.purged == []
    detail = await records.get_activation("evidence")
    assert detail is not None and detail.recordings[0].deleted_at is None
    assert detail.activation.location == "Outram Street" and detail.activation.purged_at is None


# -- start-up: recordings of activations a crash left in progress -------------------------------------------


def stereo_wav(path: Path, seconds: float) -> None:
    """A stereo 8 kHz 16-bit WAV of ``seconds`` (a recording left on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\x01\x00" * 2 * int(8000 * seconds))


def _gateway(tmp_path: Path, records: Records, writer: ActivationWriter) -> Any:
    journal: list[tuple[Any, ...]] = []
    return SimpleNamespace(config=SimpleNamespace(data_dir=str(tmp_path)), records=records, activations=writer,
                           summaries=SimpleNamespace(append_recording=lambda *a: journal.append(a)))


async def test_a_recording_sealed_before_the_crash_is_linked_to_the_interrupted_activation(
        store: Store, tmp_path: Path) -> None:
    """The call ended and its recording was sealed, but the gateway died with the end and the recording
    row still queued: the next start marks the activation interrupted and must still link the evidence."""
    records = Records(store)
    first = ActivationWriter(records, clock=lambda: T0)
    await first.start()
    first.started("crash", "hp-outram", T0, "town", 3, None, None)
    await first.flush()
    path = tmp_path / "recordings" / "crash.wav"
    stereo_wav(path, 2.5)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  crash.wav\n")

    second = ActivationWriter(records, clock=lambda: T0 + 600)
    assert await second.start() == ["crash"]
    recover_recording(_gateway(tmp_path, records, second), "crash")
    await second.close()
    await first.close()
    detail = await records.get_activation("crash")
    assert detail is not None and len(detail.recordings) == 1
    recording = detail.recordings[0]
    assert (recording.path, recording.sha256, recording.size, recording.duration) == (
        str(path), digest, path.stat().st_size, 2.5)


async def test_start_up_recovery_does_not_link_a_recording_twice(store: Store, tmp_path: Path) -> None:
    records = Records(store)
    first = ActivationWriter(records, clock=lambda: T0)
    await first.start()
    first.started("linked", "hp-outram", T0, "town", 3, None, None)
    path = tmp_path / "recordings" / "linked.wav"
    stereo_wav(path, 1.0)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  linked.wav\n")
    first.recording("linked", str(path), 1.0, digest, path.stat().st_size)
    await first.close()

    second = ActivationWriter(records, clock=lambda: T0 + 600)
    interrupted = await second.start()
    assert interrupted == ["linked"]
    await recover_recordings(_gateway(tmp_path, records, second), interrupted)
    await second.close()
    detail = await records.get_activation("linked")
    assert detail is not None and len(detail.recordings) == 1


async def test_a_batch_retried_after_a_lost_commit_acknowledgement_links_each_recording_once(
        store: Store, tmp_path: Path) -> None:
    """The connection drops after COMMIT reached the server: the writer retries a batch that was written."""

    class LostAck(Records):
        lost = 1

        async def write_batch(self, ops: Any) -> None:
            await super().write_batch(ops)
            if self.lost:
                self.lost -= 1
                raise StoreUnavailableError("connection lost while committing")

    records = LostAck(store)
    writer = ActivationWriter(records, retry_delay=0.01, clock=lambda: T0)
    await writer.start()
    writer.started("ack", "hp-outram", T0, "town", 3, None, None)
    writer.ended(ended("ack", T0))
    writer.recording("ack", str(tmp_path / "ack.wav"), 3.0, "ab" * 32, 100)
    await asyncio.wait_for(writer.close(), 10)
    detail = await records.get_activation("ack")
    assert detail is not None and detail.activation.outcome == "answered"
    assert len(detail.recordings) == 1 and [e.event for e in detail.events] == ["offered", "ended"]
