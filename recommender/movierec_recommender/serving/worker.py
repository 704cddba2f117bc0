"""A gunicorn gthread worker that sheds load before it queues, and stamps queue time.

The worker estimates how long a new request would wait: requests pending (queued for or inside
its threads) times the recent time per request (an moving average of handling time divided by
the threads sharing the work). When that passes `MOVIEREC_SHED_WAIT_MS` (250 ms: what leaves
room in the 800 ms budget), or the pending count passes the hard cap `MOVIEREC_MAX_PENDING`
(256), the request gets an immediate `503` with `Retry-After` written straight on the socket:
microseconds, never waiting behind the queue. Because the estimate follows the measured speed,
a worker slowed by CPU contention sheds earlier and a fast one admits more. The estimate can lag
a sudden slowdown, so the measured queue wait of the request a thread picked up last also counts:
while requests are queued and that wait is past the limit, new ones are refused. A shed
connection stays open when that is safe (one complete GET read), so the client retries on it
instead of reconnecting. Admitted requests get their queue-entry time stamped for
`serving.admission.queue_wait()`, the app's second line.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from functools import partial
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


REJECT_KEEP_ALIVE = REJECT.replace(b"Connection: close", b"Connection: keep-alive")


def reusable_after_reject(data: bytes) -> bool:
    """Whether `data`, read from a connection in one go, is exactly one complete HTTP/1.1 GET
    without a body that does not ask to close: then the 503 can keep the connection open."""
    if not data.startswith(b"GET ") or not data.endswith(b"\r\n\r\n"):
        return False
    if data.count(b"\r\n\r\n") != 1:
        return False  # pipelined requests
    head = data.lower()
    line_end = head.find(b"\r\n")
    if not head[:line_end].endswith(b" http/1.1"):
        return False  # HTTP/1.0: closes by default
    return not any(
        word in head for word in (b"connection: close", b"content-length", b"transfer-encoding")
    )


class QueueTimedWorker(ThreadWorker):
    """gthread with a bound on pending requests and the queue-wait stamp."""

    def init_process(self) -> None:
        self.max_pending = int(os.environ.get("MOVIEREC_MAX_PENDING", "256"))
        self.shed_wait = float(os.environ.get("MOVIEREC_SHED_WAIT_MS", "250")) / 1000
        self.per_request = 0.0  # moving average of handling seconds per request and thread
        self.last_wait = 0.0  # how long the request a thread took last had waited in the queue
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._shed_counter: Any = None
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        with self._pending_lock:
            expected_wait = self._pending * self.per_request
            admitted = self._pending < self.max_pending and expected_wait < self.shed_wait
            # Measured, not estimated: while requests are queued behind busy threads and the
            # last one a thread picked up had already waited past the limit, a new one would
            # wait at least as long. (With no queue this check is off, so it cannot stick.)
            if admitted and self._pending >= self.cfg.threads and self.last_wait > self.shed_wait:
                admitted = False
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
        started = time.monotonic()
        enqueued = getattr(conn, "movierec_enqueued_at", started)
        self.last_wait = started - enqueued
        mark_enqueued(enqueued)
        try:
            return super().handle(conn)
        finally:
            # threads share one GIL: throughput is about threads / handling time
            sample = (time.monotonic() - started) / max(1, self.cfg.threads)
            self.per_request += 0.05 * (sample - self.per_request)

    def _reject(self, conn: Any) -> None:
        sock: socket.socket = conn.sock
        keep = False
        try:
            # The socket was readable, so the request is there: drain it, so closing sends FIN,
            # not a reset that would lose the answer.
            data = sock.recv(65536)
            keep = (
                self.alive
                and len(self._keep) < self.max_keepalived
                and reusable_after_reject(data)
                and self._parser_idle(conn)
            )
            sock.setblocking(True)
            sock.settimeout(0.5)
            sock.sendall(REJECT_KEEP_ALIVE if keep else REJECT)
        except OSError:
            keep = False
        self._count_shed()
        if keep:
            # Keep the connection: a client told to retry comes back on it instead of opening a
            # new one, so overload does not turn into a reconnect storm queued in the kernel's
            # accept queue (where nothing can refuse it quickly).
            if not conn.initialized:
                conn.init()  # marks it as a keep-alive connection for the main loop
            sock.setblocking(False)
            conn.set_timeout()
            with self._lock:
                self._keep.append(conn)
                self.poller.register(
                    sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )
            return
        self.nr_conns -= 1
        conn.close()

    @staticmethod
    def _parser_idle(conn: Any) -> bool:
        """No bytes of a next request are buffered in gunicorn's parser (nothing pipelined)."""
        parser = getattr(conn, "parser", None)
        return parser is None or not parser.unreader.buf.getvalue()

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
