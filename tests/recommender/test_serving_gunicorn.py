"""The recommender and router under gunicorn with 2 workers: metrics across workers, the CLI."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from movierec_recommender.router.flagdata import write_flag_file

from harness.appservice import (
    RECOMMENDER_APP,
    ROUTER_APP,
    Service,
    http_get,
    train_model,
)
from movierec.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model(tmp_path_factory.mktemp("gmodel") / "v5", n_users=400, n_movies=100)


@pytest.fixture(scope="module")
def service(model_dir: Path) -> Iterator[Service]:
    env = {
        "MOVIEREC_RECOMMENDER_MODEL": str(model_dir),
        "MOVIEREC_RECOMMENDER_TRACK": "stable",
        "MOVIEREC_EDGE_SHED_WAIT_MS": "5000",  # these tests count answers: no shedding on busy CI
    }
    with Service(RECOMMENDER_APP, env, workers=2) as svc:
        yield svc


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_every_request_across_two_workers(service: Service) -> None:
    def get(uid: int) -> int:
        return http_get(f"{service.url}/recommend/{uid}")[0]

    before = http_get(service.url + "/metrics")[2].decode()
    n = 300
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(get, range(n)))
    assert statuses == [200] * n
    after = http_get(service.url + "/metrics")[2].decode()
    name = "movierec_requests_total"
    counted = _sample(after, name, status="200") - _sample(before, name, status="200")
    assert counted == n
    hist = "movierec_request_latency_seconds_count"
    assert _sample(after, hist, status="200") - _sample(before, hist, status="200") == n
    pids = {p.name.split("_")[-1] for p in Path(service.prom_dir).glob("counter_*.db")}
    assert len(pids) >= 2, "only one worker answered; the test proves nothing about merging"
    info = re.findall(r'movierec_model_info\{algo="item-item",model_version="v5"\} (\S+)', after)
    assert info == ["1.0"]


def test_gunicorn_serves_the_contract(service: Service) -> None:
    status, headers, body = http_get(service.url + "/recommend/12", {"Accept": "application/json"})
    assert status == 200
    doc = json.loads(body)
    assert doc["model_version"] == headers["X-Model-Version"] == "v5"
    assert 0 < len(doc["items"]) <= 20
    status, headers, body = http_get(service.url + "/recommend/" + "9" * 30)
    assert status == 400
    assert b"Traceback" not in body
    long_line = http_get(service.url + "/recommend/" + "1" * 3000)[0]
    assert long_line in {400, 414}


def test_router_under_gunicorn_forwards_with_headers(service: Service, tmp_path: Path) -> None:
    flags = write_flag_file(tmp_path / "flags.json", {"stable": 100})
    env = {
        "MOVIEREC_ROUTER_TRACKS": json.dumps({"stable": service.url}),
        "MOVIEREC_ROUTER_FLAGS_FILE": str(flags),
    }
    with Service(ROUTER_APP, env, workers=2) as router:
        status, headers, body = http_get(router.url + "/recommend/3")
        assert status == 200
        assert headers["X-Track"] == "stable"
        assert headers["X-Model-Version"] == "v5"
        assert body.decode() == http_get(service.url + "/recommend/3")[2].decode()
        metrics = http_get(router.url + "/metrics")[2].decode()
        assert _sample(metrics, "movierec_requests_total", component="router", status="200") == 1


def test_cli_serve_missing_model_dir_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", str(tmp_path / "nope")]) == 2
    assert "no such model folder" in capsys.readouterr().err


def test_cli_serve_bad_model_uri_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "models:/movies@@x"]) == 2
    assert "model URI" in capsys.readouterr().err


def test_cli_route_bad_tracks_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = str(tmp_path / "f.json")
    assert main(["route", "--flags", flags, "--tracks", "{not json"]) == 2
    assert main(["route", "--flags", flags, "--tracks", "{}"]) == 2
    assert main(["route", "--flags", flags, "--tracks", '{"stable": "ftp://x"}']) == 2
    assert "--tracks" in capsys.readouterr().err


def test_overload_is_shed_with_fast_503s_not_queued(model_dir: Path) -> None:
    env = {
        "MOVIEREC_RECOMMENDER_MODEL": str(model_dir),
        "MOVIEREC_RECOMMENDER_PRECOMPUTE": "false",
        "MOVIEREC_RECOMMENDER_CACHE_SIZE": "0",
        "MOVIEREC_EDGE_MAX_PENDING": "1",
    }
    with Service(RECOMMENDER_APP, env, workers=1, threads=1) as svc:

        def get(uid: int) -> tuple[int, str | None, float]:
            started = time.monotonic()
            status, headers, _ = http_get(f"{svc.url}/recommend/{uid}", timeout=5)
            return status, headers.get("Retry-After"), time.monotonic() - started

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(get, [u % 400 for u in range(400)]))
        statuses = {status for status, _, _ in results}
        assert statuses <= {200, 503}
        shed = [r for r in results if r[0] == 503]
        assert shed, "16 concurrent clients against 1 slot never saw a 503"
        assert all(retry == "1" for _, retry, _ in shed)
        shed_times = sorted(seconds for _, _, seconds in shed)
        assert shed_times[len(shed_times) // 2] < 0.2  # refused at once, not after queueing
        assert max(seconds for _, _, seconds in results) < 2.0  # generous: shared CI cores
        assert any(status == 200 for status, _, _ in results)
        metrics = http_get(svc.url + "/metrics")[2].decode()
        assert _sample(metrics, "movierec_load_shed_total", reason="queue_full") >= len(shed)


def _wait_answer_table(url: str, users: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = http_get(url + "/metrics")[2].decode()
        found = re.search(r"^movierec_precomputed_users (\S+)", text, re.M)
        if found and float(found.group(1)) >= users:
            return
        time.sleep(0.2)
    raise AssertionError(f"no answer table of {users} users after {timeout} s")


def test_answers_that_need_no_model_call_never_wait_for_a_thread(model_dir: Path) -> None:
    """Precomputed answers are made in the worker's event loop: with one thread and room for one
    pending request, 16 concurrent clients (which the thread path sheds, above) all get 200."""
    env = {"MOVIEREC_RECOMMENDER_MODEL": str(model_dir), "MOVIEREC_EDGE_MAX_PENDING": "1"}
    with Service(RECOMMENDER_APP, env, workers=1, threads=1) as svc:
        _wait_answer_table(svc.url, 400)
        shed_before = _sample(_metrics(svc.url), "movierec_load_shed_total")
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda u: http_get(f"{svc.url}/recommend/{u}", timeout=5),
                                    [u % 500 for u in range(400)]))  # fmt: skip
        assert [status for status, _, _ in results] == [200] * 400
        assert all(headers["X-Model-Version"] == model_dir.name for _, headers, _ in results)
        assert _sample(_metrics(svc.url), "movierec_load_shed_total") == shed_before


def _metrics(url: str) -> str:
    """/metrics, which takes the one thread: asked again when it was refused (max_pending 1)."""
    for _ in range(20):
        status, _, body = http_get(url + "/metrics")
        if status == 200:
            return body.decode()
        time.sleep(0.1)
    raise AssertionError("/metrics refused 20 times")


# -- admission and request reading: pure decisions, table-tested ------------------------------


GET = b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "state", "status", "reusable"),
    [
        (GET, "complete", 0, True),
        (GET + GET, "complete", 0, False),  # pipelined: answered one by one, never shed-kept
        (GET[:20], "head", 0, False),
        (b"GET /r HTTP/1.0\r\nHost: x\r\n\r\n", "complete", 0, False),
        (b"GET /r HTTP/1.1\r\nConnection: close\r\n\r\n", "complete", 0, False),
        (b"HEAD /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n", "complete", 0, True),
        (b"POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nab", "body", 0, False),
        (b"POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "complete", 0, False),
        (b"POST /r HTTP/1.1\r\nContent-Length: 9999\r\n\r\n", "error", 413, False),
        (b"POST /r HTTP/1.1\r\nContent-Length: x\r\n\r\n", "error", 400, False),
        (b"POST /r HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "error", 400,
         False),
        (b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "error", 411, False),
        (b"GET /r HTTP/1.1\r\nX: " + b"a" * 9000, "error", 431, False),
        (b"GET /r HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "error", 431, False),
        (b"GARBAGE\r\n\r\n", "error", 400, False),
        (b"GET /r HTTP/1.1\r\nno colon\r\n\r\n", "error", 400, False),
        (b"GET /r HTTP/1.1\r\nBad Name: x\r\n\r\n", "error", 400, False),
        (b"GET /r HTTP/1.1\r\nX: " + b"a" * 4200 + b"\r\n\r\n", "error", 431, False),
        (b"GET /r HTTP/1.1\r\n" + b"X: a\r\n" * 51 + b"\r\n", "error", 431, False),
        (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n\r\n", "error", 414, False),
    ],
)  # fmt: skip
def test_scan_request(data: bytes, state: str, status: int, reusable: bool) -> None:
    from movierec_recommender.web.http1 import scan_request

    scan = scan_request(data, max_head=8192, max_body=4096)
    assert (scan.state, scan.status, scan.reusable) == (state, status, reusable)


@pytest.mark.parametrize(
    ("data", "plain", "keep"),
    [
        (GET, True, True),
        (GET + GET, True, True),  # pipelined: each answered on the fast path, kept open
        (b"GET /r HTTP/1.0\r\nHost: x\r\n\r\n", True, False),
        (b"GET /r HTTP/1.1\r\nConnection: close\r\n\r\n", True, False),
        (b"HEAD /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n", True, True),
        (b"POST /r HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", False, False),
        (b"GET /r HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", False, False),
    ],
)
def test_scan_request_says_what_the_fast_path_may_answer(
    data: bytes, plain: bool, keep: bool
) -> None:
    from movierec_recommender.web.http1 import scan_request

    scan = scan_request(data, max_head=8192, max_body=4096)
    assert (scan.plain, scan.keep) == (plain, keep)
    if plain:
        assert scan.target.startswith("/r")


@pytest.mark.parametrize(
    ("pending", "per_request", "last_wait", "verdict"),
    [
        (0, 0.0, 0.0, None),
        (3, 0.01, 0.0, None),  # a thread is free: no wait
        (26, 0.01, 0.0, None),  # 23 ahead of it (beyond 4 busy threads): expects 230 ms
        (28, 0.01, 0.0, "queue_full"),  # 25 ahead: expects 250 ms
        (30, 0.01, 0.0, "queue_full"),  # expects 270 ms
        (256, 0.0, 0.0, "queue_full"),  # the hard cap
        (5, 0.0, 1.0, "queue_full"),  # queued behind 4 busy threads, and the last waited 1 s
        (2, 0.0, 1.0, None),  # no queue: an old measurement cannot keep refusing
    ],
)
def test_admission_on_arrival(
    pending: int, per_request: float, last_wait: float, verdict: str | None
) -> None:
    from movierec_recommender.web.admission import AdmissionPolicy, Load
    from movierec_recommender.web.settings import EdgeSettings

    policy = AdmissionPolicy(EdgeSettings(shed_wait_ms=250, max_pending=256))
    load = Load(pending, per_request, last_wait, threads=4, connections=10)
    assert policy.on_arrival(load) == verdict


def test_admission_on_start_and_on_connect() -> None:
    from movierec_recommender.web.admission import AdmissionPolicy
    from movierec_recommender.web.settings import EdgeSettings

    policy = AdmissionPolicy(EdgeSettings(shed_wait_ms=250, max_connections=100))
    assert policy.on_start(0.1) is None
    assert policy.on_start(0.3) == "queue_wait"
    assert policy.on_connect(99) is None
    assert policy.on_connect(100) == "connections"


def test_cli_route_keeps_the_flag_files_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ConfigMap volume: flags.json -> ..data/flags.json -> ..<timestamp>/flags.json, and the
    next update deletes that folder. The router must be given the path through the links, or
    after a restart it reads a folder that goes away and never sees a new weight."""
    from movierec_recommender import cli_serve

    volume = tmp_path / "flags"
    (volume / "..2026_12_01_21_07_12.1").mkdir(parents=True)
    write_flag_file(volume / "..2026_12_01_21_07_12.1" / "flags.json", {"stable": 100})
    (volume / "..data").symlink_to("..2026_12_01_21_07_12.1")
    (volume / "flags.json").symlink_to("..data/flags.json")
    started: dict[str, str] = {}

    def fake_gunicorn(app: str, args: object, env: dict[str, str]) -> int:
        started.update(env)
        return 0

    monkeypatch.setattr(cli_serve, "_gunicorn", fake_gunicorn)
    monkeypatch.chdir(tmp_path)
    tracks = '{"stable": "http://127.0.0.1:9"}'
    assert main(["route", "--flags", "flags/flags.json", "--tracks", tracks]) == 0
    assert started["MOVIEREC_ROUTER_FLAGS_FILE"] == str(volume / "flags.json")
