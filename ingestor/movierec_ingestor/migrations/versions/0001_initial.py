"""Initial schema: metadata, raw events, derived tables, dead letters, offsets, quality.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A frozen copy of the schema at this revision: later edits to schema.py need a new revision.
_TIME = sa.DateTime(timezone=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("age", sa.Integer, nullable=True),
        sa.Column("occupation", sa.Text, nullable=True),
        sa.Column("gender", sa.Text, nullable=True),
    )
    op.create_table(
        "movies",
        sa.Column("movie_id", sa.Text, primary_key=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("year", sa.Integer, nullable=True),
        sa.Column("genres", sa.Text, nullable=True),
        sa.Column("runtime", sa.Integer, nullable=True),
        sa.Column("popularity", sa.Float, nullable=True),
    )
    op.create_table(
        "watch_events",
        sa.Column("event_key", sa.Text, primary_key=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("movie_id", sa.Text, nullable=False),
        sa.Column("minute", sa.Integer, nullable=False),
    )
    op.create_index("ix_watch_events_user_time", "watch_events", ["user_id", "time"])
    op.create_index("ix_watch_events_movie", "watch_events", ["movie_id"])
    op.create_index("ix_watch_events_time", "watch_events", ["time"])
    op.create_table(
        "watch_sessions",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("movie_id", sa.Text, primary_key=True),
        sa.Column("first_time", _TIME, nullable=False),
        sa.Column("last_time", _TIME, nullable=False),
        sa.Column("max_minute", sa.Integer, nullable=False),
    )
    op.create_index("ix_watch_sessions_movie", "watch_sessions", ["movie_id"])
    op.create_index("ix_watch_sessions_last_time", "watch_sessions", ["last_time"])
    op.create_table(
        "rating_events",
        sa.Column("event_key", sa.Text, primary_key=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("movie_id", sa.Text, nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
    )
    op.create_index("ix_rating_events_user_time", "rating_events", ["user_id", "time"])
    op.create_index("ix_rating_events_movie", "rating_events", ["movie_id"])
    op.create_index("ix_rating_events_time", "rating_events", ["time"])
    op.create_table(
        "ratings",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("movie_id", sa.Text, primary_key=True),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("time", _TIME, nullable=False),
    )
    op.create_index("ix_ratings_movie", "ratings", ["movie_id"])
    op.create_index("ix_ratings_time", "ratings", ["time"])
    op.create_table(
        "recommendations",
        sa.Column("event_key", sa.Text, primary_key=True),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("server", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("results", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_recommendations_user_time", "recommendations", ["user_id", "time"])
    op.create_index("ix_recommendations_time", "recommendations", ["time"])
    op.create_table(
        "dead_letters",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("position", sa.Text, primary_key=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("ingested_at", _TIME, nullable=False),
    )
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])
    op.create_index("ix_dead_letters_ingested_at", "dead_letters", ["ingested_at"])
    op.create_table(
        "source_offsets",
        sa.Column("source", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("movie_id", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("report_id", sa.Integer, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "quality_reports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "quality_reports",
        "quarantine",
        "source_offsets",
        "dead_letters",
        "recommendations",
        "ratings",
        "rating_events",
        "watch_sessions",
        "watch_events",
        "movies",
        "users",
    ):
        op.drop_table(table)
