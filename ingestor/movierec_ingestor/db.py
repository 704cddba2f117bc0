"""Database engines for the store's URLs and the schema migration run on every open."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from movierec_ingestor.errors import BadInputError

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK_ID = 0x6D6F7669  # "movi"
SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10


def normalize_url(url: str) -> sa.URL:
    """Parse a database URL; a bare `postgresql://` (or Heroku-style `postgres://`) means
    psycopg2, the driver we ship (SQLAlchemy alone would pick psycopg 3, or reject `postgres`)."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise BadInputError(f"not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise BadInputError(f"unsupported database {parsed.drivername!r}: use sqlite or postgresql")
    return parsed


def create_engine(
    url: str,
    *,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    application_name: str = "movierec",
    pool_size: int = 2,
) -> sa.Engine:
    """The engine factory for every component (ingest, quality, train, retrain, serve --db,
    the evaluator): every URL form, a bounded connect, pre-ping against dropped connections.

    SQLite: the file's folder is created, WAL, `BEGIN IMMEDIATE`, a 30 s busy timeout.
    PostgreSQL: psycopg2, `connect_timeout` (a dead or silent server fails in seconds, not
    after the kernel's TCP timeout), the pool pre-pings so a restarted server costs one retry.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return sa.create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool_size,
        # Connect errors surface quickly instead of hanging a CronJob on a dead server.
        connect_args={"connect_timeout": connect_timeout_s, "application_name": application_name},
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy's recipe: take transaction control away from the sqlite3 module so that
    # `_sqlite_begin_immediate` decides how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers (training, evaluation) run while the ingestor writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    # Take the write lock at BEGIN: a batch decides which events are new by reading, and that
    # must not change before it writes (a deferred transaction could also fail to upgrade).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config() -> Any:
    """The packaged migrations, usable without an alembic.ini."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "movierec_ingestor:migrations")
    return cfg


def upgrade(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (`alembic upgrade head`), safe to race."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several consumers of one group start together: one migrates, the rest wait
            # and then find nothing to do. The lock ends with this transaction.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.debug("schema at head on %s", engine.url.render_as_string(hide_password=True))
