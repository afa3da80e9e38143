"""The gateway's persistence: an async SQLAlchemy 2 repository over SQLite or PostgreSQL.

A thin shell: no decisions, just rows in and frozen values out.  Every method translates
SQLAlchemy, driver and Alembic exceptions into :class:`~gateway.store.errors.StoreError`
subclasses.  Timestamps are timezone-aware UTC ``datetime`` values; naive ones are refused.

Usage::

    store = Store.create(default_url(data_dir))      # or "postgresql+asyncpg://..."
    await store.upgrade()                             # Alembic, programmatically, to head
    ...
    await store.close()
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy import delete, event, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from .errors import MigrationError, StoreError, StoreIntegrityError, StoreUnavailableError
from .models import CredentialRow, RegistrationRow

__all__ = ["MIGRATIONS_DIR", "Store", "StoredBinding", "StoredCredentials", "default_url"]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def default_url(data_dir: str | Path) -> str:
    """The embedded database: ``sqlite+aiosqlite:///<data_dir>/gateway.db``."""
    return f"sqlite+aiosqlite:///{Path(data_dir) / 'gateway.db'}"


@dataclass(frozen=True)
class StoredCredentials:
    """Digest secrets of one user in one realm (HA1 hashes, never the password)."""

    username: str
    realm: str
    ha1_md5: str
    ha1_sha256: str
    updated_at: datetime


@dataclass(frozen=True)
class StoredBinding:
    """One persisted registrar binding; ``expires_at`` is UTC."""

    aor: str
    contact: str
    expires_at: datetime
    call_id: str
    cseq: int
    source_host: str
    source_port: int
    transport: str
    user_agent: str | None = None
    q: float | None = None


def _require_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


#: SQLSTATE classes that say "try again": connection exception, serialization failure or deadlock,
#: insufficient resources, operator intervention (shutdown, restart), system error.
_TRANSIENT_SQLSTATES = ("08", "40", "53", "57", "58")


