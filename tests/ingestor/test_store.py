"""The store on SQLite and real PostgreSQL: idempotency, derived tables, offsets, migrations."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from movierec_ingestor.batch import Batch, TimePolicy
from movierec_ingestor.schema import metadata, movies, users
from movierec_ingestor.store import Store, StoreUnavailable

from .streams import assert_exactly, make_stream


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/store.db"
    return str(request.getfixturevalue("pg_url"))


def _batch(lines: Sequence[str | bytes], source: str = "test:lines", start: int = 0) -> Batch:
    batch = Batch(source)
    for i, line in enumerate(lines, start):
        batch.add(line, str(i))
    batch.offsets[0] = start + len(lines)
    return batch


def test_ingesting_twice_stores_nothing_the_second_time(db_url: str) -> None:
    stream = make_stream(3000)
    store = Store(db_url)
    try:
        first = store.write(_batch(stream.lines))
        second = store.write(_batch(stream.lines))
    finally:
        store.close()
    assert first.stored == len(stream.keys)
    assert first.duplicates == len(stream.lines) - stream.invalid - len(stream.keys)
    assert second.stored == 0
    assert second.duplicates == len(stream.lines) - stream.invalid
    assert_exactly(stream, db_url)


def test_out_of_order_ratings_keep_the_latest(db_url: str) -> None:
    lines = [
        "2025-10-17T10:00:00,1,GET /rate/a+1999=5",
        "2025-10-17T08:00:00,1,GET /rate/a+1999=1",  # older, arrives later
        "2025-10-17T09:00:00,1,GET /rate/a+1999=2",
        "2025-10-17T07:00:00,2,GET /rate/a+1999=4",
    ]
    store = Store(db_url)
    try:
        store.write(_batch(lines[:1]))
        store.write(_batch(lines[1:]))
        store.write(_batch(["2025-10-17T06:00:00,2,GET /rate/a+1999=1"]))
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT user_id, rating FROM ratings ORDER BY user_id")
            ).all()
            history = conn.execute(sa.text("SELECT count(*) FROM rating_events")).scalar_one()
    finally:
        store.close()
    assert [tuple(r) for r in rows] == [(1, 5), (2, 4)]
    assert history == 5


def test_equal_times_resolve_the_same_in_any_order(db_url: str) -> None:
    a = "2025-10-17T10:00:00,1,GET /rate/a+1999=2"
    b = "2025-10-17T10:00:00,1,GET /rate/a+1999=4"
    store = Store(db_url)
    try:
        store.write(_batch([b]))
        store.write(_batch([a]))
        with store.engine.connect() as conn:
            rating = conn.execute(sa.text("SELECT rating FROM ratings")).scalar_one()
    finally:
        store.close()
    assert rating == 4


def _as_time(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def test_watch_sessions_keep_the_furthest_minute_and_time_span(db_url: str) -> None:
    lines = [
        "2025-10-17T10:05:00,1,GET /data/m/a+1999/5.mpg",
        "2025-10-17T10:50:00,1,GET /data/m/a+1999/50.mpg",
        "2025-10-17T10:01:00,1,GET /data/m/a+1999/1.mpg",
    ]
    store = Store(db_url)
    try:
        store.write(_batch(lines[:2]))
        store.write(_batch(lines[2:]))
        store.write(_batch(["2025-10-17T10:30:00,1,GET /data/m/a+1999/30.mpg"]))
        with store.engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT first_time, last_time, max_minute FROM watch_sessions")
            ).one()
    finally:
        store.close()
    first, last, minute = row
    assert _as_time(first) == datetime(2025, 10, 17, 10, 1)
    assert _as_time(last) == datetime(2025, 10, 17, 10, 50)
    assert minute == 50


def test_dead_letters_keep_raw_reason_and_position(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.write(_batch([b"ok?\xff\x00\tnope\\", "2025-10-17T10:00:00,1,GET /rate/a=3"], "s1"))
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT source, position, raw, reason FROM dead_letters")
            ).all()
    finally:
        store.close()
    assert [tuple(r) for r in rows] == [("s1", "0", "ok?\\xff\\x00\tnope\\", "not_utf8")]


def test_offsets_commit_with_the_batch_and_never_move_back(db_url: str) -> None:
    store = Store(db_url)
    try:
        batch = _batch(["2025-10-17T10:00:00,1,GET /rate/a=3"], "kafka:t")
        batch.offsets = {0: 10, 2: 7}
        store.write(batch)
        late = _batch([], "kafka:t")
        late.offsets = {0: 4, 1: 3}  # a consumer that lost partition 0 commits late
        store.write(late)
        assert store.offsets("kafka:t") == {0: 10, 1: 3, 2: 7}
        rewound = _batch([], "kafka:t")
        rewound.offsets, rewound.rewind = {0: 0}, True  # a truncated file starts over
        store.write(rewound)
        assert store.offsets("kafka:t")[0] == 0
        assert store.offsets("other") == {}
    finally:
        store.close()


def test_metadata_upserts_are_idempotent(db_url: str) -> None:
    store = Store(db_url)
    try:
        store.upsert(users, [{"user_id": 1, "age": 30, "occupation": "writer", "gender": "F"}])
        store.upsert(users, [{"user_id": 1, "age": 31, "occupation": "writer", "gender": "F"}])
        store.upsert(
            movies, [{"movie_id": "a+1999", "title": "A", "year": 1999, "genres": "Drama"}]
        )
        assert store.known_ids(users, [1, 2]) == {1}
        assert store.known_ids(movies, ["a+1999", "b"]) == {"a+1999"}
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT age FROM users")).scalar_one() == 31
    finally:
        store.close()


def test_migrations_match_the_schema_and_rerun_cleanly(db_url: str) -> None:
    Store(db_url).close()
    store = Store(db_url)  # second open: upgrade head finds nothing to do
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        store.close()
    assert diff == []
    assert version == "0004"


def test_event_keys_compare_byte_by_byte_on_postgres(pg_url: str) -> None:
    """Hex keys gain nothing from the locale's ordering and lost a large share of each insert
    to strcoll: every event_key column, and the staging tables' too, collates "C"."""
    store = Store(pg_url)
    try:
        with store.engine.begin() as conn:
            found = dict(
                conn.execute(
                    sa.text(
                        "SELECT table_name, collation_name FROM information_schema.columns "
                        "WHERE column_name = 'event_key' AND table_schema = current_schema()"
                    )
                ).all()
            )
            staging = conn.execute(
                sa.text(
                    "SELECT c.collname FROM pg_attribute a JOIN pg_collation c "
                    "ON c.oid = a.attcollation WHERE a.attrelid = 'tmp_watch'::regclass "
                    "AND a.attname = 'event_key'"
                )
            ).scalar_one()
    finally:
        store.close()
    assert found == {t: "C" for t in ("watch_events", "rating_events", "recommendations")}
    assert staging == "C"


