"""Errors of the store package: one root, :class:`StoreError`.

Database driver and SQLAlchemy exceptions are translated at the repository boundary
(httpcore ``map_exceptions`` style), so callers catch only these.
"""

from __future__ import annotations


class StoreError(Exception):
    """Root of every exception raised by :mod:`gateway.store`."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or refused the operation (connection, lock, timeout)."""


class StoreIntegrityError(StoreError):
    """A write broke a constraint (duplicate key, missing value)."""


class MigrationError(StoreError):
    """Alembic could not bring the schema to the requested revision."""
