"""The project's own WSGI apps under gunicorn for tests and benchmarks (run by the one process
runner, ``movierec.process``), plus small real models to serve and a plain HTTP GET."""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from subprocess import Popen
from types import TracebackType

from movierec.process import ServiceProcess, free_port, http_ok, log_tail

GUNICORN_CONF = "python:movierec_recommender.web.gunicorn_conf"  # what `movierec serve` uses
RECOMMENDER_APP = "movierec_recommender.serving.wsgi:create()"
ROUTER_APP = "movierec_recommender.router.wsgi:create()"

__all__ = [
    "RECOMMENDER_APP",
    "ROUTER_APP",
    "Service",
    "free_port",
    "http_get",
    "synthetic_ratings",
    "train_model",
]


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
    """A gunicorn-run app on 127.0.0.1 (own process group), ready when ``ready_path`` answers
    2xx, stopped by its PID on exit."""

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
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout
        self.prom_dir = tempfile.mkdtemp(prefix="movierec-prom-")
        folder = Path(log_dir or tempfile.mkdtemp(prefix="movierec-svc-"))
        self.log_path = folder / f"gunicorn-{self.port}.log"
        argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, *extra_args, app]
        self._process = ServiceProcess(
            f"gunicorn {app}",
            argv,
            log_path=self.log_path,
            marker="",  # we hold its Popen: the PID cannot be recycled before we reap it
            env={
                **os.environ,
                **env,
                "MOVIEREC_BIND": f"127.0.0.1:{self.port}",
                "MOVIEREC_WORKERS": str(workers),
                "MOVIEREC_THREADS": str(threads),
                "PROMETHEUS_MULTIPROC_DIR": self.prom_dir,
            },
            stop_timeout=15,
        )

    @property
    def proc(self) -> Popen[bytes] | None:
        """The gunicorn master's Popen while it runs under this object."""
        return self._process.popen

    def start(self) -> Service:
        self._process.start()
        try:
            self._process.wait_ready(
                lambda: http_ok(self.url + self.ready_path),
                timeout=self.ready_timeout,
                what=self.url + self.ready_path,
            )
        except Exception:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        self._process.stop()  # SIGTERM to the group: the master stops its workers

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