@contextmanager
def _map_errors(action: str) -> Iterator[None]:
    """Translate foreign exceptions into StoreError subclasses, naming what we were doing."""
    try:
        yield
    except StoreError:
        raise
    except IntegrityError as exc:
        raise StoreIntegrityError(f"{action}: {exc.orig}") from exc
    except (OperationalError, InterfaceError, DisconnectionError) as exc:
        raise StoreUnavailableError(f"{action}: {exc.orig if isinstance(exc, DBAPIError) else exc}") from exc
    except DBAPIError as exc:
        # asyncpg's errors outside its few mapped classes arrive as a plain DBAPIError: a server restart
        # (57P01) or a lost connection is transient, a value too long for its column (22001) is not.
        if exc.connection_invalidated or str(getattr(exc.orig, "pgcode", "") or "").startswith(_TRANSIENT_SQLSTATES):
            raise StoreUnavailableError(f"{action}: {exc.orig}") from exc
        raise StoreError(f"{action}: {exc.orig}") from exc
    except CommandError as exc:
        raise MigrationError(f"{action}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"{action}: {exc}") from exc
    except (OSError, TimeoutError) as exc:  # connection refused / unreachable before SQLAlchemy wraps it
        raise StoreUnavailableError(f"{action}: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings: WAL for concurrent readers, and a lock wait."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """``H(username:realm:password)`` as RFC 7616 §3.4.2 defines HA1 (same as the registrar's)."""
    return hashlib.new(algorithm, f"{username}:{realm}:{password}".encode()).hexdigest()


class Store:
    """Async repository over one database URL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def create(cls, url: str, *, schema: str | None = None, echo: bool = False) -> Store:
        """Build a store for ``url`` (no I/O until first use, except creating a SQLite directory).

        ``schema`` (PostgreSQL only) sets the ``search_path``, e.g. for isolated test schemas.
        """
        with _map_errors(f"opening {make_url(url).render_as_string(hide_password=True)}"):
            parsed = make_url(url)
            kwargs: dict[str, Any] = {"echo": echo}
            if parsed.get_backend_name() == "sqlite":
                if schema is not None:
                    raise ValueError("schema= is only supported on PostgreSQL")
                database = parsed.database
                if not database or database == ":memory:":
                    kwargs["poolclass"] = StaticPool  # one shared in-memory database
                    kwargs["connect_args"] = {"check_same_thread": False}
                else:
                    Path(database).parent.mkdir(parents=True, exist_ok=True)
            else:
                kwargs["pool_pre_ping"] = True
                if schema is not None:
                    kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
            engine = create_async_engine(parsed, **kwargs)
            if parsed.get_backend_name() == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return cls(engine)

    @asynccontextmanager
    async def _session(self, action: str) -> AsyncIterator[AsyncSession]:
        with _map_errors(action):
            async with self._sessions() as session, session.begin():
                yield session

    # -- schema ------------------------------------------------------------------------------

    def _alembic(self, connection: Connection, action: str, revision: str) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema up to ``revision`` (Alembic, on our own connection)."""
        with _map_errors(f"upgrading the schema to {revision}"):
            async with self.engine.begin() as connection:
                await connection.run_sync(self._alembic, "upgrade", revision)
        logger.info("database schema at %s", await self.current_revision())

    async def downgrade(self, revision: str = "base") -> None:
        """Migrate the schema down to ``revision`` (``base`` drops every table)."""
        with _map_errors(f"downgrading the schema to {revision}"):
            async with self.engine.begin() as connection:
                await connection.run_sync(self._alembic, "downgrade", revision)

    async def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or None before the first migration."""

        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        with _map_errors("reading the schema revision"):
            async with self.engine.connect() as connection:
                return await connection.run_sync(read)

    # -- credentials -------------------------------------------------------------------------

    async def set_credentials(
        self, username: str, realm: str, password: str, *, now_utc: datetime | None = None
    ) -> StoredCredentials:
        """Store (insert or replace) the HA1 hashes of ``password``; the password is not kept."""
        if not username or not realm:
            raise ValueError("username and realm must not be empty")
        now_utc = _require_utc(now_utc, "now_utc") if now_utc is not None else datetime.now(UTC)
        md5 = _ha1("md5", username, realm, password)
        sha256 = _ha1("sha256", username, realm, password)
        async with self._session(f"setting credentials of {username!r}") as session:
            row = await session.get(CredentialRow, (username, realm))
            if row is None:
                row = CredentialRow(username=username, realm=realm)
                session.add(row)
            row.ha1_md5, row.ha1_sha256, row.updated_at = md5, sha256, now_utc
        return StoredCredentials(username, realm, md5, sha256, now_utc)

    async def get_credentials(self, username: str, realm: str) -> StoredCredentials | None:
        """The HA1 hashes of ``username`` in ``realm``, or None if unknown."""
        async with self._session(f"reading credentials of {username!r}") as session:
            row = await session.get(CredentialRow, (username, realm))
            if row is None:
                return None
            return StoredCredentials(row.username, row.realm, row.ha1_md5, row.ha1_sha256, row.updated_at)

    async def delete_credentials(self, username: str, realm: str) -> bool:
        """Remove a user's credentials; True if there were any."""
        async with self._session(f"deleting credentials of {username!r}") as session:
            result = await session.execute(
                delete(CredentialRow).where(CredentialRow.username == username, CredentialRow.realm == realm)
            )
            return bool(getattr(result, "rowcount", 0))

    # -- bindings ----------------------------------------------------------------------------

    async def save_bindings(self, aor: str, bindings: Iterable[StoredBinding]) -> None:
        """Replace every binding of ``aor`` with ``bindings`` (empty: de-register), atomically."""
        rows = []
        for binding in bindings:
            if binding.aor != aor:
                raise ValueError(f"binding for {binding.aor!r} saved under {aor!r}")
            rows.append(
                RegistrationRow(
                    aor=aor,
                    contact=binding.contact,
                    expires_at=_require_utc(binding.expires_at, "expires_at"),
                    call_id=binding.call_id,
                    cseq=binding.cseq,
                    source_host=binding.source_host,
                    source_port=binding.source_port,
                    transport=binding.transport,
                    user_agent=binding.user_agent,
                    q=binding.q,
                )
            )
        async with self._session(f"saving bindings of {aor}") as session:
            await session.execute(delete(RegistrationRow).where(RegistrationRow.aor == aor))
            await session.flush()
            session.add_all(rows)

    async def load_bindings(self, *, live_at: datetime | None = None) -> list[StoredBinding]:
        """Every stored binding (only those still live at ``live_at`` if given), by AOR then id."""
        query = select(RegistrationRow).order_by(RegistrationRow.aor, RegistrationRow.id)
        if live_at is not None:
            query = query.where(RegistrationRow.expires_at > _require_utc(live_at, "live_at"))
        async with self._session("loading bindings") as session:
            return [
                StoredBinding(
                    aor=row.aor,
                    contact=row.contact,
                    expires_at=row.expires_at,
                    call_id=row.call_id,
                    cseq=row.cseq,
                    source_host=row.source_host,
                    source_port=row.source_port,
                    transport=row.transport,
                    user_agent=row.user_agent,
                    q=row.q,
                )
                for row in (await session.scalars(query)).all()
            ]

    async def delete_expired(self, now_utc: datetime) -> int:
        """Delete bindings expired at ``now_utc``; return how many."""
        cutoff = _require_utc(now_utc, "now_utc")
        async with self._session("deleting expired bindings") as session:
            result = await session.execute(
                delete(RegistrationRow).where(RegistrationRow.expires_at <= cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        """Release every pooled connection."""
        with _map_errors("closing the database"):
            await self.engine.dispose()