def test_watch_rows_keep_only_the_indexes_a_query_uses(db_url: str) -> None:
    """Every index costs each watch line a b-tree insert (the write path's main cost): none by
    movie, and on PostgreSQL the time index of `watch_events` is a BRIN index."""
    store = Store(db_url)
    try:
        found = sa.inspect(store.engine)
        names = {
            table: {ix["name"] for ix in found.get_indexes(table)}
            for table in ("watch_events", "watch_sessions")
        }
        if store.dialect == "postgresql":
            with store.engine.connect() as conn:
                time_index = conn.execute(
                    sa.text(
                        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_watch_events_time'"
                    )
                ).scalar_one()
            assert "USING brin" in time_index
    finally:
        store.close()
    assert names == {
        "watch_events": {"ix_watch_events_user_time", "ix_watch_events_time"},
        "watch_sessions": {"ix_watch_sessions_last_time"},
    }


def test_a_store_of_revision_0001_upgrades_and_keeps_ingesting(db_url: str) -> None:
    from alembic import command
    from movierec_ingestor import db

    engine = db.create_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = db.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO recommendations (event_key, time, user_id, server, status, "
                    "results) VALUES ('old', '2025-10-17 10:00:00', 1, 's', 200, 'a')"
                )
            )
    finally:
        engine.dispose()
    store = Store(db_url)  # upgrades to head: appended columns, staged by name
    try:
        store.write(_batch([LOG_LINE, PROVENANCE.encode(), RATE_LINE]))
        with store.engine.connect() as conn:
            sources = conn.execute(
                sa.text("SELECT event_key, source FROM recommendations ORDER BY source")
            ).all()
            ingested = conn.execute(sa.text("SELECT ingested_at FROM rating_events")).scalar_one()
    finally:
        store.close()
    assert [s for _, s in sources] == ["log", "log", "provenance"]
    assert ingested is not None


LOG_LINE = (
    "2025-10-17T10:00:00,7,recommendation request s:8082, status 200, result: a+1999, b+, 12 ms"
)
RATE_LINE = "2025-10-17T10:00:01,7,GET /rate/a+1999=4"
PROVENANCE = json.dumps(
    {
        "request_id": "r-1",
        "time": "2025-10-17T10:00:00.000123",
        "user_id": 7,
        "track": "canary",
        "model_name": "movierec-knn",
        "model_version": "3",
        "items": [{"movie_id": "a+1999", "score": 4.5}, {"movie_id": "b+", "score": 3.25}],
        "latency_ms": 11.6,
        "status": 200,
        "fallback": None,
    }
)


