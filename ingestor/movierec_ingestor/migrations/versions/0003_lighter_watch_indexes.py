"""Lighter watch indexes: the write path's cost is mostly index maintenance (each watch line
touched five b-trees). No query looks watch rows up by movie, so `ix_watch_events_movie` and
`ix_watch_sessions_movie` go; the time index of `watch_events`, which only serves window scans of
an append-mostly table, becomes a BRIN index on PostgreSQL (a few pages, nearly free to keep).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_watch_events_movie", table_name="watch_events")
    op.drop_index("ix_watch_sessions_movie", table_name="watch_sessions")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_watch_events_time", table_name="watch_events")
        op.create_index("ix_watch_events_time", "watch_events", ["time"], postgresql_using="brin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_watch_events_time", table_name="watch_events")
        op.create_index("ix_watch_events_time", "watch_events", ["time"])
    op.create_index("ix_watch_sessions_movie", "watch_sessions", ["movie_id"])
    op.create_index("ix_watch_events_movie", "watch_events", ["movie_id"])
