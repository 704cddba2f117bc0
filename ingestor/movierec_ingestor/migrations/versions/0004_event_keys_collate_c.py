"""Event keys compare byte by byte: `event_key` columns get the "C" collation on PostgreSQL.

The keys are hex digests, so the locale's ordering means nothing for them, but a database
created with a locale (en_US.UTF-8, C.UTF-8) compared them through strcoll on every b-tree step
of every insert and in the sort that orders each batch: a profile of the write path put the
locale comparison functions beside the b-tree search itself. SQLite compares bytes already.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLES = ("watch_events", "rating_events", "recommendations")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN event_key TYPE text COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _TABLES:
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN event_key TYPE text COLLATE pg_catalog.default"
            )
