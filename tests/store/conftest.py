"""Store fixtures: every store test runs on in-memory SQLite, file SQLite (WAL) and PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (trust auth, database ``test``, user ``postgres`` or
``root``).  Each test gets its own schema, dropped afterwards.  If no server answers, the
PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.store import Store, default_url

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")


async def _pg_connect() -> tuple[asyncpg.Connection, str]:
    errors = []
    for user in PG_USERS:
        try:
            connection = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database=PG_DATABASE, timeout=3
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            errors.append(f"{user}: {exc!r}")
            continue
        return connection, user
    pytest.skip(f"no PostgreSQL server at {PG_HOST}:{PG_PORT}/{PG_DATABASE} ({'; '.join(errors)})")


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, str | None]]:
    """(URL, schema) of an empty database."""
    if request.param == "sqlite-memory":
        yield "sqlite+aiosqlite://", None
    elif request.param == "sqlite-file":
        yield default_url(tmp_path / "data"), None
    else:
        admin, user = await _pg_connect()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}", schema
        finally:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()


@pytest.fixture
async def empty_store(store_url: tuple[str, str | None]) -> AsyncIterator[Store]:
    """A store on an empty database (no migrations run)."""
    url, schema = store_url
    store = Store.create(url, schema=schema)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(empty_store: Store) -> Store:
    """A store migrated to head."""
    await empty_store.upgrade()
    return empty_store
