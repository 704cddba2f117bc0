"""Trusted time, provenance, file identity: `ingested_at` on every event table; provenance
columns; `source_offsets.identity` (which file an offset belongs to); `quarantine_releases`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=False)
_PROVENANCE = ("request_id", "track", "model_name", "model_version", "scores", "source")


def upgrade() -> None:
    # Appended columns: the store's staging twins list them in this order.
    for table in ("watch_events", "rating_events", "recommendations"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("ingested_at", _TIME, nullable=True))
    with op.batch_alter_table("recommendations") as batch:
        for name in _PROVENANCE:
            batch.add_column(sa.Column(name, sa.Text, nullable=True))
    op.create_index("ix_rating_events_ingested_at", "rating_events", ["ingested_at"])
    with op.batch_alter_table("source_offsets") as batch:
        batch.add_column(sa.Column("identity", sa.Text, nullable=True))
    op.create_table(
        "quarantine_releases",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("movie_id", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("released_at", _TIME, nullable=False),
    )
    # Rows from before: course log lines.
    op.execute("UPDATE recommendations SET source = 'log' WHERE source IS NULL")


def downgrade() -> None:
    op.drop_table("quarantine_releases")
    with op.batch_alter_table("source_offsets") as batch:
        batch.drop_column("identity")
    op.drop_index("ix_rating_events_ingested_at", "rating_events")
    with op.batch_alter_table("recommendations") as batch:
        for name in reversed(_PROVENANCE):
            batch.drop_column(name)
    for table in ("watch_events", "rating_events", "recommendations"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("ingested_at")