def test_provenance_events_are_stored_with_track_version_and_scores(db_url: str) -> None:
    head = json.loads(PROVENANCE) | {"request_id": "r-2", "method": "HEAD"}
    shed = json.loads(PROVENANCE) | {"request_id": "r-3", "status": 503, "items": []}
    bad = json.loads(PROVENANCE) | {"request_id": "r-4", "items": [{"movie_id": "X Y"}]}
    batch = _batch([PROVENANCE, json.dumps(head), json.dumps(shed), json.dumps(bad), PROVENANCE])
    assert (batch.skipped, [d.reason for d in batch.dead_letters]) == (2, ["invalid_results"])
    store = Store(db_url)
    try:
        result = store.write(batch)
        again = store.write(_batch([PROVENANCE]))
        with store.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT request_id, user_id, time, track, model_name, model_version, results,"
                    " scores, latency_ms, status, source, ingested_at FROM recommendations"
                )
            ).one()
    finally:
        store.close()
    assert (result.stored, result.duplicates, again.stored) == (1, 1, 0)
    assert tuple(row[:2]) == ("r-1", 7)
    assert _as_time(row[2]) == datetime(2025, 10, 17, 10, 0, 0, 123)
    assert tuple(row[3:11]) == (
        "canary",
        "movierec-knn",
        "3",
        "a+1999,b+",
        "4.5,3.25",
        12,
        200,
        "provenance",
    )
    assert abs(_as_time(row[11]) - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_implausible_times_are_dead_lettered_and_cannot_lock_a_rating(db_url: str) -> None:
    lines = [
        "9999-12-31T23:59:59,1,GET /rate/a+1999=1",  # would be "the latest" for ever
        "1990-01-01T00:00:00,1,GET /rate/a+1999=1",  # before the service existed
        "2025-10-17T10:00:00,1,GET /rate/a+1999=5",
    ]
    soon = datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1)
    later = f"{soon.isoformat(timespec='seconds')},1,GET /rate/a+1999=3"  # within the skew
    store = Store(db_url)
    try:
        first = _batch(lines)
        store.write(first)
        store.write(_batch([later], start=3))
        with store.engine.connect() as conn:
            rating = conn.execute(sa.text("SELECT rating FROM ratings")).scalar_one()
            reasons = conn.execute(
                sa.text("SELECT reason FROM dead_letters ORDER BY position")
            ).scalars()
            assert list(reasons) == ["time_in_future", "time_before_epoch"]
    finally:
        store.close()
    assert rating == 3


def test_the_plausibility_window_is_configurable() -> None:
    policy = TimePolicy(epoch=datetime(1980, 1, 1), max_skew=timedelta(days=400))
    batch = Batch("test", policy=policy, ingested_at=datetime(2026, 1, 1))
    batch.add("1990-01-01T00:00:00,1,GET /rate/a=1", "0")
    batch.add("2026-12-01T00:00:00,1,GET /rate/a=1", "1")
    batch.add("2027-03-01T00:00:00,1,GET /rate/a=1", "2")
    assert len(batch.rate) == 2
    assert [d.reason for d in batch.dead_letters] == ["time_in_future"]


def test_a_dead_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="unavailable"):
        Store("postgresql+psycopg2://nobody:x@127.0.0.1:1/none")


def _cancel_every_statement(conn: sa.Connection) -> None:
    conn.exec_driver_sql("SET LOCAL statement_timeout = 1")


@pytest.mark.postgres
def test_a_batch_failing_mid_write_keeps_nothing_and_can_be_retried(pg_url: str) -> None:
    stream = make_stream(20_000, seed=2)
    batch = _batch(stream.lines, "kafka:t")
    store = Store(pg_url)
    try:
        # Each transaction cancels its statements after 1 ms: the COPY or the INSERT of the
        # batch fails half-way, inside the transaction, with a raw driver error.
        sa.event.listen(store.engine, "begin", _cancel_every_statement)
        with pytest.raises(StoreUnavailable, match="statement timeout"):
            store.write(batch)
        sa.event.remove(store.engine, "begin", _cancel_every_statement)
        assert store.offsets("kafka:t") == {}  # nothing of the failed batch was kept
        assert store.write(batch).stored == len(stream.keys)
    finally:
        store.close()
    assert_exactly(stream, pg_url)
