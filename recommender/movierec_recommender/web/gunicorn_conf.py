"""gunicorn settings for both services on a small node (2 cores), from `EdgeSettings`.

Used by `movierec serve` / `movierec route` and the container image:
`gunicorn -c python:movierec_recommender.web.gunicorn_conf 'movierec_recommender.serving.wsgi:create()'`.
Each worker builds its own app (no preload): the model, the LaunchDarkly client, the Kafka producer
and their threads all start after the fork. Everything written goes under `tmp_dir` ($TMPDIR or
/tmp), so the services run on a read-only root filesystem with one writable emptyDir.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
from typing import Any

from movierec_recommender.web.settings import EdgeSettings

_edge = EdgeSettings()

bind = _edge.bind
workers = _edge.workers
# One CPU-bound thread per core does the work; a few more let fast answers (cache hits,
# fallbacks) through while one computes. Reading requests happens in the worker's event loop.
worker_class = "movierec_recommender.web.worker.EdgeWorker"
threads = _edge.threads
# The worker refuses connections itself past `max_connections`; gunicorn's own cap sits above.
worker_connections = _edge.max_connections + 1
backlog = 512
keepalive = max(1, int(_edge.keepalive_s))
timeout = 60
# drain, then requests in flight (budget 800 ms), then the app's flush, then some slack
graceful_timeout = int(_edge.drain_s + _edge.exit_flush_s + 5)
limit_request_line = 1024
limit_request_fields = 50
limit_request_field_size = 4096
accesslog = None
worker_tmp_dir = _edge.tmp_dir

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="movierec-prom-", dir=_edge.tmp_dir
    )


def on_starting(server: Any) -> None:
    """Start from an empty multiprocess folder: old workers' counters must not leak in."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.remove(stale)


def post_fork(server: Any, worker: Any) -> None:
    """Hand the GIL over more often than every 5 ms: the loop that reads requests and sheds
    load must not wait behind request threads busy computing."""
    sys.setswitchinterval(_edge.switch_interval_s)


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, after its last request: the app flushes (provenance) within a bound."""
    close = getattr(worker.wsgi, "close", None)
    if close is not None:
        try:
            close(_edge.exit_flush_s)
        except Exception:
            worker.log.exception("flush on exit failed")


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (model_info, ready) from the merged /metrics."""
    from prometheus_client import multiprocess

    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    multiprocess.mark_process_dead(worker.pid, folder)  # type: ignore[no-untyped-call]
