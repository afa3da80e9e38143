"""Alembic migrations, run programmatically: upgrade, downgrade, and models == migrations."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from gateway.store import MigrationError, Store
from gateway.store.models import metadata


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_then_downgrade_then_upgrade(empty_store: Store) -> None:
    assert await empty_store.current_revision() is None
    await empty_store.upgrade()
    assert await empty_store.current_revision() == "0002"
    async with empty_store.engine.connect() as connection:
        assert {"credentials", "registrations", "activations", "activation_events", "recordings", "audit_log",
                "api_tokens", "alembic_version"} <= await connection.run_sync(_tables)

    await empty_store.upgrade()  # already at head: a no-op
    await empty_store.downgrade()
    assert await empty_store.current_revision() is None
    async with empty_store.engine.connect() as connection:
        assert not {"credentials", "registrations"} & await connection.run_sync(_tables)

    await empty_store.upgrade("0001")
    assert await empty_store.current_revision() == "0001"
    async with empty_store.engine.connect() as connection:
        assert "activations" not in await connection.run_sync(_tables)
    await empty_store.upgrade()
    await empty_store.downgrade("0001")  # 0002 down leaves 0001's tables
    async with empty_store.engine.connect() as connection:
        tables = await connection.run_sync(_tables)
        assert "credentials" in tables and "activations" not in tables


async def test_models_match_the_migrations(store: Store) -> None:
    async with store.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_unknown_revision_is_a_migration_error(empty_store: Store) -> None:
    with pytest.raises(MigrationError, match="9999"):
        await empty_store.upgrade("9999")
