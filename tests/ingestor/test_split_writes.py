"""A batch split by user into parts that commit side by side (PostgreSQL, `writers` > 1): the
parts never wait on each other's rows, and a crash between them and the offsets replays the
batch without storing anything twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from movierec_ingestor.batch import Batch
from movierec_ingestor.job import IngestJob, JobOptions
from movierec_ingestor.sources.file import FileSource
from movierec_ingestor.store import Store

from .streams import assert_exactly, make_stream, write_lines


def test_split_puts_each_user_in_one_part_and_keeps_every_row() -> None:
    stream = make_stream(3000)
    batch = Batch("test")
    for i, line in enumerate(stream.lines):
        batch.add(line, str(i))
    batch.offsets[0] = len(stream.lines)
    parts = batch.split(3)
    assert len(parts) == 3
    for kind in ("watch", "rate", "recommendation"):
        rows = getattr(batch, kind)
        split = [row for part in parts for row in getattr(part, kind)]
        assert sorted(split) == sorted(rows)
        for n, part in enumerate(parts):
            assert all(row[2] % 3 == n for row in getattr(part, kind))  # row[2] is the user
    assert parts[0].dead_letters == batch.dead_letters
    assert not parts[1].dead_letters and not parts[2].dead_letters
    # Offsets are the whole batch's business: they commit once every part has.
    assert all(not part.offsets for part in parts)
    assert all(part.ingested_at == batch.ingested_at for part in parts)


def _first_batch(path: Path, lines: int) -> Batch:
    source = FileSource(path)
    try:
        return source.read(lines, 0.01)
    finally:
        source.close()


@pytest.mark.postgres
def test_a_crash_between_parts_and_offsets_replays_without_doubles(
    pg_url: str, tmp_path: Path
) -> None:
    stream = make_stream(8000, seed=3)
    path = tmp_path / "movielog.log"
    write_lines(str(path), stream.lines)
    store = Store(pg_url)
    try:
        # The crash: one part of the first batch committed, the other part and the offsets not.
        first = _first_batch(path, 2000)
        done = store.write(first.split(2)[0], offsets=False)
        assert done.stored > 0
        source = FileSource(path)
        assert store.offsets(source.name) == {}
        # The next run reads that batch again, and every batch after it in parts side by side.
        source.resume(store.offsets(source.name), store.identity(source.name))
        options = JobOptions(batch_size=2000, until_caught_up=True, writers=2)
        try:
            totals = IngestJob(source, store, options).run()
        finally:
            source.close()
        assert store.offsets(source.name) == {0: path.stat().st_size}
    finally:
        store.close()
    assert totals.read == len(stream.lines)
    assert done.stored + totals.stored == len(stream.keys)
    assert totals.dead_letters == stream.invalid
    # Every event once, every dead letter once, and the derived tables (sessions, latest
    # ratings) exactly as if each event had arrived once.
    assert_exactly(stream, pg_url)
