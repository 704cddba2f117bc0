"""The file source: resumes from stored byte offsets, follows growth, survives garbage."""

from __future__ import annotations

from pathlib import Path

from movierec_ingestor.job import IngestJob, JobOptions
from movierec_ingestor.sources.file import FileSource
from movierec_ingestor.store import Store

from .streams import assert_exactly, make_stream, write_lines


def _ingest(path: Path, url: str, *, batch_size: int = 500) -> dict[str, int]:
    store = Store(url)
    source = FileSource(path)
    try:
        source.resume(store.offsets(source.name), store.identity(source.name))
        job = IngestJob(
            source,
            store,
            JobOptions(batch_size=batch_size, poll_timeout_s=0.05, until_caught_up=True),
        )
        return job.run().as_dict()
    finally:
        source.close()
        store.close()


def test_resumes_where_it_stopped_and_follows_growth(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    log = tmp_path / "stream.log"
    stream = make_stream(5000)
    write_lines(str(log), stream.lines[:2000])
    first = _ingest(log, url)
    write_lines(str(log), stream.lines[2000:])
    second = _ingest(log, url)
    third = _ingest(log, url)
    assert first["read"] == 2000
    assert second["read"] == 3000
    assert third == {"read": 0, "stored": 0, "duplicates": 0, "dead_letters": 0, "skipped": 0}
    assert first["stored"] + second["stored"] == len(stream.keys)
    assert first["dead_letters"] + second["dead_letters"] == stream.invalid
    assert_exactly(stream, url)


def test_a_line_being_written_is_not_read_half(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    log.write_bytes(b"2025-10-17T10:00:00,1,GET /rate/a=3\n2025-10-17T10:00:01,1,GET /ra")
    source = FileSource(log, take_unterminated=False)
    batch = source.read(100, 0.01)
    assert batch.read == 1 and batch.offsets == {0: 36}
    source.committed(batch)
    with log.open("ab") as handle:
        handle.write(b"te/a=4\n")
    batch = source.read(100, 0.01)
    source.close()
    assert [row[4] for row in batch.rate] == [4]
    assert batch.dead_letters == []
    assert batch.offsets == {0: log.stat().st_size}


def test_garbage_bytes_and_huge_lines_become_dead_letters(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    log.write_bytes(
        b"\x00\xff\xfe\n"
        + b"x" * (3 << 20)  # 3 MiB without a newline
        + b"\n2025-10-17T10:00:00,1,GET /rate/a=3\n\n"
        + b"2025-10-17T10:00:00,1,GET /rate/b=3"  # no final newline: taken at the end
    )
    url = f"sqlite:///{tmp_path}/db.sqlite"
    totals = _ingest(log, url, batch_size=10)
    assert totals["stored"] == 2
    assert totals["dead_letters"] == totals["read"] - 2 >= 3


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    log = tmp_path / "stream.log"
    stream = make_stream(300, garbage_every=0)
    write_lines(str(log), stream.lines)
    _ingest(log, url)
    log.write_bytes(b"")
    write_lines(str(log), [b"2025-10-18T10:00:00,1,GET /rate/new=3"])
    totals = _ingest(log, url)
    assert totals["read"] == 1 and totals["stored"] == 1


def test_a_rotated_longer_file_is_read_from_its_start(tmp_path: Path) -> None:
    """Rotation: the old file moves away, a new one (longer than the stored offset) takes its
    name. Its first lines must not be skipped."""
    url = f"sqlite:///{tmp_path}/db.sqlite"
    log = tmp_path / "stream.log"
    old = make_stream(300, seed=1, garbage_every=0)
    write_lines(str(log), old.lines)
    _ingest(log, url)
    log.rename(tmp_path / "stream.log.1")
    new = make_stream(900, seed=2, garbage_every=0)  # past the old offset
    write_lines(str(log), new.lines)
    totals = _ingest(log, url)
    assert totals["read"] == 900
    assert totals["stored"] == len(new.keys - old.keys)


def test_a_file_rewritten_in_place_is_read_from_its_start(tmp_path: Path) -> None:
    """Same inode, other content (copytruncate, then more than before written)."""
    url = f"sqlite:///{tmp_path}/db.sqlite"
    log = tmp_path / "stream.log"
    old = make_stream(200, seed=3, garbage_every=0)
    write_lines(str(log), old.lines)
    _ingest(log, url)
    new = make_stream(700, seed=4, garbage_every=0)
    with log.open("r+b") as handle:  # keeps the inode
        handle.truncate(0)
    write_lines(str(log), new.lines)
    totals = _ingest(log, url)
    assert totals["read"] == 700
    assert totals["stored"] == len(new.keys - old.keys)


def test_a_file_replaced_while_followed_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "stream.log"
    write_lines(str(log), [b"2025-10-17T10:00:00,1,GET /rate/a=3"] * 50)
    source = FileSource(log, take_unterminated=False)
    first = source.read(100, 0.01)
    source.committed(first)
    replacement = tmp_path / "next.log"
    lines = [f"2025-10-18T10:00:{i:02d},2,GET /rate/b=4".encode() for i in range(60)]
    write_lines(str(replacement), lines)
    replacement.rename(log)
    second = source.read(100, 0.01)
    source.close()
    assert second.rewind and second.read == 60
    assert {row[2] for row in second.rate} == {2}
