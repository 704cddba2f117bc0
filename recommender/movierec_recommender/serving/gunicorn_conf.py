"""gunicorn settings for the services on a small node (2 cores): threaded workers, tight limits.

Used by `movierec serve` / `movierec route` and the container images:
`gunicorn -c python:movierec_recommender.serving.gunicorn_conf 'movierec_recommender.serving.wsgi:create()'`.
Each worker builds its own app (no preload): the model, the LaunchDarkly client, the Kafka producer
and their threads all start after the fork.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
from typing import Any

bind = os.environ.get("MOVIEREC_BIND", "127.0.0.1:8082")
workers = int(os.environ.get("MOVIEREC_WORKERS", "2"))
# One CPU-bound thread per core does the work; a few more threads let fast answers (cache hits,
# fallbacks, 503s) through while one computes. Queue time is stamped for load shedding.
worker_class = "movierec_recommender.serving.worker.QueueTimedWorker"
threads = int(os.environ.get("MOVIEREC_THREADS", "4"))
worker_connections = 1000
backlog = 512
keepalive = 5
timeout = 60
graceful_timeout = 10
# Bounded request sizes: the API has only short GETs.
limit_request_line = 1024
limit_request_fields = 50
limit_request_field_size = 4096
accesslog = None
proxy_allow_ips = "127.0.0.1"

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="movierec-prom-")


def on_starting(server: Any) -> None:
    """Start from an empty multiprocess folder: old workers' counters must not leak in."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):
        os.remove(stale)


def post_fork(server: Any, worker: Any) -> None:
    """Hand the GIL over more often than every 5 ms: the thread that accepts connections and
    sheds load must not wait behind request threads busy computing."""
    sys.setswitchinterval(float(os.environ.get("MOVIEREC_SWITCH_INTERVAL", "0.001")))


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (model_info, ready) from the merged /metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
