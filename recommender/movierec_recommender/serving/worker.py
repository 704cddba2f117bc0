"""A gunicorn gthread worker that sheds load before it queues, and stamps queue time.

The worker estimates how long a new request would wait: requests pending (queued for or inside
its threads) times the recent time per request (an moving average of handling time divided by
the threads sharing the work). When that passes `MOVIEREC_SHED_WAIT_MS` (250 ms: what leaves
room in the 800 ms budget), or the pending count passes the hard cap `MOVIEREC_MAX_PENDING`
(256), the request gets an immediate `503` with `Retry-After` written straight on the socket:
microseconds, never waiting behind the queue. Because the estimate follows the measured speed,
a worker slowed by CPU contention sheds earlier and a fast one admits more. Admitted requests get
their queue-entry time stamped for `serving.admission.queue_wait()`, the app's second line.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from movierec_recommender.serving.admission import mark_enqueued

REJECT = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 1\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Cache-Control: no-store\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 11\r\n\r\n"
    b"overloaded\n"
)


class QueueTimedWorker(ThreadWorker):
    """gthread with a bound on pending requests and the queue-wait stamp."""

    def init_process(self) -> None:
        self.max_pending = int(os.environ.get("MOVIEREC_MAX_PENDING", "256"))
        self.shed_wait = float(os.environ.get("MOVIEREC_SHED_WAIT_MS", "250")) / 1000
        self.per_request = 0.0  # moving average of handling seconds per request and thread
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._shed_counter: Any = None
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        with self._pending_lock:
            expected_wait = self._pending * self.per_request
            admitted = self._pending < self.max_pending and expected_wait < self.shed_wait
            if admitted:
                self._pending += 1
        if not admitted:
            self._reject(conn)
            return
        conn.movierec_enqueued_at = time.monotonic()
        super().enqueue_req(conn)

    def finish_request(self, fs: Any) -> None:
        with self._pending_lock:
            self._pending -= 1
        super().finish_request(fs)

    def handle(self, conn: Any) -> Any:
        mark_enqueued(getattr(conn, "movierec_enqueued_at", time.monotonic()))
        started = time.monotonic()
        try:
            return super().handle(conn)
        finally:
            # threads share one GIL: throughput is about threads / handling time
            sample = (time.monotonic() - started) / max(1, self.cfg.threads)
            self.per_request += 0.05 * (sample - self.per_request)

    def _reject(self, conn: Any) -> None:
        sock: socket.socket = conn.sock
        try:
            sock.recv(65536)  # the request is there (the socket was readable): drain it, so
            sock.setblocking(True)  # closing sends FIN, not a reset that would lose the answer
            sock.settimeout(0.5)
            sock.sendall(REJECT)
        except OSError:
            pass
        finally:
            self.nr_conns -= 1
            conn.close()
        self._count_shed()

    def _count_shed(self) -> None:
        try:
            if self._shed_counter is None:
                from prometheus_client import Counter

                # Not registered anywhere: in multiprocess mode the value lands in this worker's
                # file and /metrics merges it with the app's own `movierec_load_shed_total`.
                self._shed_counter = Counter(
                    "movierec_load_shed_total", "shed", ("reason",), registry=None
                )
            self._shed_counter.labels("queue_full").inc()
        except Exception:  # metrics must never break shedding
            self.log.debug("could not count a shed request", exc_info=True)
