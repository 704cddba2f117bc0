"""`movierec ingest` as a user runs it: JSON summary, exit codes, metadata, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from movierec.cli import main

from .streams import assert_exactly, make_stream, write_lines


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ingest", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ingest_prints_one_json_line_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "stream.log"
    stream = make_stream(2000)
    write_lines(str(log), stream.lines)
    url = f"sqlite:///{tmp_path}/sub/dir/movierec.db"
    code, out, _ = _run(capsys, "--source", str(log), "--db", url, "--until-caught-up")
    assert code == 0
    assert out.count("\n") == 1
    first = json.loads(out)
    assert first == {
        "read": 2000,
        "stored": len(stream.keys),
        "duplicates": 2000 - stream.invalid - len(stream.keys),
        "dead_letters": stream.invalid,
        "skipped": 0,
    }
    code, out, _ = _run(capsys, "--source", str(log), "--db", url, "--until-caught-up")
    assert code == 0 and json.loads(out) == {
        "read": 0,
        "stored": 0,
        "duplicates": 0,
        "dead_letters": 0,
        "skipped": 0,
    }
    assert_exactly(stream, url)


@pytest.mark.parametrize(
    "argv",
    [
        ["--source", "/nonexistent/stream.log"],
        ["--source", "kafka://localhost/"],
        ["--source", "kafka://localhost:notaport/topic"],
        ["--source", "http://example/stream"],
        ["--source", "{log}", "--db", "mysql://x/y"],
        ["--source", "{log}", "--db", "::not a url::"],
        ["--source", "{log}", "--metadata", "{tmp}/no-such-folder"],
        ["--source", "{log}", "--metadata", "ftp://host/x"],
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "s.log"
    log.write_text("")
    args = [a.format(log=log, tmp=tmp_path) for a in argv]
    if "--db" not in args:
        args += ["--db", f"sqlite:///{tmp_path}/x.db"]
    code, out, err = _run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("movierec ingest: ")


def test_bad_option_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for option in (["--max-seconds", "-3"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as info:
            main(["ingest", "--source", str(tmp_path), *option])
        assert info.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_metadata_csv_folder_is_upserted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "users.csv").write_text(
        "user_id,age,occupation,gender\n1,34,writer,F\n2,,,\nbad,1,x,M\n"
    )
    (meta / "movies.csv").write_text(
        "movie_id,title,year,genres,runtime,popularity\na+1999,A,1999,Drama|Comedy,120,3.5\n"
    )
    log = tmp_path / "s.log"
    write_lines(str(log), [b"2025-10-17T10:00:00,1,GET /rate/a+1999=3"])
    url = f"sqlite:///{tmp_path}/x.db"
    for _ in range(2):
        code, _, _ = _run(
            capsys, "--source", str(log), "--db", url, "--until-caught-up", "--metadata", str(meta)
        )
        assert code == 0
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT user_id, age FROM users ORDER BY user_id")).all() == [
            (1, 34),
            (2, None),
        ]
        assert conn.execute(sa.text("SELECT genres, runtime FROM movies")).one() == (
            "Drama|Comedy",
            120,
        )
    engine.dispose()


@pytest.fixture
def metadata_api() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server answering like the course's metadata API; user 13 makes it fail."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            kind, _, key = self.path.strip("/").partition("/")
            if key == "13":
                self.send_response(500)
                self.end_headers()
                return
            if kind == "user":
                body = {"user_id": int(key), "age": 20, "occupation": "student", "gender": "M"}
            elif kind == "movie":
                body = {
                    "id": key,
                    "title": "A",
                    "release_date": "1999-03-31",
                    "genres": [{"id": 1, "name": "Action"}, {"id": 2, "name": "Sci-Fi"}],
                    "runtime": 136,
                    "popularity": 7.5,
                }
            else:
                body = {"message": "not found"}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_metadata_api_fills_unknown_ids_and_failures_do_not_stop_ingest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata_api: tuple[str, list[str]]
) -> None:
    base, seen = metadata_api
    log = tmp_path / "s.log"
    write_lines(
        str(log),
        [
            b"2025-10-17T10:00:00,1,GET /rate/the+matrix+1999=5",
            b"2025-10-17T10:00:01,13,GET /data/m/the+matrix+1999/3.mpg",
        ],
    )
    url = f"sqlite:///{tmp_path}/x.db"
    code, out, _ = _run(
        capsys, "--source", str(log), "--db", url, "--until-caught-up", "--metadata", base
    )
    assert code == 0 and json.loads(out)["stored"] == 2
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT user_id FROM users")).scalars().all() == [1]
        assert conn.execute(sa.text("SELECT movie_id, year, genres FROM movies")).one() == (
            "the+matrix+1999",
            1999,
            "Action|Sci-Fi",
        )
    engine.dispose()
    assert "/user/13" in seen
    seen.clear()
    write_lines(str(log), [b"2025-10-17T10:00:02,1,GET /rate/the+matrix+1999=4"])
    _run(capsys, "--source", str(log), "--db", url, "--until-caught-up", "--metadata", base)
    assert "/user/1" not in seen and "/movie/the+matrix+1999" not in seen  # known ids: no lookups


def test_metadata_api_down_costs_nothing_but_metadata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "s.log"
    write_lines(str(log), [b"2025-10-17T10:00:00,1,GET /rate/a=5"])
    code, out, _ = _run(
        capsys,
        "--source",
        str(log),
        "--db",
        f"sqlite:///{tmp_path}/x.db",
        "--until-caught-up",
        "--metadata",
        "http://127.0.0.1:1",
    )
    assert code == 0 and json.loads(out)["stored"] == 1


def test_sigterm_finishes_the_batch_and_exits_0(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    stream = make_stream(3000)
    write_lines(str(log), stream.lines)
    url = f"sqlite:///{tmp_path}/x.db"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "movierec",
            "ingest",
            "--source",
            str(log),
            "--db",
            url,
            "--batch-size",
            "500",
            "--metrics-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOVIEREC_INGESTOR_POLL_TIMEOUT_S": "0.2"},
    )
    deadline = time.monotonic() + 60
    engine = sa.create_engine(url)
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    n = conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one()
                if n == stream.invalid:
                    break
            except sa.exc.OperationalError:
                pass
            time.sleep(0.2)
    finally:
        engine.dispose()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        exposed = response.read().decode()
    assert "movierec_ingest_events_total{" in exposed
    assert "movierec_ingest_batch_seconds_bucket{" in exposed
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["read"] == 3000
    assert_exactly(stream, url)


def test_a_dead_database_fails_the_run_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "s.log"
    write_lines(str(log), [b"2025-10-17T10:00:00,1,GET /rate/a=5"])
    code, out, err = _run(
        capsys,
        "--source",
        str(log),
        "--db",
        "postgresql://nobody:pw@127.0.0.1:1/movierec",
        "--until-caught-up",
    )
    assert code == 1
    assert out == ""
    assert "unavailable" in err and "pw" not in err  # the reason, never the password


def test_ingest_agrees_with_the_simulators_own_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, meta = tmp_path / "s.log", tmp_path / "meta"
    assert (
        main(
            [
                "simulate",
                "--users",
                "300",
                "--movies",
                "80",
                "--hours",
                "6",
                "--seed",
                "4",
                "--malformed-share",
                "0.05",
                "--out",
                str(log),
                "--metadata-out",
                str(meta),
            ]
        )
        == 0
    )
    world = json.loads(capsys.readouterr().out)
    url = f"sqlite:///{tmp_path}/x.db"
    code, out, _ = _run(
        capsys, "--source", str(log), "--db", url, "--until-caught-up", "--metadata", str(meta)
    )
    assert code == 0
    assert json.loads(out) == {
        "read": world["lines"],
        "stored": world["distinct_events"],
        "duplicates": world["valid_events"] - world["distinct_events"],
        "dead_letters": world["malformed_total"],
        "skipped": 0,
    }
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 300
        assert conn.execute(sa.text("SELECT count(*) FROM movies")).scalar_one() == 80
    engine.dispose()
