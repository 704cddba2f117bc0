"""The HTTP edge under attack, through real gunicorn processes on 127.0.0.1: stalled clients,
spoofed X-Forwarded-For, headers on answers made below the app, draining on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from movierec_recommender.router.flagdata import write_flag_file

from harness.stalled import StalledClients

CONF = "python:movierec_recommender.web.gunicorn_conf"
RECOMMENDER_APP = "movierec_recommender.serving.wsgi:create()"
ROUTER_APP = "movierec_recommender.router.wsgi:create()"
EDGE_HEADERS = ("X-Content-Type-Options", "Content-Security-Policy", "X-Model-Version", "X-Track")


def get(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; (0, {}, b"") when the connection fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    except OSError:
        return 0, {}, b""
    finally:
        conn.close()


class GunicornService:
    """One service under gunicorn on 127.0.0.1 in its own session, stopped by its PID."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        *,
        log_dir: Path,
        workers: int = 2,
        cwd: Path | None = None,
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.log_path = log_dir / f"gunicorn-{self.port}.log"
        self.cwd = cwd
        self.env = {
            **os.environ,
            **env,
            "MOVIEREC_EDGE_BIND": f"127.0.0.1:{self.port}",  # tests bind loopback explicitly
            "MOVIEREC_EDGE_WORKERS": str(workers),
            "MOVIEREC_EDGE_THREADS": "4",
            "TMPDIR": str(log_dir),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the config makes one under TMPDIR
        self.env.pop("MOVIEREC_RECOMMENDER_ANSWERS_CACHE_DIR", None)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GunicornService:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", CONF, self.app],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.cwd,
            )
        deadline = time.monotonic() + 90
        while get(self.port, "/readyz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(self.log_path.read_text()[-3000:])
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def train_model(folder: Path) -> Path:
    """A small real item-item model, saved to `folder`."""
    import numpy as np
    from movierec_recommender.data import RatingsData
    from movierec_recommender.models import build_model

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 15)
    movies = (rng.zipf(1.4, len(users)) - 1) % 80
    ratings = np.clip(np.round(rng.normal(3.5, 1.0, len(users))), 1, 5)
    data = RatingsData.from_arrays(users.astype(str), movies.astype(str), ratings)
    build_model("item-item").fit(data).save(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge")


@pytest.fixture(scope="module")
def model_dir(folder: Path) -> Path:
    return train_model(folder / "v7")


@pytest.fixture(scope="module")
def recommender(folder: Path, model_dir: Path) -> Iterator[GunicornService]:
    model = model_dir
    env = {"MOVIEREC_RECOMMENDER_MODEL": str(model), "MOVIEREC_RECOMMENDER_TRACK": "stable"}
    with GunicornService(RECOMMENDER_APP, env, log_dir=folder) as svc:
        yield svc


@pytest.fixture(scope="module")
def router(folder: Path, recommender: GunicornService) -> Iterator[GunicornService]:
    flags = write_flag_file(folder / "flags.json", {"stable": 100})
    env = {
        "MOVIEREC_ROUTER_TRACKS": json.dumps({"stable": recommender.url}),
        "MOVIEREC_ROUTER_FLAGS_FILE": str(flags),
        "MOVIEREC_ROUTER_RATE_LIMIT_RPS": "0",
    }
    with GunicornService(ROUTER_APP, env, log_dir=folder) as svc:
        yield svc


# -- slow and stalled clients ---------------------------------------------------------------------


def _normal_traffic(
    port: int, seconds: float, clients: int = 4, errors: list[str] | None = None
) -> list[tuple[int, float]]:
    """Keep-alive clients asking for recommendations: (status, seconds) per request; a request
    that fails or takes more than 2 s is (0, 2.0), its error in `errors`."""
    results: list[tuple[int, float]] = []
    errors = errors if errors is not None else []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        uid = k
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                conn.request("GET", f"/recommend/{uid % 300}")
                resp = conn.getresponse()
                resp.read()
                outcome = (resp.status, time.monotonic() - started)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                outcome = (0, 2.0)
                errors.append(
                    f"{type(exc).__name__}: {exc} after {time.monotonic() - started:.2f}s"
                )
            with lock:
                results.append(outcome)
            uid += clients
            time.sleep(0.01)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 10)
    return results


