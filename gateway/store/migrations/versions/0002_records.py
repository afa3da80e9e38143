"""Activation records: help points, positions, activations and their timeline, recordings,
dialplan versions, the audit log and API tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Keyset pagination newest first, alone or after one equality filter.
_ACTIVATION_INDEXES = (
    ("ix_activations_started_at_id", ["started_at", "id"]),
    ("ix_activations_help_point_started", ["help_point", "started_at", "id"]),
    ("ix_activations_outcome_started", ["outcome", "started_at", "id"]),
    ("ix_activations_room_started", ["answered_room", "started_at", "id"]),
    ("ix_activations_classification_started", ["classification", "started_at", "id"]),
)


def _ts(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Create the eight record tables and their indexes."""
    op.create_table(
        "help_points",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sip_user", sa.String(128), nullable=False),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("camera_url", sa.Text(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("synced_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_help_points")),
    )
    op.create_table(
        "positions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("room", sa.String(64), nullable=False),
        sa.Column("room_name", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sip_user", sa.String(128), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _ts("synced_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
    )
    op.create_index(op.f("ix_positions_room"), "positions", ["room"])
    op.create_table(
        "activations",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("help_point", sa.String(64), nullable=False),
        _ts("started_at"),
        _ts("ended_at", nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("answered_by", sa.String(64), nullable=True),
        sa.Column("answered_room", sa.String(64), nullable=True),
        sa.Column("ended_by", sa.String(32), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("talk_time", sa.Float(), nullable=True),
        sa.Column("dialplan", sa.String(128), nullable=True),
        sa.Column("dialplan_version", sa.Integer(), nullable=True),
        sa.Column("silent", sa.Boolean(), nullable=False),
        sa.Column("classification", sa.String(16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("linked_to", sa.String(64), nullable=True),
        sa.Column("hold", sa.Boolean(), nullable=False),
        sa.Column("camera_url", sa.Text(), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        _ts("purged_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activations")),
    )
    for name, columns in _ACTIVATION_INDEXES:
        op.create_index(name, "activations", columns)
    op.create_index(op.f("ix_activations_linked_to"), "activations", ["linked_to"])
    op.create_table(
        "activation_events",
        sa.Column("activation_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activation_id"], ["activations.id"], ondelete="CASCADE",
            name=op.f("fk_activation_events_activation_id_activations"),
        ),
        sa.PrimaryKeyConstraint("activation_id", "seq", name=op.f("pk_activation_events")),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("activation_id", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        _ts("created_at"),
        _ts("retention_until", nullable=True),
        _ts("deleted_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["activation_id"], ["activations.id"], ondelete="CASCADE",
            name=op.f("fk_recordings_activation_id_activations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
    )
    op.create_index(op.f("ix_recordings_activation_id"), "recordings", ["activation_id"])
    op.create_table(
        "dialplan_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        _ts("applied_at"),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_dialplan_versions")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    for column in ("at", "action", "target"):
        op.create_index(op.f(f"ix_audit_log_{column}"), "audit_log", [column])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )


def downgrade() -> None:
    """Drop the record tables (children first)."""
    op.drop_table("api_tokens")
    for column in ("target", "action", "at"):
        op.drop_index(op.f(f"ix_audit_log_{column}"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("dialplan_versions")
    op.drop_index(op.f("ix_recordings_activation_id"), table_name="recordings")
    op.drop_table("recordings")
    op.drop_table("activation_events")
    op.drop_index(op.f("ix_activations_linked_to"), table_name="activations")
    for name, _ in reversed(_ACTIVATION_INDEXES):
        op.drop_index(name, table_name="activations")
    op.drop_table("activations")
    op.drop_index(op.f("ix_positions_room"), table_name="positions")
    op.drop_table("positions")
    op.drop_table("help_points")
