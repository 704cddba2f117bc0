"""The gunicorn worker of both services: requests are read in the event loop, threads only answer.

gunicorn's gthread hands a connection to a thread as soon as it is readable, and the thread then
blocks reading headers: a handful of clients that send half a request hold every thread. Here the
main loop reads each connection without blocking into its own buffer until a whole request is in
(`http1.scan_request`), bounded in time (`header_timeout_s`, then `body_timeout_s`: 408) and size
(431/413), so a stalled client costs a socket, a buffer and a timer. A complete plain
`/recommend` is answered in the loop when the app can: at once when it needs no wait
(`Edge.fast_now`, the recommender's precomputed answers), or by waiting there for an upstream
(`Edge.fast_async`, the router). Any other complete request is offered to admission
(`admission.AdmissionPolicy`) and, if admitted, to a thread, which parses it from memory.
Idle keep-alive connections close after `keepalive_s`; past `max_connections` a new connection
gets a 503 at once. Everything the worker answers itself (503, 408, 4xx) carries the
same headers as the app's answers (`reply.edge_headers`).

SIGTERM starts a drain: the app reports not ready (`begin_drain`), answers close their
connections, and the listener stays open for `drain_s` so requests already routed here are
answered; then it closes, requests in flight finish, and gunicorn's `worker_exit` hook lets the
app flush (`gunicorn_conf.worker_exit`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import sys
import threading
import time
from collections import deque
from concurrent import futures
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn, ThreadWorker

from movierec_recommender.web.admission import AdmissionPolicy, Load
from movierec_recommender.web.http1 import BODY, COMPLETE, ERROR, Scan, scan_request
from movierec_recommender.web.loop import LoopServices
from movierec_recommender.web.reply import NONE, raw_answer
from movierec_recommender.web.settings import EdgeSettings

QUEUE_WAIT_KEY = "movierec.queue_wait"  # environ: seconds the request waited for a thread

IDLE, READING, BUSY, WRITING, CLOSED = "idle", "reading", "busy", "writing", "closed"
# A request answered in the loop (`Edge.fast_async`) ends within the app's own deadline (the
# router's 800 ms budget); past this the worker answers 504 itself, so nothing can hang a client.
FORWARD_LIMIT_S = 10.0
ACCEPT_BATCH = 64  # connections taken from the listener's queue per turn of the loop
_MESSAGES = {
    400: "bad request",
    408: "request timeout",
    411: "length required",
    413: "request too large",
    414: "request line too long",
    431: "request header fields too large",
    500: "internal error",
    504: "gateway timeout",
}
_BAD_REQUEST = (
    http_errors.InvalidRequestLine,
    http_errors.InvalidRequestMethod,
    http_errors.InvalidHTTPVersion,
    http_errors.InvalidHeader,
    http_errors.InvalidHeaderName,
    http_errors.LimitRequestLine,
    http_errors.InvalidProxyLine,
    http_errors.ForbiddenProxyRequest,
    http_errors.InvalidSchemeHeaders,
    http_errors.UnsupportedTransferCoding,
    http_errors.ObsoleteFolding,
    http_errors.InvalidChunkSize,
    http_errors.ChunkMissingTerminator,
)


class EdgeConn(TConn):  # type: ignore[misc]
    """A client connection: its unparsed bytes, its phase and a generation for its timers."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.buf = bytearray()
        self.phase = READING
        self.gen = 0  # bumped on every phase change: a timer of an older phase is stale
        self.in_body = False
        self.registered = False
        self.scan = Scan(COMPLETE)
        self.enqueued_at = 0.0
        self.out = b""  # the rest of an answer the client has not taken yet (WRITING)
        self.keep_after = False


class _Forwarded:
    """The completion of one request answered in the loop; only its first call counts."""

    __slots__ = ("called", "conn", "gen", "head_only", "started", "worker")

    def __init__(self, worker: EdgeWorker, conn: EdgeConn) -> None:
        self.started = time.monotonic()
        self.worker = worker
        self.conn = conn
        self.gen = conn.gen
        self.head_only = conn.scan.head_only
        self.called = False

    def __call__(self, reply: Any) -> None:
        if not self.called:
            self.called = True
            self.worker._forwarded(self, reply)


