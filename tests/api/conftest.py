"""API fixtures: the real application over a real store (SQLite in memory, and PostgreSQL), with fake
call-control functions, and one token per role.

PostgreSQL is the server at 127.0.0.1:5432 (trust auth, database ``test``); each test gets its own
schema.  When no server answers, the PostgreSQL cases are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apihelp import PG_DATABASE, PG_HOST, PG_PORT, ROLES, Fakes, pg_admin, services_for

from gateway.api import create_app
from gateway.store import Records, Store, create_token


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A store migrated to head, on each backend."""
    if request.param == "sqlite":
        store = Store.create("sqlite+aiosqlite://")
        admin = schema = None
    else:
        admin, user = await pg_admin()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        store = Store.create(f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}", schema=schema)
    try:
        await store.upgrade()
        yield store
    finally:
        await store.close()
        if admin is not None:
            await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.close()


@pytest.fixture
def records(store: Store) -> Records:
    """The records repository over the store."""
    return Records(store)


@pytest.fixture
async def tokens(store: Store) -> dict[str, str]:
    """One live token per role."""
    return {role: await create_token(store, f"{role}-1", role) for role in ROLES}


@pytest.fixture
def fakes() -> Fakes:
    """Fresh fake call-control functions."""
    return Fakes()


@pytest.fixture
async def client(records: Records, fakes: Fakes) -> AsyncIterator[TestClient[Any, Any]]:
    """A test client of the full application."""
    async with TestClient(TestServer(create_app(services_for(records, fakes)))) as client:
        yield client


