"""The gunicorn worker of both services: requests are read in the event loop, threads only answer.

gunicorn's gthread hands a connection to a thread as soon as it is readable, and the thread then
blocks reading headers: a handful of clients that send half a request hold every thread. Here the
main loop reads each connection without blocking into its own buffer until a whole request is in
(`http1.scan_request`), bounded in time (`header_timeout_s`, then `body_timeout_s`: 408) and size
(431/413), so a stalled client costs a socket, a buffer and a timer. Only a complete request is
offered to admission (`admission.AdmissionPolicy`) and, if admitted, to a thread, which parses it
from memory. Idle keep-alive connections close after `keepalive_s`; past `max_connections` a new
connection gets a 503 at once. Everything the worker answers itself (503, 408, 4xx) carries the
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
from movierec_recommender.web.reply import NONE, raw_answer
from movierec_recommender.web.settings import EdgeSettings

QUEUE_WAIT_KEY = "movierec.queue_wait"  # environ: seconds the request waited for a thread

IDLE, READING, BUSY, CLOSED = "idle", "reading", "busy", "closed"
_MESSAGES = {
    400: "bad request",
    408: "request timeout",
    411: "length required",
    413: "request too large",
    414: "request line too long",
    431: "request header fields too large",
    500: "internal error",
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
        }
        self._limits = {
            "idle": self.edge.keepalive_s,
            "head": self.edge.header_timeout_s,
            "body": self.edge.body_timeout_s,
        }
        self._counters: dict[str, Any] = {}
        self._fast: Any = None
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # the edge's direct entry: plain `/recommend` requests skip gunicorn's parser and WSGI
        self._fast = getattr(self.wsgi, "fast", None)

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
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        conn = EdgeConn(self.cfg, sock, client, server)
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
        self._unregister(conn)
        conn.phase = BUSY
        conn.gen += 1
        if scan.state == ERROR:
            self._answer_raw(conn, scan.status)
            self._count("movierec_http_refused_total", str(scan.status))
            self._close(conn)
            return
        conn.scan = scan
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
        fs = self.tpool.submit(self.handle, conn)
        fs.conn = conn
        with self._count_lock:
            self.inflight.add(fs)
        fs.add_done_callback(self.finish_request)

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
                if name != "idle":
                    self._answer_raw(conn, 408)
                    self._count("movierec_http_refused_total", "408")
                self._close(conn)

    def _next_timeout(self, now: float) -> float:
        due = [timers[0][0] for timers in self._timers.values() if timers]
        if self.drain_until is not None:
            due.append(self.drain_until)
        return max(0.01, min([1.0, *(d - now for d in due)]))

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
            if scan.reusable and self._fast is not None and "%" not in scan.target:
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

    def _send_fast(self, conn: EdgeConn, reply: Any, head_only: bool) -> bool:
        """Write a fast-path answer in one go; True when the connection stays open."""
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        keep = self.alive and self.drain_until is None and bool(self.edge.keepalive_s)
        data = reply.http_bytes(keep_alive=keep, head_only=head_only)
        del conn.buf[: conn.scan.end]
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
            for key, _ in self.poller.select(self._next_timeout(now)):
                try:
                    key.data(key.fileobj)
                except Exception:  # one connection's failure must not take the worker down
                    self.log.exception("error in the event loop")
            if not self.is_parent_alive():
                break
            now = time.monotonic()
            self._expire(now)
            if self.drain_until is not None and now >= self.drain_until:
                self.alive = False
        for sock in self.sockets:  # readiness went false `drain_s` ago: stop listening now
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(sock)
            sock.close()
        self.tpool.shutdown(wait=False)
        with self._count_lock:
            running = list(self.inflight)
        futures.wait(running, timeout=self.cfg.graceful_timeout)
        self.poller.close()

    def handle_quit(self, sig: int, frame: Any) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        self.tpool.shutdown(False)
        time.sleep(0.1)
        sys.exit(0)