@pytest.mark.parametrize("target", ["recommender", "router"])
def test_64_stalled_connections_do_not_take_the_service_offline(
    target: str, request: pytest.FixtureRequest
) -> None:
    svc: GunicornService = request.getfixturevalue(target)
    with StalledClients(svc.port, 64) as stallers:
        time.sleep(1.0)  # every stalled connection is in before normal traffic starts
        errors: list[str] = []
        results = _normal_traffic(svc.port, seconds=6.0, errors=errors)
    assert stallers.opened >= 64
    statuses = [status for status, _ in results]
    latencies = sorted(seconds for _, seconds in results)
    assert len(results) > 50, f"only {len(results)} answers in 6 s"
    assert set(statuses) == {200}, ({s: statuses.count(s) for s in set(statuses)}, errors[:5])
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert p99 < 0.8, f"p99 {p99:.3f}s under 64 stalled connections"


# -- one header set on answers made below the app ------------------------------------------------


def _raw(port: int, data: bytes, wait: float = 8.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith(b"\n"):
                break
        return answer


def _status_and_headers(answer: bytes) -> tuple[int, dict[str, str]]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split(" ")[1]), headers


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /recommend/1 HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),  # gunicorn's
        (b"GET /recommend/1 HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),  # the loop's
        (b"get /recommend/1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # gunicorn: bad method
        (b"NONSENSE\r\n\r\n", 400),
        (b"POST /recommend/1 HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", 413),
        (b"POST /recommend/1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\nX-Slow: a", 408),  # after header_timeout_s
    ],
)
@pytest.mark.parametrize("target", ["recommender", "router"])
def test_answers_made_below_the_app_carry_the_edge_headers(
    target: str, request_bytes: bytes, status: int, request: pytest.FixtureRequest
) -> None:
    svc: GunicornService = request.getfixturevalue(target)
    answer = _raw(svc.port, request_bytes)
    code, headers = _status_and_headers(answer)
    assert code == status, answer[:200]
    for name in EDGE_HEADERS:
        assert name in headers, (name, answer[:400])
    if target == "recommender":
        assert headers["X-Model-Version"] == "v7"
        assert headers["X-Track"] == "stable"
    assert b"Traceback" not in answer and b"Invalid" not in answer


def test_connections_past_the_cap_get_a_fast_503(folder: Path, model_dir: Path) -> None:
    env = {
        "MOVIEREC_RECOMMENDER_MODEL": str(model_dir),
        "MOVIEREC_EDGE_MAX_CONNECTIONS": "8",
    }
    with GunicornService(RECOMMENDER_APP, env, workers=1, log_dir=folder) as svc:
        idle = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(8)]
        try:
            # The worker accepts the 8 from the kernel's queue in its own time (loaded cores):
            # until it has, a new connection still fits under the cap and gets its 200.
            request = b"GET /recommend/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            deadline = time.monotonic() + 15
            while True:
                started = time.monotonic()
                answer = _raw(svc.port, request, wait=3)
                took = time.monotonic() - started
                code, headers = _status_and_headers(answer)
                if code != 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert code == 503, answer[:300]
            assert took < 2.0, f"not refused at once: {took:.1f}s"
            assert headers["Retry-After"] == "1"
            assert headers["X-Model-Version"] == "v7"
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 5
        while get(svc.port, "/recommend/1")[0] != 200:  # freed connections make room again
            assert time.monotonic() < deadline, "the cap never freed up"
            time.sleep(0.2)


# -- lifecycle: draining on SIGTERM, a rolling restart under load --------------------------------