class EdgeWorker(ThreadWorker):  # type: ignore[misc]
    """gthread's threads and config, with an event loop that owns reading and timers."""

    alive: bool

    def init_process(self) -> None:
        self.edge = EdgeSettings()
        self.policy = AdmissionPolicy(self.edge)
        self.per_request = 0.0  # moving average of handling seconds per request and thread
        self.last_wait = 0.0
        self.pending = 0
        self.drain_until: float | None = None
        self.inflight: set[futures.Future[Any]] = set()
        self._count_lock = threading.Lock()
        self._timers: dict[str, deque[tuple[float, EdgeConn, int]]] = {
            "idle": deque(),
            "head": deque(),
            "body": deque(),
            "write": deque(),
            "forward": deque(),
        }
        self._limits = {
            "idle": self.edge.keepalive_s,
            "head": self.edge.header_timeout_s,
            "body": self.edge.body_timeout_s,
            "write": self.edge.write_timeout_s,
            "forward": FORWARD_LIMIT_S,
        }
        self._counters: dict[str, Any] = {}
        self._fast: Any = None
        self._fast_now: Any = None
        self._fast_async: Any = None
        self.forwarding = 0  # requests being answered in the loop
        self.waiting: deque[EdgeConn] = deque()  # admitted for the loop, waiting for a slot
        self.forward_latency = 0.0  # moving average of how long those answers took, seconds
        self.last_forward_wait = 0.0
        self.slots = 1
        self._starting = False
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # the edge's direct entry: plain `/recommend` requests skip gunicorn's parser and WSGI
        self._fast = getattr(self.wsgi, "fast", None)
        if getattr(self.wsgi, "_now", None) is not None:
            self._fast_now = self.wsgi.fast_now
        if getattr(self.wsgi, "_start_async", None) is not None:
            self._fast_async = self.wsgi.fast_async
            self.slots = max(1, int(self.wsgi.loop_slots))

    # -- identity and counting ---------------------------------------------------------------

    def _identity(self) -> tuple[str, str]:
        identity = getattr(self.wsgi, "identity", None)
        if identity is None:
            return NONE, NONE
        try:
            version, track = identity()
            return str(version), str(track)
        except Exception:  # an answer about overload must not fail on the app's state
            return NONE, NONE

    def _count(self, metric: str, reason: str) -> None:
        try:
            counter = self._counters.get(metric)
            if counter is None:
                from prometheus_client import Counter

                # Not registered anywhere: in multiprocess mode the value lands in this worker's
                # file and /metrics merges it with the app's own metrics of the same name.
                counter = Counter(metric, metric, ("reason",), registry=None)
                self._counters[metric] = counter
            counter.labels(reason).inc()
        except Exception:  # metrics must never break serving
            self.log.debug("could not count %s", metric, exc_info=True)

    def _answer_raw(self, conn: EdgeConn, status: int, *, keep: bool = False, **kw: Any) -> bool:
        """Write an answer of the worker's own without blocking; True when it all went out."""
        version, track = self._identity()
        data = raw_answer(
            status,
            _MESSAGES.get(status, "overloaded"),
            model_version=version,
            track=track,
            keep_alive=keep,
            **kw,
        )
        try:
            return bool(conn.sock.send(data) == len(data))
        except OSError:
            return False

    # -- connections ---------------------------------------------------------------------------

    def accept(self, server: Any, listener: socket.socket) -> None:
        """Take the connections waiting in the listener's queue, up to `ACCEPT_BATCH` per turn:
        one per turn would leave a burst of new clients waiting a whole turn each while the
        loop answers the open connections."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, client = listener.accept()
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise
                return
            self._accepted(EdgeConn(self.cfg, sock, client, server))

    def _accepted(self, conn: EdgeConn) -> None:
        reason = self.policy.on_connect(self.nr_conns)
        if reason is not None:
            # A fast refusal costs microseconds; waiting in the kernel's queue costs the budget.
            self._answer_raw(conn, 503, retry_after="1")
            self._count("movierec_load_shed_total", reason)
            conn.close()
            return
        with self._count_lock:
            self.nr_conns += 1
        self._wait(conn, "head")

    def _wait(self, conn: EdgeConn, timer: str) -> None:
        """Put the connection in the event loop with a timer (idle, head or body)."""
        if conn.phase == WRITING:
            self._unregister(conn)  # it was watched for writing
        conn.gen += 1
        conn.phase = IDLE if timer == "idle" else READING
        conn.in_body = timer == "body"
        self._timers[timer].append((time.monotonic() + self._limits[timer], conn, conn.gen))
        with self._lock:
            if not conn.registered:
                # flagged first: once registered, the loop may see it readable at once
                conn.registered = True
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )

    def _unregister(self, conn: EdgeConn) -> None:
        with self._lock:
            if conn.registered:
                conn.registered = False
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self.poller.unregister(conn.sock)

    def _close(self, conn: EdgeConn) -> None:
        if conn.phase == CLOSED:
            return
        self._unregister(conn)
        conn.phase = CLOSED
        conn.gen += 1
        with self._count_lock:
            self.nr_conns -= 1
        conn.close()

    def on_client_socket_readable(self, conn: EdgeConn, client: socket.socket) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.phase == IDLE:
            self._wait(conn, "head")  # the first byte of a new request: its header clock starts
        conn.buf += data
        self._advance(conn)

    def _advance(self, conn: EdgeConn) -> None:
        """Act on what the connection's buffer holds: wait for more, refuse, shed or queue."""
        scan = scan_request(
            conn.buf,
            self.edge.max_head_bytes,
            self.edge.max_body_bytes,
            max_line=self.cfg.limit_request_line,
            max_fields=self.cfg.limit_request_fields,
            max_field=self.cfg.limit_request_field_size,
        )
        if scan.state == BODY:
            if not conn.in_body:
                self._wait(conn, "body")
            return
        if scan.state not in (COMPLETE, ERROR):
            if not conn.registered:
                self._wait(conn, "head")
            return
        conn.phase = BUSY
        conn.gen += 1
        if scan.state == ERROR:
            self._answer_raw(conn, scan.status)
            self._count("movierec_http_refused_total", str(scan.status))
            self._close(conn)
            return
        conn.scan = scan
        plain = scan.plain and "%" not in scan.target
        if plain and self._fast_now is not None:
            reply = self._fast_now(self._environ(conn, scan, 0.0))
            if reply is not None:
                # Made without waiting: no thread and no queue to admit to. The connection
                # stays registered for reading (two system calls fewer per answer).
                self._write_loop_answer(conn, reply, scan.head_only)
                return
        self._unregister(conn)
        if plain and self._fast_async is not None:
            self._forward(conn)
            return
        with self._count_lock:
            load = Load(
                pending=self.pending,
                per_request_s=self.per_request,
                last_wait_s=self.last_wait,
                threads=self.cfg.threads,
                connections=self.nr_conns,
            )
            reason = self.policy.on_arrival(load)
            if reason is None:
                self.pending += 1
        if reason is not None:
            self._shed(conn, reason)
            return
        conn.enqueued_at = time.monotonic()
        self._submit(conn)

    def _submit(self, conn: EdgeConn) -> None:
        """Queue an admitted request (counted in `pending`) for a thread."""
        fs = self.tpool.submit(self.handle, conn)
        fs.conn = conn
        with self._count_lock:
            self.inflight.add(fs)
        fs.add_done_callback(self.finish_request)

    # -- answers made in the loop ------------------------------------------------------------

    def _forward(self, conn: EdgeConn) -> None:
        """A plain request for the app's loop path. The loop makes at most `slots` answers at
        once (the app's upstream calls in flight); more wait in order. Admission is the thread
        path's, with slots for threads: the same rules, measured the same way."""
        with self._count_lock:
            load = Load(
                pending=self.forwarding + len(self.waiting),
                per_request_s=self.forward_latency / self.slots,
                last_wait_s=self.last_forward_wait,
                threads=self.slots,
                connections=self.nr_conns,
            )
        reason = self.policy.on_arrival(load)
        if reason is not None:
            self._shed(conn, reason)
            return
        conn.enqueued_at = time.monotonic()
        self.waiting.append(conn)
        self._start_waiting()

    def _start_waiting(self) -> None:
        """Start waiting requests while slots are free (not re-entered: an answer made at once
        finishes inside, and the outer call goes on with the queue)."""
        if self._starting:
            return
        self._starting = True
        try:
            while self.waiting and self.forwarding < self.slots:
                conn = self.waiting.popleft()
                if conn.phase != CLOSED:
                    self._start_forward(conn)
        finally:
            self._starting = False

    def _start_forward(self, conn: EdgeConn) -> None:
        waited = time.monotonic() - conn.enqueued_at
        self.last_forward_wait = waited
        reason = self.policy.on_start(waited)
        if reason is not None:
            self._shed(conn, reason)
            return
        done = _Forwarded(self, conn)
        self._timers["forward"].append((time.monotonic() + FORWARD_LIMIT_S, conn, conn.gen))
        self.forwarding += 1
        if self._fast_async(self._environ(conn, conn.scan, waited), self.loop, done):
            return
        # the app cannot answer in the loop now (upstream address not known yet): a thread does
        self.forwarding -= 1
        conn.gen += 1  # the safety timer set above no longer applies
        with self._count_lock:
            self.pending += 1
        self._submit(conn)

    def _forwarded(self, done: _Forwarded, reply: Any) -> None:
        self.forwarding -= 1
        self.forward_latency += 0.05 * (time.monotonic() - done.started - self.forward_latency)
        try:
            self._write_forwarded(done, reply)
        finally:
            self._start_waiting()

    def _write_forwarded(self, done: _Forwarded, reply: Any) -> None:
        conn = done.conn
        if conn.gen != done.gen or conn.phase == CLOSED:
            return  # the client went away, or the safety timer answered first
        self._write_loop_answer(conn, reply, done.head_only)

    def _write_loop_answer(self, conn: EdgeConn, reply: Any, head_only: bool) -> None:
        """Write an answer made in the loop without blocking, then go on with the connection."""
        data, keep = self._reply_bytes(conn, reply, head_only)
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent == len(data):
            self._answered(conn, keep)
            return
        # The client is not reading (or pipelines faster than it reads): finish the write as
        # the socket drains, bounded by the write timeout; the loop does not block on it.
        conn.out = data[sent:]
        conn.keep_after = keep
        conn.phase = WRITING
        conn.gen += 1
        self._timers["write"].append((time.monotonic() + self.edge.write_timeout_s, conn, conn.gen))
        conn.registered = True
        self.loop.watch(conn.sock, selectors.EVENT_WRITE, partial(self._writable, conn))

    def _writable(self, conn: EdgeConn, client: socket.socket) -> None:
        if conn.phase != WRITING:
            return
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self._answered(conn, conn.keep_after)

    def _answered(self, conn: EdgeConn, keep: bool) -> None:
        """After a loop answer went out: close, wait for the next request, or scan the one
        already read (on the next turn of the loop: a pipelining client cannot recurse it)."""
        if not (keep and self.alive):
            self._close(conn)
        elif conn.buf:
            self._wait(conn, "head")
            self.loop.call_at(0.0, partial(self._advance_if_reading, conn, conn.gen))
        else:
            self._wait(conn, "idle")

    def _advance_if_reading(self, conn: EdgeConn, gen: int) -> None:
        if conn.gen == gen and conn.phase == READING:
            self._advance(conn)

    def _shed(self, conn: EdgeConn, reason: str) -> None:
        """503 in the loop. The connection stays open when that is safe (exactly one bodyless
        GET/HEAD was read): a client told to retry comes back on it, instead of reconnecting
        through the kernel's accept queue, where nothing can refuse it quickly."""
        self._count("movierec_load_shed_total", reason)
        keep = conn.scan.reusable and self.drain_until is None
        sent = self._answer_raw(
            conn, 503, keep=keep, retry_after="1", head_only=conn.scan.head_only
        )
        if keep and sent:
            del conn.buf[: conn.scan.end]
            self._wait(conn, "idle")
        else:
            self._close(conn)

    def _expire(self, now: float) -> None:
        """Close connections whose timer ran out: idle ones quietly, half-sent ones with 408."""
        for name, timers in self._timers.items():
            while timers and timers[0][0] <= now:
                _, conn, gen = timers.popleft()
                if conn.gen != gen or conn.phase == CLOSED:
                    continue  # the connection moved on since this timer was set
                if name in ("head", "body"):
                    self._answer_raw(conn, 408)
                    self._count("movierec_http_refused_total", "408")
                elif name == "forward":
                    self.log.error("a loop answer missed its deadline: 504")
                    self._answer_raw(conn, 504)
                self._close(conn)

    def _next_timeout(self, now: float) -> float:
        due = [timers[0][0] for timers in self._timers.values() if timers]
        if self.drain_until is not None:
            due.append(self.drain_until)
        timeout = max(0.01, min([1.0, *(d - now for d in due)]))
        next_call = self.loop.next_due()  # a pipelined request is due at once: no floor
        return timeout if next_call is None else max(0.0, min(timeout, next_call - now))

    # -- threads -------------------------------------------------------------------------------

    def handle(self, conn: EdgeConn) -> tuple[bool, EdgeConn]:
        started = time.monotonic()
        waited = started - conn.enqueued_at
        self.last_wait = waited
        req = None
        try:
            reason = self.policy.on_start(waited)
            if reason is not None:
                self._count("movierec_load_shed_total", reason)
                keep = conn.scan.reusable and self.drain_until is None
                version, track = self._identity()
                data = raw_answer(503, "overloaded", model_version=version, track=track,
                                  keep_alive=keep, retry_after="1",
                                  head_only=conn.scan.head_only)  # fmt: skip
                conn.sock.sendall(data)
                del conn.buf[: conn.scan.end]
                return keep, conn
            scan = conn.scan
            if scan.plain and self._fast is not None and "%" not in scan.target:
                reply = self._fast(self._environ(conn, scan, waited))
                if reply is not None:
                    return self._send_fast(conn, reply, scan.head_only), conn
            if conn.parser is None:
                conn.init()  # the parser, reading from the socket only past our buffer
            # bounded writes: a client that does not read cannot hold the thread for long
            conn.sock.settimeout(self.edge.write_timeout_s)
            conn.parser.unreader.unread(bytes(conn.buf[: conn.scan.end]))
            del conn.buf[: conn.scan.end]
            req = next(conn.parser)
            if not req:
                return False, conn
            keepalive = self.handle_request(req, conn, waited)
            if keepalive:
                while req.body.read(8192):  # in memory: it was read whole before
                    pass
            return bool(keepalive), conn
        except (http_errors.NoMoreData, StopIteration):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.exception("socket error processing request")
        except Exception as exc:
            self.handle_error(req, conn.sock, conn.client, exc)
        finally:
            # threads share one GIL: throughput is about threads / handling time
            sample = (time.monotonic() - started) / max(1, self.cfg.threads)
            self.per_request += 0.05 * (sample - self.per_request)
        return False, conn

    def _environ(self, conn: EdgeConn, scan: Scan, waited: float) -> dict[str, Any]:
        """The few environ keys the `/recommend` handlers read, from the scan."""
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "HEAD" if scan.head_only else "GET",
            "PATH_INFO": scan.target.split("?", 1)[0],
            "REMOTE_ADDR": conn.client[0] if isinstance(conn.client, tuple) else "",
            QUEUE_WAIT_KEY: waited,
        }
        if scan.accept is not None:
            environ["HTTP_ACCEPT"] = scan.accept
        if scan.forwarded_for is not None:
            environ["HTTP_X_FORWARDED_FOR"] = scan.forwarded_for
        return environ

    def _reply_bytes(self, conn: EdgeConn, reply: Any, head_only: bool) -> tuple[bytes, bool]:
        """A fast-path answer as bytes and whether the connection stays open after it; the
        request it answers leaves the connection's buffer."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keep = conn.scan.keep and self.alive and self.drain_until is None
        keep = keep and bool(self.edge.keepalive_s)
        del conn.buf[: conn.scan.end]
        return reply.http_bytes(keep_alive=keep, head_only=head_only), keep

    def _send_fast(self, conn: EdgeConn, reply: Any, head_only: bool) -> bool:
        """Write a fast-path answer in one go (a thread's); True when the connection stays open."""
        data, keep = self._reply_bytes(conn, reply, head_only)
        sock = conn.sock
        try:
            sent = sock.send(data)  # almost always all of it, without a blocking round trip
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            sock.settimeout(self.edge.write_timeout_s)
            sock.sendall(data[sent:])
        return keep

    def handle_request(self, req: Any, conn: EdgeConn, waited: float = 0.0) -> bool:
        """gthread's, plus the queue wait in the environ and no keep-alive while draining."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
            environ["wsgi.multithread"] = True
            environ[QUEUE_WAIT_KEY] = waited
            self.nr += 1
            if self.nr >= self.max_requests:
                if self.alive:
                    self.log.info("Autorestarting worker after current request.")
                    self.alive = False
                resp.force_close()
            if not self.alive or self.drain_until is not None or not self.edge.keepalive_s:
                resp.force_close()
            respiter = self.wsgi(environ, resp.start_response)
            try:
                for item in respiter:
                    resp.write(item)
                resp.close()
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            return not resp.should_close()
        except OSError:
            raise
        except Exception:
            if resp is not None and resp.headers_sent:
                self.log.exception("Error handling request")
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    conn.sock.close()
                except OSError:
                    pass
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """gunicorn's 400/431/500 pages, with the edge's headers and no exception text."""
        if isinstance(exc, http_errors.LimitRequestHeaders):
            status = 431
        elif isinstance(exc, _BAD_REQUEST):
            status = 400
        else:
            status = 500
        if status == 500:
            self.log.exception("error handling request")
        else:
            self.log.info("invalid request from %s: %s", (addr or ("",))[0], exc)
            self._count("movierec_http_refused_total", str(status))
        version, track = self._identity()
        data = raw_answer(status, _MESSAGES[status], model_version=version, track=track)
        with contextlib.suppress(OSError):
            util.write(client, data)

    def finish_request(self, fs: futures.Future[Any]) -> None:
        with self._count_lock:
            self.inflight.discard(fs)
            self.pending -= 1
        conn: EdgeConn = fs.conn  # type: ignore[attr-defined]
        if fs.cancelled():
            self._close(conn)
            return
        try:
            keepalive, _ = fs.result()
        except Exception:
            keepalive = False
        if not (keepalive and self.alive):
            self._close(conn)
            return
        try:
            if conn.sock.gettimeout() != 0.0:  # a syscall only when a thread changed it
                conn.sock.setblocking(False)
        except OSError:
            self._close(conn)
            return
        if conn.buf:  # pipelined bytes already read: the next request may be complete
            self._wait(conn, "head")
            self._advance(conn)
        else:
            self._wait(conn, "idle")

    # -- lifecycle -----------------------------------------------------------------------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: not ready at once, serve on for `drain_s`, then stop (see the module doc)."""
        if self.drain_until is not None:
            return
        self.drain_until = time.monotonic() + self.edge.drain_s
        self._begin_drain()

    def _begin_drain(self) -> None:
        # A SIGTERM can land while the worker still loads its app (gunicorn installs the
        # handlers first): then there is no app to tell yet, and run() tells it once loaded.
        # Raising here instead would make the worker fail its boot and the arbiter halt all.
        begin = getattr(getattr(self, "wsgi", None), "begin_drain", None)
        if begin is not None:
            begin()

    def _wake(self, pipe: int) -> None:
        try:
            while os.read(pipe, 4096):
                pass
        except OSError:
            pass

    def run(self) -> None:
        self.loop = LoopServices(self.poller, self._lock)
        for sock in self.sockets:
            sock.setblocking(False)
            # the listener's name can be gone during shutdown: capture it once here
            self.poller.register(
                sock, selectors.EVENT_READ, partial(self.accept, sock.getsockname())
            )
        # signals write to this pipe (base.Worker's wakeup fd): a SIGTERM ends the select at once
        self.poller.register(self.PIPE[0], selectors.EVENT_READ, self._wake)
        if self.drain_until is not None:  # signalled during boot
            self._begin_drain()
        beat = 0.0
        while self.alive:
            now = time.monotonic()
            if now - beat > 1.0:  # the arbiter's heartbeat is a syscall: not once per event
                self.notify()
                beat = now
            self._turn(now)
            if not self.is_parent_alive():
                break
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.alive = False
        for sock in self.sockets:  # readiness went false `drain_s` ago: stop listening now
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(sock)
            sock.close()
        # answers being made in the loop finish in the loop (each within its own deadline)
        stop_by = time.monotonic() + self.cfg.graceful_timeout
        while (self.forwarding > 0 or self.waiting) and time.monotonic() < stop_by:
            self._turn(time.monotonic())
        self.tpool.shutdown(wait=False)
        with self._count_lock:
            running = list(self.inflight)
        futures.wait(running, timeout=self.cfg.graceful_timeout)
        self.poller.close()

    def _turn(self, now: float) -> None:
        """One turn of the loop: wait for events or the next timer, act on them."""
        for key, _ in self.poller.select(self._next_timeout(now)):
            try:
                key.data(key.fileobj)
            except Exception:  # one connection's failure must not take the worker down
                self.log.exception("error in the event loop")
        now = time.monotonic()
        self._expire(now)
        self.loop.run_due(now)

    def handle_quit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        self.tpool.shutdown(False)
        time.sleep(0.1)
        sys.exit(0)
