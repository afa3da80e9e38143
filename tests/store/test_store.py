"""The Store repository on SQLite (memory and file) and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.registrar import Algorithm, ha1
from gateway.store import (
    Store,
    StoredBinding,
    StoreError,
    StoreUnavailableError,
    default_url,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
AOR = "sip:council-cctv-1@gw.example"


def binding(contact: str, seconds: float, *, aor: str = AOR, q: float | None = None) -> StoredBinding:
    return StoredBinding(
        aor=aor,
        contact=contact,
        expires_at=NOW + timedelta(seconds=seconds),
        call_id="reg-1@10.1.2.3",
        cseq=7,
        source_host="203.0.113.7",
        source_port=40123,
        transport="UDP",
        user_agent="Linphone/5.2",
        q=q,
    )


async def test_credentials_are_stored_as_ha1_only(store: Store) -> None:
    saved = await store.set_credentials("council-cctv-1", "gw.example", "demo-council-cctv-1", now_utc=NOW)
    got = await store.get_credentials("council-cctv-1", "gw.example")
    assert got == saved
    assert got.ha1_md5 == ha1("council-cctv-1", "gw.example", "demo-council-cctv-1", Algorithm.MD5)
    assert got.ha1_sha256 == ha1("council-cctv-1", "gw.example", "demo-council-cctv-1", Algorithm.SHA_256)
    assert got.updated_at == NOW and got.updated_at.tzinfo is not None
    async with store.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM credentials"))).all()
    assert len(rows) == 1
    assert not any("demo-council-cctv-1" in str(value) for value in rows[0])


async def test_set_credentials_replaces_and_realms_are_separate(store: Store) -> None:
    await store.set_credentials("u", "gw.example", "old", now_utc=NOW)
    await store.set_credentials("u", "other.example", "other", now_utc=NOW)
    later = NOW + timedelta(hours=1)
    await store.set_credentials("u", "gw.example", "new", now_utc=later)
    got = await store.get_credentials("u", "gw.example")
    assert got is not None
    assert (got.ha1_sha256, got.updated_at) == (ha1("u", "gw.example", "new"), later)
    other = await store.get_credentials("u", "other.example")
    assert other is not None and other.ha1_md5 == ha1("u", "other.example", "other", Algorithm.MD5)
    assert await store.get_credentials("nobody", "gw.example") is None
    assert await store.delete_credentials("u", "other.example") is True
    assert await store.delete_credentials("u", "other.example") is False
    assert await store.get_credentials("u", "other.example") is None


async def test_set_credentials_validates_input(store: Store) -> None:
    with pytest.raises(ValueError, match="empty"):
        await store.set_credentials("", "gw.example", "x")
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.set_credentials("u", "gw.example", "x", now_utc=datetime(2026, 1, 1))
    saved = await store.set_credentials("u", "gw.example", "x")  # defaults to the current UTC time
    assert saved.updated_at.tzinfo is not None


async def test_save_bindings_replaces_the_aor_set(store: Store) -> None:
    other = binding("sip:hp@10.9.9.9", 60, aor="sip:hp-outram-street@gw.example")
    await store.save_bindings(other.aor, [other])
    await store.save_bindings(AOR, [binding("sip:a@10.1.2.3", 60), binding("sip:b@10.1.2.4", 120, q=0.5)])
    assert [b.contact for b in await store.load_bindings()] == [
        "sip:a@10.1.2.3",
        "sip:b@10.1.2.4",
        "sip:hp@10.9.9.9",
    ]

    await store.save_bindings(AOR, [binding("sip:b@10.1.2.4", 300, q=0.5)])  # refresh one, drop one
    loaded = await store.load_bindings()
    assert loaded == [binding("sip:b@10.1.2.4", 300, q=0.5), other]
    assert all(b.expires_at.tzinfo is not None for b in loaded)

    await store.save_bindings(AOR, [])  # wildcard de-registration
    assert await store.load_bindings() == [other]


async def test_save_bindings_refuses_bad_values(store: Store) -> None:
    with pytest.raises(ValueError, match="saved under"):
        await store.save_bindings("sip:someone-else@gw.example", [binding("sip:a@h", 60)])
    naive = StoredBinding(AOR, "sip:a@h", datetime(2026, 1, 1), "c", 1, "h", 1, "UDP")
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.save_bindings(AOR, [naive])
    assert await store.load_bindings() == []


async def test_expiry_filters_and_sweep(store: Store) -> None:
    await store.save_bindings(AOR, [binding("sip:a@h1", 60), binding("sip:b@h2", 120)])
    plus_two = timezone(timedelta(hours=2))  # any aware zone is accepted and converted
    assert [
        b.contact
        for b in await store.load_bindings(live_at=(NOW + timedelta(seconds=60)).astimezone(plus_two))
    ] == ["sip:b@h2"]
    assert await store.delete_expired(NOW + timedelta(seconds=59)) == 0
    assert await store.delete_expired(NOW + timedelta(seconds=60)) == 1
    assert [b.contact for b in await store.load_bindings()] == ["sip:b@h2"]
    with pytest.raises(ValueError):
        await store.delete_expired(datetime(2026, 1, 1))


async def test_bindings_survive_a_restart(store_url: tuple[str, str | None]) -> None:
    url, schema = store_url
    if url == "sqlite+aiosqlite://":
        pytest.skip("an in-memory database does not outlive its engine")
    first = Store.create(url, schema=schema)
    await first.upgrade()
    await first.save_bindings(AOR, [binding("sip:a@h1", 600)])
    await first.close()
    second = Store.create(url, schema=schema)
    try:
        await second.upgrade()  # idempotent at head
        assert await second.load_bindings() == [binding("sip:a@h1", 600)]
    finally:
        await second.close()


async def test_queries_before_migration_raise_store_errors(empty_store: Store) -> None:
    with pytest.raises(StoreError, match="reading credentials"):
        await empty_store.get_credentials("u", "r")


async def test_unreachable_postgresql_is_store_unavailable() -> None:
    store = Store.create("postgresql+asyncpg://postgres@127.0.0.1:9/test")
    try:
        with pytest.raises(StoreUnavailableError, match="reading credentials"):
            await store.get_credentials("u", "r")
    finally:
        await store.close()


async def test_sqlite_file_uses_wal_and_creates_the_data_dir(tmp_path: Path) -> None:
    url = default_url(tmp_path / "nested" / "data")
    assert url == f"sqlite+aiosqlite:///{tmp_path}/nested/data/gateway.db"
    store = Store.create(url)
    try:
        await store.upgrade()
        async with store.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (tmp_path / "nested" / "data" / "gateway.db").exists()
    finally:
        await store.close()


def test_schema_argument_is_postgresql_only() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        Store.create("sqlite+aiosqlite://", schema="x")


def test_store_does_not_import_sip_or_registrar() -> None:
    code = (
        "import sys, gateway.store\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('gateway.sip', 'gateway.registrar')))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