def test_sigterm_makes_readiness_false_while_the_listener_still_answers(
    folder: Path, model_dir: Path
) -> None:
    env = {"MOVIEREC_RECOMMENDER_MODEL": str(model_dir), "MOVIEREC_EDGE_DRAIN_S": "3"}
    with GunicornService(RECOMMENDER_APP, env, log_dir=folder) as svc:
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGTERM)  # the master: it signals its workers
        time.sleep(0.5)
        status, headers, body = get(svc.port, "/readyz")
        assert (status, body) == (503, b"not ready: draining\n")
        assert headers["X-Model-Version"] == "v7"
        status, headers, _ = get(svc.port, "/recommend/1")
        assert status == 200
        assert headers["Connection"] == "close"  # clients move to another pod
        svc.proc.wait(15)  # then it stops by itself within the graceful bound
        assert get(svc.port, "/recommend/1")[0] == 0


class Balancer:
    """What a Kubernetes Service does for the test: a new connection goes to a backend whose
    /readyz answered 200 at the last poll (every 100 ms, like endpoint updates); a connection
    stays on its backend until that backend closes it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.ready: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            self.ready = [p for p in list(self.ports) if get(p, "/readyz")[0] == 200]

    def connect(self, k: int) -> http.client.HTTPConnection:
        ready = self.ready or self.ports
        return http.client.HTTPConnection("127.0.0.1", ready[k % len(ready)], timeout=2)

    def __enter__(self) -> Balancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def test_rolling_restart_under_load_loses_no_request(folder: Path, model_dir: Path) -> None:
    env = {"MOVIEREC_RECOMMENDER_MODEL": str(model_dir), "MOVIEREC_EDGE_DRAIN_S": "2"}
    results: list[tuple[int, str]] = []
    stop = threading.Event()
    t0 = time.monotonic()
    with GunicornService(RECOMMENDER_APP, env, log_dir=folder) as old, Balancer([old.port]) as lb:

        def client(k: int) -> None:
            conn = lb.connect(k)
            while not stop.is_set():
                try:
                    conn.request("GET", f"/recommend/{k}")
                    resp = conn.getresponse()
                    resp.read()
                    results.append((resp.status, ""))
                    if resp.will_close:  # the server asked to close: reconnect via the balancer
                        conn.close()
                        conn = lb.connect(k)
                except (OSError, http.client.HTTPException) as exc:
                    results.append(
                        (
                            0,
                            f"{type(exc).__name__}: {exc} on {conn.port} at "
                            f"{time.monotonic() - t0:.2f}s ready {lb.ready}",
                        )
                    )
                    conn.close()
                    conn = lb.connect(k)
                time.sleep(0.005)
            conn.close()

        clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in clients:
            t.start()
        with GunicornService(RECOMMENDER_APP, env, log_dir=folder) as new:
            lb.ports.append(new.port)  # the new pod is ready: it joins the endpoints
            time.sleep(1.0)
            assert old.proc is not None
            old.proc.send_signal(signal.SIGTERM)  # the old pod is told to stop
            old.proc.wait(20)
            lb.ports.remove(old.port)
            time.sleep(1.0)  # the new pod carries everything
            stop.set()
            for t in clients:
                t.join(10)
    statuses = [status for status, _ in results]
    errors = [e for _, e in results if e]
    assert len(results) > 100
    assert set(statuses) == {200}, ({s: statuses.count(s) for s in set(statuses)}, errors[:5])


def test_nothing_is_written_outside_the_temp_dir(tmp_path: Path, model_dir: Path) -> None:
    """What a read-only root filesystem with one writable /tmp needs (HOME=/tmp in the pod)."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {"MOVIEREC_RECOMMENDER_MODEL": str(model_dir), "HOME": str(tmp)}
    with GunicornService(RECOMMENDER_APP, env, log_dir=tmp, cwd=cwd) as svc:
        for uid in range(20):
            assert get(svc.port, f"/recommend/{uid}")[0] == 200
        assert b"movierec_requests_total" in get(svc.port, "/metrics")[2]
    assert list(cwd.iterdir()) == []
    made = {"-".join(p.name.split("-")[:2]) for p in tmp.glob("movierec-*")}
    assert {"movierec-prom", "movierec-answers"} <= made
