"""Initial schema: digest credentials and registrar bindings.

Revision ID: 0001
Revises:
Create Date: 2026-11-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``credentials`` and ``registrations``."""
    op.create_table(
        "credentials",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("realm", sa.String(255), nullable=False),
        sa.Column("ha1_md5", sa.String(32), nullable=False),
        sa.Column("ha1_sha256", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("username", "realm", name=op.f("pk_credentials")),
    )
    op.create_table(
        "registrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aor", sa.String(255), nullable=False),
        sa.Column("contact", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_id", sa.String(255), nullable=False),
        sa.Column("cseq", sa.Integer(), nullable=False),
        sa.Column("source_host", sa.String(64), nullable=False),
        sa.Column("source_port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("user_agent", sa.String(255), nullable=True),
        sa.Column("q", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("aor", "contact", name=op.f("uq_registrations_aor")),
    )
    op.create_index(op.f("ix_registrations_aor"), "registrations", ["aor"])
    op.create_index(op.f("ix_registrations_expires_at"), "registrations", ["expires_at"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index(op.f("ix_registrations_expires_at"), table_name="registrations")
    op.drop_index(op.f("ix_registrations_aor"), table_name="registrations")
    op.drop_table("registrations")
    op.drop_table("credentials")
