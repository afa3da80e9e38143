"""SQLAlchemy 2 declarative models of the gateway's database.

Tables are created and changed only by the Alembic migrations in ``migrations/versions``; these
models must match them (``tests/store`` compares the two).  Timestamps are timezone-aware UTC
``datetime`` values in Python on every backend (:class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ActivationEventRow",
    "ActivationRow",
    "ApiTokenRow",
    "AuditRow",
    "Base",
    "CredentialRow",
    "DialplanVersionRow",
    "HelpPointRow",
    "PositionRow",
    "RecordingRow",
    "RegistrationRow",
    "UTCDateTime",
    "metadata",
]

# Deterministic constraint names, so migrations can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; convert aware ones to UTC (naive UTC on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to what SQLite returns naive; normalise the rest to UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base bound to :data:`metadata`."""

    metadata = metadata


class CredentialRow(Base):
    """Digest secrets of one user in one realm: HA1 hashes only, never the password."""

    __tablename__ = "credentials"

    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    realm: Mapped[str] = mapped_column(String(255), primary_key=True)
    ha1_md5: Mapped[str] = mapped_column(String(32))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RegistrationRow(Base):
    """One binding of an address-of-record to a Contact (RFC 3261 §10)."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("aor", "contact"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aor: Mapped[str] = mapped_column(String(255), index=True)
    contact: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    call_id: Mapped[str] = mapped_column(String(255))
    cseq: Mapped[int] = mapped_column(Integer)
    source_host: Mapped[str] = mapped_column(String(64))
    source_port: Mapped[int] = mapped_column(Integer)
    transport: Mapped[str] = mapped_column(String(8))
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    q: Mapped[float | None] = mapped_column(Float, nullable=True)


# -- activation records (migration 0002) ------------------------------------------------------


class HelpPointRow(Base):
    """A help point as the inventory (sip-config/help-points.yaml) last described it."""

    __tablename__ = "help_points"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    sip_user: Mapped[str] = mapped_column(String(128))
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    address: Mapped[str | None] = mapped_column(Text, nullable=True)
    camera_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean)
    """False once the help point left the inventory (kept: activations refer to it)."""
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PositionRow(Base):
    """An operator position of a control room, as the inventory (operators.yaml) last described it."""

    __tablename__ = "positions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    room: Mapped[str] = mapped_column(String(64), index=True)
    room_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    sip_user: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivationRow(Base):
    """One help-point press: written when the INVITE arrives, updated as the call progresses."""

    __tablename__ = "activations"
    # Keyset pagination newest first, alone or after one equality filter: each index ends in (started_at, id).
    __table_args__ = (
        Index("ix_activations_started_at_id", "started_at", "id"),
        Index("ix_activations_help_point_started", "help_point", "started_at", "id"),
        Index("ix_activations_outcome_started", "outcome", "started_at", "id"),
        Index("ix_activations_room_started", "answered_room", "started_at", "id"),
        Index("ix_activations_classification_started", "classification", "started_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    help_point: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    """in-progress, answered, unanswered, abandoned, failed, interrupted."""
    answered_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    answered_room: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    talk_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    dialplan: Mapped[str | None] = mapped_column(String(128), nullable=True)
    dialplan_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    silent: Mapped[bool] = mapped_column(Boolean, default=False)
    classification: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    linked_to: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    """The first activation of a chain of repeat presses this one belongs to."""
    hold: Mapped[bool] = mapped_column(Boolean, default=False)
    """Retention hold: while set, nothing of this activation is deleted."""
    camera_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    location: Mapped[str | None] = mapped_column(Text, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """When retention deleted this activation's recordings and personal data."""


class ActivationEventRow(Base):
    """One timeline entry of an activation: ``t`` seconds after the start, ``event``, the rest in ``data``."""

    __tablename__ = "activation_events"

    activation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("activations.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    t: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class RecordingRow(Base):
    """A recording file of an activation, sealed with its SHA-256 and size."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("activations.id", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    retention_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DialplanVersionRow(Base):
    """A dialplan set that was put in force."""

    __tablename__ = "dialplan_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64))
    files: Mapped[list[str]] = mapped_column(JSON)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    """One accountable action: every change made through the API and every recording access."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApiTokenRow(Base):
    """An API bearer token: only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
