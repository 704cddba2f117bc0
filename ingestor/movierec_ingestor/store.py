"""The event store: one transaction per batch (events, derived tables, dead letters, offsets)."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from movierec_ingestor import db, schema
from movierec_ingestor.batch import Batch

log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL SQLSTATEs worth retrying the same batch for at once: two consumers of one group
# can lock the same derived rows (the same user and movie in two partitions).
_RETRY_SQLSTATES = {"40P01", "40001"}
_MAX_CONFLICT_RETRIES = 5
_IN_CHUNK = 500


class StoreUnavailable(Exception):  # noqa: N818 - reads better at call sites than *Error
    """The database cannot be reached or went away mid-batch; nothing of the batch was kept."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a batch write did: events new to the store, and those already there."""

    stored: int
    duplicates: int
    stored_by_type: Mapping[str, int]
    dead_letters: int

    @classmethod
    def combine(cls, results: Sequence[WriteResult]) -> WriteResult:
        """What the parts of one batch did together."""
        if len(results) == 1:
            return results[0]
        by_type: dict[str, int] = {}
        for result in results:
            for kind, n in result.stored_by_type.items():
                by_type[kind] = by_type.get(kind, 0) + n
        return cls(
            sum(r.stored for r in results),
            sum(r.duplicates for r in results),
            by_type,
            sum(r.dead_letters for r in results),
        )


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _copy_escape(value: object) -> str:
    """A value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def copy_buffer(kind: str, rows: Sequence[tuple[Any, ...]]) -> io.StringIO:
    """Rows as COPY text. Watch and rate rows need no escaping: the parser only lets
    hex keys, ISO times, integers and slugs through."""
    if kind in ("watch", "rate"):
        # A batch's rows share one ingestion time: formatted once, not once per row.
        first = rows[0][5] if rows else None
        stamp = first.isoformat() if first is not None else ""
        text = "".join(
            f"{k}\t{t.isoformat()}\t{u}\t{m}\t{n}\t{stamp if i is first else i.isoformat()}\n"
            for k, t, u, m, n, i in rows
        )
    else:
        text = "".join("\t".join(map(_copy_escape, row)) + "\n" for row in rows)
    return io.StringIO(text)


def _sqlite_time(value: datetime) -> str:
    # SQLAlchemy's own SQLite DateTime format, so ORM readers parse it and strings sort by time.
    return value.isoformat(sep=" ", timespec="microseconds")


def _sqlite_row(kind: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    at = 5 if kind in ("watch", "rate") else 8  # where `ingested_at` sits
    return (
        row[0],
        _sqlite_time(row[1]),
        *row[2:at],
        _sqlite_time(row[at]),
        *row[at + 1 :],
    )


# Staging twins of the raw tables, column for column (schema.RAW_TABLES).
_TEMP_COLUMNS = {
    "watch": "event_key TEXT PRIMARY KEY, time TIMESTAMP, user_id BIGINT, movie_id TEXT, "
    "minute INTEGER, ingested_at TIMESTAMP",
    "rate": "event_key TEXT PRIMARY KEY, time TIMESTAMP, user_id BIGINT, movie_id TEXT, "
    "rating SMALLINT, ingested_at TIMESTAMP",
    "recommendation": "event_key TEXT PRIMARY KEY, time TIMESTAMP, user_id BIGINT, server TEXT, "
    "status INTEGER, results TEXT, latency_ms INTEGER, error TEXT, ingested_at TIMESTAMP, "
    "request_id TEXT, track TEXT, model_name TEXT, model_version TEXT, scores TEXT, source TEXT",
}
# Column lists of the moves from staging: explicit, so a table's physical column order (which
# differs between a fresh and a migrated database) does not matter.
_COLUMNS = {
    kind: ", ".join(part.split()[0] for part in spec.split(", "))
    for kind, spec in _TEMP_COLUMNS.items()
}

# Per raw table: the statement and the statement that moves new rows in and updates derived
# tables from exactly those rows (PostgreSQL: in one statement, race-free across consumers).
_PG_STATEMENTS = {
    "watch": """
        WITH ins AS (
            INSERT INTO watch_events ({watch}) SELECT {watch} FROM tmp_watch ORDER BY event_key
            ON CONFLICT (event_key) DO NOTHING
            RETURNING user_id, movie_id, time, minute
        ), sessions AS (
            INSERT INTO watch_sessions (user_id, movie_id, first_time, last_time, max_minute)
            SELECT user_id, movie_id, min(time), max(time), max(minute) FROM ins
            GROUP BY user_id, movie_id ORDER BY user_id, movie_id
            ON CONFLICT (user_id, movie_id) DO UPDATE SET
                first_time = LEAST(watch_sessions.first_time, EXCLUDED.first_time),
                last_time = GREATEST(watch_sessions.last_time, EXCLUDED.last_time),
                max_minute = GREATEST(watch_sessions.max_minute, EXCLUDED.max_minute)
        )
        SELECT count(*) FROM ins
    """,
    "rate": """
        WITH ins AS (
            INSERT INTO rating_events ({rate}) SELECT {rate} FROM tmp_rate ORDER BY event_key
            ON CONFLICT (event_key) DO NOTHING
            RETURNING user_id, movie_id, rating, time
        ), latest AS (
            SELECT DISTINCT ON (user_id, movie_id) user_id, movie_id, rating, time FROM ins
            ORDER BY user_id, movie_id, time DESC, rating DESC
        ), upsert AS (
            INSERT INTO ratings (user_id, movie_id, rating, time)
            SELECT user_id, movie_id, rating, time FROM latest ORDER BY user_id, movie_id
            ON CONFLICT (user_id, movie_id) DO UPDATE SET
                rating = EXCLUDED.rating, time = EXCLUDED.time
            WHERE (EXCLUDED.time, EXCLUDED.rating) > (ratings.time, ratings.rating)
        )
        SELECT count(*) FROM ins
    """,
    "recommendation": """
        WITH ins AS (
            INSERT INTO recommendations ({recommendation})
            SELECT {recommendation} FROM tmp_recommendation ORDER BY event_key
            ON CONFLICT (event_key) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM ins
    """,
}
_PG_STATEMENTS = {k: v.format(**_COLUMNS) for k, v in _PG_STATEMENTS.items()}

# SQLite has one writer at a time, so "new" is simply "not in the table yet"; the temp table
# has the event key as primary key to drop in-batch repeats on load.
_SQLITE_STATEMENTS = {
    "watch": (
        "DELETE FROM tmp_watch WHERE event_key IN (SELECT event_key FROM watch_events)",
        f"INSERT INTO watch_events ({_COLUMNS['watch']}) SELECT {_COLUMNS['watch']} FROM tmp_watch",
        """INSERT INTO watch_sessions (user_id, movie_id, first_time, last_time, max_minute)
           SELECT user_id, movie_id, min(time), max(time), max(minute) FROM tmp_watch
           GROUP BY user_id, movie_id
           ON CONFLICT (user_id, movie_id) DO UPDATE SET
               first_time = min(watch_sessions.first_time, excluded.first_time),
               last_time = max(watch_sessions.last_time, excluded.last_time),
               max_minute = max(watch_sessions.max_minute, excluded.max_minute)""",
    ),
    "rate": (
        "DELETE FROM tmp_rate WHERE event_key IN (SELECT event_key FROM rating_events)",
        f"INSERT INTO rating_events ({_COLUMNS['rate']}) SELECT {_COLUMNS['rate']} FROM tmp_rate",
        # The newest (time, rating) per pair; ties in time go to the higher rating so the
        # outcome does not depend on arrival order.
        """INSERT INTO ratings (user_id, movie_id, rating, time)
           SELECT user_id, movie_id, rating, time FROM (
               SELECT user_id, movie_id, rating, time, row_number() OVER (
                   PARTITION BY user_id, movie_id ORDER BY time DESC, rating DESC) AS rn
               FROM tmp_rate) WHERE rn = 1
           ON CONFLICT (user_id, movie_id) DO UPDATE SET
               rating = excluded.rating, time = excluded.time
           WHERE (excluded.time, excluded.rating) > (ratings.time, ratings.rating)""",
    ),
    "recommendation": (
        "DELETE FROM tmp_recommendation WHERE event_key IN (SELECT event_key FROM recommendations)",
        f"INSERT INTO recommendations ({_COLUMNS['recommendation']}) "
        f"SELECT {_COLUMNS['recommendation']} FROM tmp_recommendation",
    ),
}


class Store:
    """Writes batches and metadata to the movierec database; migrates the schema on open."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.engine = db.create_engine(url, application_name="movierec-ingestor")
        self.dialect = self.engine.dialect.name
        self._insert: Any = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        sa.event.listen(self.engine, "connect", self._create_temp_tables)
        if migrate:
            try:
                db.upgrade(self.engine)
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                raise StoreUnavailable(self._describe(exc)) from exc

    def _create_temp_tables(self, dbapi_connection: Any, _record: Any) -> None:
        # Staging tables live as long as the DBAPI connection; creating them at connect time
        # (committed, outside any batch) keeps a rolled-back batch from taking them along.
        cursor = dbapi_connection.cursor()
        try:
            for kind, columns in _TEMP_COLUMNS.items():
                if self.dialect == "postgresql":
                    # No key here: COPY must accept in-batch repeats; ON CONFLICT drops them.
                    # Keys sort byte by byte, as the tables' keys do (revision 0004).
                    staged = columns.replace("TEXT PRIMARY KEY", 'TEXT COLLATE "C"')
                    cursor.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS tmp_{kind} ({staged}) ON COMMIT DELETE ROWS"
                    )
                else:
                    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS tmp_{kind} ({columns})")
            dbapi_connection.commit()
        finally:
            cursor.close()

    @property
    def url(self) -> str:
        """The database URL with the password hidden, for logs and errors."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    def _describe(self, exc: BaseException) -> str:
        first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
        return f"database {self.url} unavailable: {first[0] if first else type(exc).__name__}"

    # -- batches -------------------------------------------------------------------------

    def write(self, batch: Batch, *, offsets: bool = True) -> WriteResult:
        """Store a batch in one transaction (with its offsets unless told not to: a part of a
        split batch); on any failure nothing of it is kept.

        Raises StoreUnavailable when the database is down or the connection broke, so the
        caller can retry the same batch (a replay only finds duplicates).
        """
        return self._transaction(lambda conn: self._write(conn, batch, offsets))

    def write_offsets(self, batch: Batch) -> None:
        """Store a batch's offsets alone, once every part of the split batch is stored."""
        self._transaction(lambda conn: self._write_offsets(conn, batch))

    def _transaction(self, work: Callable[[sa.Connection], T]) -> T:
        dbapi = self.engine.dialect.loaded_dbapi
        for attempt in range(_MAX_CONFLICT_RETRIES + 1):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except (sa.exc.DBAPIError, dbapi.Error) as exc:
                # COPY and the staging statements run on the raw DBAPI cursor, so driver
                # errors arrive unwrapped as well as wrapped by SQLAlchemy.
                orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
                code = getattr(orig, "pgcode", None)
                if code in _RETRY_SQLSTATES and attempt < _MAX_CONFLICT_RETRIES:
                    log.info("batch hit a lock conflict (%s), retrying", code)
                    time.sleep(0.05 * (attempt + 1))
                    continue
                invalidated = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
                if invalidated or isinstance(orig, dbapi.OperationalError | dbapi.InterfaceError):
                    raise StoreUnavailable(self._describe(exc)) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, conn: sa.Connection, batch: Batch, offsets: bool) -> WriteResult:
        stored: dict[str, int] = {}
        for kind, rows in (
            ("watch", batch.watch),
            ("rate", batch.rate),
            ("recommendation", batch.recommendation),
        ):
            stored[kind] = self._write_events(conn, kind, rows) if rows else 0
        dead = self._write_dead_letters(conn, batch)
        if offsets:
            self._write_offsets(conn, batch)
        total = sum(stored.values())
        return WriteResult(total, batch.valid - total, stored, dead)

    def _write_events(self, conn: sa.Connection, kind: str, rows: Sequence[tuple[Any, ...]]) -> int:
        if self.dialect == "postgresql":
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.copy_expert(f"COPY tmp_{kind} FROM STDIN", copy_buffer(kind, rows))
                cursor.execute(_PG_STATEMENTS[kind])
                row = cursor.fetchone()
                return int(row[0]) if row else 0
            finally:
                cursor.close()
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(f"DELETE FROM tmp_{kind}")
            placeholders = ",".join("?" * len(rows[0]))
            cursor.executemany(
                f"INSERT OR IGNORE INTO tmp_{kind} VALUES ({placeholders})",
                [_sqlite_row(kind, row) for row in rows],
            )
            statements = _SQLITE_STATEMENTS[kind]
            cursor.execute(statements[0])
            new = int(cursor.execute(f"SELECT count(*) FROM tmp_{kind}").fetchone()[0])
            for statement in statements[1:]:
                cursor.execute(statement)
            cursor.execute(f"DELETE FROM tmp_{kind}")
            return new
        finally:
            cursor.close()

    def _write_dead_letters(self, conn: sa.Connection, batch: Batch) -> int:
        if not batch.dead_letters:
            return 0
        now = _utcnow()
        table = schema.dead_letters
        rows = [
            {
                "source": d.source,
                "position": d.position,
                "raw": d.raw,
                "reason": d.reason,
                "detail": d.detail,
                "ingested_at": now,
            }
            for d in batch.dead_letters
        ]
        if self.dialect == "postgresql":
            # One statement for all of them: SQLAlchemy runs this INSERT as psycopg2's
            # executemany, a round trip per row (a quarter of the writer's time at 1% bad lines)
            from psycopg2.extras import execute_values

            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                execute_values(
                    cursor,
                    "INSERT INTO dead_letters (source, position, raw, reason, detail, ingested_at)"
                    " VALUES %s ON CONFLICT DO NOTHING",
                    [tuple(r.values()) for r in rows],
                    page_size=1000,
                )
            finally:
                cursor.close()
            return len(rows)
        conn.execute(self._insert(table).on_conflict_do_nothing(), rows)
        return len(rows)

    def _write_offsets(self, conn: sa.Connection, batch: Batch) -> None:
        if not batch.offsets:
            return
        table = schema.source_offsets
        stmt = self._insert(table)
        newer = stmt.excluded.next_offset
        if not batch.rewind:
            # A consumer that lost its partitions mid-batch may commit late: never move back.
            greatest = sa.func.greatest if self.dialect == "postgresql" else sa.func.max
            newer = greatest(table.c.next_offset, stmt.excluded.next_offset)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.source, table.c.partition],
            set_={
                "next_offset": newer,
                "updated_at": stmt.excluded.updated_at,
                "identity": stmt.excluded.identity,
            },
        )
        now = _utcnow()
        conn.execute(
            stmt,
            [
                {
                    "source": batch.source,
                    "partition": p,
                    "next_offset": o,
                    "updated_at": now,
                    "identity": batch.identity,
                }
                for p, o in sorted(batch.offsets.items())
            ],
        )

    # -- offsets and metadata ------------------------------------------------------------

    def offsets(self, source: str) -> dict[int, int]:
        """The committed next offset per partition of a source (empty if never read)."""
        table = schema.source_offsets
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(table.c.partition, table.c.next_offset).where(
                        table.c.source == source
                    )
                ).all()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(self._describe(exc)) from exc
        return {int(p): int(o) for p, o in rows}

    def identity(self, source: str) -> str | None:
        """The identity stored with a file source's offset (None: never read, or not a file)."""
        table = schema.source_offsets
        try:
            with self.engine.connect() as conn:
                return conn.execute(
                    sa.select(table.c.identity).where(
                        (table.c.source == source) & (table.c.partition == 0)
                    )
                ).scalar()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(self._describe(exc)) from exc

    def known_ids(self, table: sa.Table, ids: Iterable[Any]) -> set[Any]:
        """The subset of `ids` that already has a row in `users` or `movies`."""
        key = next(iter(table.primary_key.columns))
        wanted = list(ids)
        found: set[Any] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[i : i + _IN_CHUNK]
                found.update(conn.execute(sa.select(key).where(key.in_(chunk))).scalars())
        return found

    def upsert(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert or update metadata rows (`users` or `movies`) by primary key; idempotent."""
        if not rows:
            return 0
        key = next(iter(table.primary_key.columns)).name
        with self.engine.begin() as conn:
            for i in range(0, len(rows), _IN_CHUNK):
                chunk = [dict(r) for r in rows[i : i + _IN_CHUNK]]
                stmt = self._insert(table)
                columns = [c for c in chunk[0] if c != key]
                if columns:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[key], set_={c: stmt.excluded[c] for c in columns}
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing()
                conn.execute(stmt, chunk)
        return len(rows)
