"""`movierec simulate` / `simulator-api` as a user runs them: JSON summary, files, exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from movierec_ingestor.events import ParseError, parse_line

from harness.ports import free_port
from movierec.cli import main

SMALL = ["--users", "120", "--movies", "60", "--seed", "4"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object], str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_simulate_writes_the_stream_metadata_and_a_matching_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, meta = tmp_path / "stream.log", tmp_path / "meta"
    code, summary, _ = _run(
        capsys,
        "simulate",
        *SMALL,
        "--hours",
        "12",
        "--out",
        str(out),
        "--metadata-out",
        str(meta),
        "--malformed-share",
        "0.05",
        "--drift",
        "--shilling-users",
        "6",
    )
    assert code == 0
    lines = out.read_bytes().split(b"\n")[:-1]
    assert summary["lines"] == len(lines)
    valid = 0
    for line in lines:
        try:
            parse_line(line)
            valid += 1
        except ParseError:
            pass
    assert summary["valid_events"] == valid
    assert summary["malformed_total"] == len(lines) - valid
    assert summary["shilling"]["target"] and len(summary["shilling"]["user_ids"]) == 6  # type: ignore[index]
    assert summary["drift"]["cohort_users"] == 18  # type: ignore[index]
    with (meta / "users.csv").open() as fh:
        users = list(csv.DictReader(fh))
    with (meta / "movies.csv").open() as fh:
        movies = list(csv.DictReader(fh))
    assert len(users) == 120 and list(users[0]) == ["user_id", "age", "occupation", "gender"]
    assert len(movies) == 60
    assert list(movies[0]) == ["movie_id", "title", "year", "genres", "runtime", "popularity"]
    assert all(m["genres"] for m in movies)


def test_simulate_is_reproducible_and_appends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    _run(capsys, "simulate", *SMALL, "--hours", "3", "--out", str(a))
    _run(capsys, "simulate", *SMALL, "--hours", "3", "--out", str(b))
    assert a.read_bytes() == b.read_bytes()
    _run(capsys, "simulate", *SMALL, "--hours", "3", "--out", str(b))
    assert b.read_bytes() == a.read_bytes() * 2


def test_ratings_csv_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ratings.csv"
    code, summary, _ = _run(
        capsys,
        "simulate",
        *SMALL,
        "--format",
        "ratings-csv",
        "--ratings",
        "2000",
        "--out",
        str(out),
    )
    assert code == 0 and summary["ratings"] == 2000
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2000 and list(rows[0]) == ["user_id", "movie_id", "rating", "timestamp"]
    assert {r["rating"] for r in rows} <= {"1", "2", "3", "4", "5"}
    assert len({(r["user_id"], r["movie_id"]) for r in rows}) == 2000
    # MovieLens-style history: ten years from 2015, nothing in the future.
    stamps = [int(r["timestamp"]) for r in rows]
    assert min(stamps) >= 1_420_070_400 and max(stamps) < 1_735_689_600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "-5", "--out", "x"], "--users and --movies must be >= 1"),
        (["--hours", "0", "--out", "x"], "--hours must be > 0"),
        ([], "exactly one of --out FILE or --kafka"),
        (["--out", "x", "--kafka", "h:1"], "exactly one of --out FILE or --kafka"),
        (["--kafka", "no-port"], "--kafka must be HOST:PORT"),
        (["--malformed-share", "1.5", "--out", "x"], "--malformed-share"),
        (["--format", "ratings-csv", "--kafka", "h:1"], "ratings-csv writes a file"),
        (["--shilling-users", "3", "--shilling-target", "nope+1999", "--out", "x"], "not a movie"),
        (["--start", "yesterday", "--out", "x"], "--start must be ISO 8601"),
        (["--sessions-per-day", "0", "--out", "x"], "--sessions-per-day must be > 0"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "simulate", *SMALL, *args)
    assert code == 2
    assert message in err


def test_unwritable_output_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    code, _, err = _run(capsys, "simulate", *SMALL, "--out", str(tmp_path / "taken"))
    assert code == 2 and "cannot write" in err


def test_simulator_api_serves_the_world(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "movierec.cli", "simulator-api", *SMALL, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        announced = json.loads(proc.stdout.readline())
        assert announced == {"url": f"http://127.0.0.1:{port}"}
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = requests.get(f"{announced['url']}/user/1", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert resp.status_code == 200 and set(resp.json()) == {
            "user_id",
            "age",
            "occupation",
            "gender",
        }
        assert requests.get(f"{announced['url']}/user/121", timeout=2).status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_unreachable_broker_fails_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOVIEREC_SIMULATOR_KAFKA_CONNECT_TIMEOUT_S", "2")
    port = free_port()
    code, _, err = _run(capsys, "simulate", *SMALL, "--hours", "1", "--kafka", f"127.0.0.1:{port}")
    assert code == 1
    assert f"Kafka broker at 127.0.0.1:{port} is unreachable" in err


def test_simulate_to_kafka_delivers_every_line(
    kafka_bootstrap: str, kafka_topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    code, summary, _ = _run(
        capsys,
        "simulate",
        *SMALL,
        "--hours",
        "2",
        "--kafka",
        kafka_bootstrap,
        "--topic",
        kafka_topic,
    )
    assert code == 0 and summary["sink"] == f"kafka://{kafka_bootstrap}/{kafka_topic}"
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(kafka_topic, p) for p in consumer.partitions_for_topic(kafka_topic)]
        consumer.assign(parts)
        end = consumer.end_offsets(parts)
    finally:
        consumer.close()
    assert sum(end.values()) == summary["lines"]
