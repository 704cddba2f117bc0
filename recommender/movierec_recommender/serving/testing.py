"""Helpers for tests and benchmarks: small real models and services run under gunicorn by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

GUNICORN_CONF = "python:movierec_recommender.serving.gunicorn_conf"
RECOMMENDER_APP = "movierec_recommender.serving.wsgi:create()"
ROUTER_APP = "movierec_recommender.router.wsgi:create()"


def synthetic_ratings(
    n_users: int, n_movies: int, per_user: int, seed: int = 0
) -> tuple[list[str] | object, object, object]:
    """Vectorised ratings with popular movies and two taste groups (user parity)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    movies = (rng.zipf(1.4, len(users)) - 1) % n_movies
    # odd users prefer odd movies: gives the kNN something to find
    movies = np.where((users % 2 == 1) & (movies % 2 == 0), (movies + 1) % n_movies, movies)
    ratings = np.clip(np.round(rng.normal(3.5, 1.0, len(users))), 1, 5)
    return users.astype(str), movies.astype(str), ratings


def train_model(
    out: str | Path,
    *,
    n_users: int = 300,
    n_movies: int = 80,
    per_user: int = 15,
    algo: str = "item-item",
    seed: int = 0,
) -> Path:
    """Fit a real model on synthetic ratings and save it to `out`."""
    from movierec_recommender.data import RatingsData
    from movierec_recommender.models import build_model

    users, movies, ratings = synthetic_ratings(n_users, n_movies, per_user, seed)
    data = RatingsData.from_arrays(users, movies, ratings)
    model = build_model(algo).fit(data)
    out = Path(out)
    model.save(out)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) for a GET; HTTP errors are answers too."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


class Service:
    """A gunicorn-run service on 127.0.0.1 (own process group), stopped by its PID on exit."""

    def __init__(
        self,
        app: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        workers: int = 2,
        threads: int = 4,
        ready_path: str = "/readyz",
        ready_timeout: float = 60.0,
        log_dir: str | Path | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.extra_args = extra_args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = app
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.prom_dir = tempfile.mkdtemp(prefix="movierec-prom-")
        self.env = {
            **os.environ,
            **env,
            "MOVIEREC_BIND": f"127.0.0.1:{self.port}",
            "MOVIEREC_WORKERS": str(workers),
            "MOVIEREC_THREADS": str(threads),
            "PROMETHEUS_MULTIPROC_DIR": self.prom_dir,
        }
        folder = Path(log_dir or tempfile.mkdtemp(prefix="movierec-svc-"))
        self.log_path = folder / f"gunicorn-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, *self.extra_args, self.app],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if http_get(self.url + self.ready_path, timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service not ready in {self.ready_timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # gunicorn master stops its workers
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
