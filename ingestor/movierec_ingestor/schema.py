"""The database schema every component reads and the ingestor writes (SQLAlchemy Core tables)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Naive UTC timestamps throughout, like the stream's own times.
_Time = sa.DateTime(timezone=False)
# Event keys are hex digests: compared byte by byte ("C"), not through the database's locale,
# whose strcoll made key comparisons a large share of every insert's cost (revision 0004).
_Key = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("age", sa.Integer, nullable=True),
    sa.Column("occupation", sa.Text, nullable=True),
    sa.Column("gender", sa.Text, nullable=True),
)

movies = sa.Table(
    "movies",
    metadata,
    sa.Column("movie_id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("year", sa.Integer, nullable=True),
    sa.Column("genres", sa.Text, nullable=True),  # '|'-separated
    sa.Column("runtime", sa.Integer, nullable=True),
    sa.Column("popularity", sa.Float, nullable=True),
)

watch_events = sa.Table(
    "watch_events",
    metadata,
    sa.Column("event_key", _Key, primary_key=True),
    sa.Column("time", _Time, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("movie_id", sa.Text, nullable=False),
    sa.Column("minute", sa.Integer, nullable=False),
    # The server's clock when the event was stored (`time` is the client's claim). Null only
    # for rows stored before revision 0002.
    sa.Column("ingested_at", _Time, nullable=True),
    # Few indexes on purpose: each costs every watch line a b-tree insert (revision 0003).
    sa.Index("ix_watch_events_user_time", "user_id", "time"),
    # Window scans only; rows arrive roughly in time order, so a BRIN index does on PostgreSQL.
    sa.Index("ix_watch_events_time", "time", postgresql_using="brin"),
)

watch_sessions = sa.Table(
    "watch_sessions",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("movie_id", sa.Text, primary_key=True),
    sa.Column("first_time", _Time, nullable=False),
    sa.Column("last_time", _Time, nullable=False),
    sa.Column("max_minute", sa.Integer, nullable=False),
    sa.Index("ix_watch_sessions_last_time", "last_time"),
)

rating_events = sa.Table(
    "rating_events",
    metadata,
    sa.Column("event_key", _Key, primary_key=True),
    sa.Column("time", _Time, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("movie_id", sa.Text, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("ingested_at", _Time, nullable=True),
    sa.Index("ix_rating_events_user_time", "user_id", "time"),
    sa.Index("ix_rating_events_movie", "movie_id"),
    sa.Index("ix_rating_events_time", "time"),
    sa.Index("ix_rating_events_ingested_at", "ingested_at"),
)

ratings = sa.Table(
    "ratings",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("movie_id", sa.Text, primary_key=True),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("time", _Time, nullable=False),
    sa.Index("ix_ratings_movie", "movie_id"),
    sa.Index("ix_ratings_time", "time"),
)

recommendations = sa.Table(
    "recommendations",
    metadata,
    sa.Column("event_key", _Key, primary_key=True),
    sa.Column("time", _Time, nullable=False),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("server", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("results", sa.Text, nullable=False),  # comma-joined movie ids, best first
    sa.Column("latency_ms", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("ingested_at", _Time, nullable=True),
    # Provenance events fill these (`source` 'provenance'); course log lines leave them null
    # (`source` 'log'). `scores` is comma-joined, aligned with `results`.
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("track", sa.Text, nullable=True),
    sa.Column("model_name", sa.Text, nullable=True),
    sa.Column("model_version", sa.Text, nullable=True),
    sa.Column("scores", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    sa.Index("ix_recommendations_user_time", "user_id", "time"),
    sa.Index("ix_recommendations_time", "time"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("position", sa.Text, primary_key=True),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("ingested_at", _Time, nullable=False),
    sa.Index("ix_dead_letters_reason", "reason"),
    sa.Index("ix_dead_letters_ingested_at", "ingested_at"),
)

source_offsets = sa.Table(
    "source_offsets",
    metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", _Time, nullable=False),
    # A file source's identity (inode and a fingerprint of its first bytes): an offset means
    # nothing in a different file that took the same name.
    sa.Column("identity", sa.Text, nullable=True),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("movie_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("report_id", sa.Integer, nullable=True),
    sa.Column("created_at", _Time, nullable=False),
)

# Pairs a person reviewed and released from quarantine: the gate never quarantines them again.
quarantine_releases = sa.Table(
    "quarantine_releases",
    metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("movie_id", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),  # why it had been quarantined
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("released_at", _Time, nullable=False),
)

quality_reports = sa.Table(
    "quality_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", _Time, nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("forced", sa.Boolean, nullable=False),
    sa.Column("report", sa.Text, nullable=False),  # JSON
)

RAW_TABLES = {"watch": watch_events, "rate": rating_events, "recommendation": recommendations}
