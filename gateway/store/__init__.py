"""Persistence: SQLAlchemy 2 async models, Alembic migrations and the :class:`Store` repository.

A sibling of :mod:`gateway.sip`: it imports neither ``gateway.sip`` nor ``gateway.registrar``.
"""

from .errors import MigrationError, StoreError, StoreIntegrityError, StoreUnavailableError
from .records import (
    ActivationWriter,
    RecordingMismatch,
    Records,
    TokenInfo,
    apply_retention,
    create_token,
    retention_forever,
    verify_recordings,
)
from .repository import MIGRATIONS_DIR, Store, StoredBinding, StoredCredentials, default_url

__all__ = [
    "MIGRATIONS_DIR",
    "ActivationWriter",
    "RecordingMismatch",
    "Records",
    "TokenInfo",
    "apply_retention",
    "create_token",
    "retention_forever",
    "verify_recordings",
    "MigrationError",
    "Store",
    "StoreError",
    "StoreIntegrityError",
    "StoreUnavailableError",
    "StoredBinding",
    "StoredCredentials",
    "default_url",
]
