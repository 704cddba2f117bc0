"""Upstream calls made in the worker's event loop: many in flight per worker, no thread per call.

A routed answer is mostly waiting for the recommender. With a blocking call each wait held a
thread, and every answer paid two thread hand-offs and the blocking socket's timeout syscalls
(profiled: most of the router's CPU per answer outside our code). Here the worker's loop sends
the request on a pooled non-blocking keep-alive connection, watches it, and finishes the client's
answer from the upstream's, so the router's threads only serve the cold Flask endpoints.

The answer is read by the same parser as the blocking client (`forward.parse_answer`), and the
same rules hold: one retry on a fresh connection when a reused one turns out closed before any
byte of answer (GET and HEAD are idempotent), nothing else retried; a deadline per call.

Addresses are resolved off the loop (a DNS lookup can block for seconds): `ready()` is False
until every track's address is known, and the worker then uses the blocking path.
"""

from __future__ import annotations

import errno
import logging
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from movierec_recommender.router.forward import (
    Upstream,
    _ProtocolError,
    _StaleError,
    _Target,
    parse_answer,
)
from movierec_recommender.web.loop import Loop, Timer

log = logging.getLogger(__name__)

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
RESOLVE_EVERY_S = 30.0  # Service addresses rarely change; a changed one is picked up this late
MAX_IDLE = 64  # idle keep-alive connections kept per track and worker


Done = Callable[[Upstream], None]


class _Address:
    """One track's socket addresses (all a lookup gives, the one that last worked first),
    refreshed in a thread every RESOLVE_EVERY_S."""

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.value: list[tuple[int, Any]] = []  # (family, sockaddr) each
        self.resolved_at = float("-inf")
        self.resolving = False
        self.lock = threading.Lock()
        try:  # an IP address needs no lookup: known at once, for good
            self.value = self._lookup(socket.AI_NUMERICHOST)
            self.resolved_at = float("inf")
        except OSError:
            self.current()  # a name: looked up from now on, in a thread

    def _lookup(self, flags: int = 0) -> list[tuple[int, Any]]:
        infos = socket.getaddrinfo(
            self.target.host, self.target.port, type=socket.SOCK_STREAM, flags=flags
        )
        return [(family, sockaddr) for family, _, _, _, sockaddr in infos]

    def current(self) -> list[tuple[int, Any]]:
        """The addresses to try in order (empty until the first lookup is done)."""
        if time.monotonic() - self.resolved_at > RESOLVE_EVERY_S:
            with self.lock:
                start = not self.resolving
                self.resolving = True
            if start:
                threading.Thread(target=self._resolve, name="resolve", daemon=True).start()
        return self.value

    def worked(self, address: tuple[int, Any]) -> None:
        """Try this one first from now on (as `socket.create_connection` finds, each time)."""
        if self.value and self.value[0] != address and address in self.value:
            self.value = [address, *(a for a in self.value if a != address)]

    def invalidate(self) -> None:
        """Every address failed: look the name up again at the next use (a Service recreated
        with a new address is then found at once, not up to RESOLVE_EVERY_S later)."""
        if self.resolved_at != float("inf"):
            self.resolved_at = float("-inf")

    def _resolve(self) -> None:
        try:
            found = self._lookup()
            first = self.value[0] if self.value else None
            self.value = found
            if first is not None:
                self.worked(first)
            self.resolved_at = time.monotonic()
        except OSError as exc:  # kept: the last good addresses; retried on the next check
            log.warning("cannot resolve %s: %s", self.target.host, exc)
            self.resolved_at = time.monotonic() - RESOLVE_EVERY_S + 1.0
        finally:
            with self.lock:
                self.resolving = False


class _Call:
    """One request to one upstream, driven by socket events and one deadline timer."""

    __slots__ = (
        "address",
        "data",
        "deadline",
        "done",
        "finished",
        "head",
        "pending",
        "request",
        "retried",
        "reused",
        "sock",
        "timer",
        "track",
    )

    def __init__(
        self, track: str, request: bytes, *, head: bool, deadline: float, done: Done
    ) -> None:
        self.track = track
        self.request = request
        self.pending = request  # bytes of the request not yet sent on this connection
        self.head = head
        self.deadline = deadline
        self.done = done
        self.data = b""
        self.sock: socket.socket | None = None
        self.reused = False
        self.retried = False
        self.finished = False
        self.address = 0  # which of the track's addresses a new connection tries
        self.timer: Timer | None = None


class LoopUpstreams:
    """`call(loop, track, path, accept, timeout, head, done)`: `done(Upstream)` is called once,
    in the loop, with the answer or an error kind ("timeout", "connect", "protocol")."""

    def __init__(self, tracks: dict[str, str], connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._targets = {name: _Target(url) for name, url in tracks.items()}
        self._addresses = {name: _Address(t) for name, t in self._targets.items()}
        self._idle: dict[str, list[socket.socket]] = {name: [] for name in tracks}
        # TLS upstreams stay on the blocking client (a non-blocking handshake is not built)
        self.usable = not any(t.https for t in self._targets.values())

    def ready(self) -> bool:
        """True when every track can be called from the loop (plain HTTP, address known)."""
        if not self.usable:
            return False
        ready = True
        for address in self._addresses.values():
            ready = bool(address.current()) and ready
        return ready

    def call(
        self, loop: Loop, track: str, path: str, *, accept: str | None, timeout: float,
        head: bool, done: Done,
    ) -> None:  # fmt: skip
        request = self._targets[track].request(path, accept, "HEAD" if head else "GET")
        deadline = time.monotonic() + timeout
        call = _Call(track, request, head=head, deadline=deadline, done=done)
        call.timer = loop.call_at(call.deadline, lambda: self._finish(loop, call, "timeout"))
        self._start(loop, call)

    # -- the call's steps ----------------------------------------------------------------------

    def _start(self, loop: Loop, call: _Call) -> None:
        idle = self._idle[call.track]
        if idle and not call.retried:
            call.sock = idle.pop()
            call.reused = True
            self._send(loop, call)
            return
        call.reused = False
        self._connect(loop, call)

    def _connect(self, loop: Loop, call: _Call) -> None:
        """A new connection to the track's next address to try; the whole request goes on it
        (a retry after a reused connection broke mid-request sends it all again)."""
        call.pending = call.request
        addresses = self._addresses[call.track].current()
        if call.address >= len(addresses):
            self._finish(loop, call, "connect")
            return
        family, sockaddr = addresses[call.address]
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            self._next_address(loop, call)
            return
        call.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(sockaddr)
        if err == 0:
            self._addresses[call.track].worked((family, sockaddr))
            self._send(loop, call)
        elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            connect_by = min(call.deadline, time.monotonic() + self.connect_timeout)
            if connect_by < call.deadline:
                timer = loop.call_at(connect_by, lambda: self._connect_late(loop, call, sock))
            else:
                timer = None
            address = (family, sockaddr)
            loop.watch(sock, WRITE, lambda _s: self._connected(loop, call, sock, timer, address))
        else:
            self._next_address(loop, call)

    def _next_address(self, loop: Loop, call: _Call) -> None:
        """The connection was refused: the next address, or (none left) a connect failure and
        a fresh lookup for the next call."""
        self._drop(loop, call)
        call.address += 1
        if call.address < len(self._addresses[call.track].current()):
            self._connect(loop, call)
            return
        self._addresses[call.track].invalidate()
        self._finish(loop, call, "connect")

    def _connect_late(self, loop: Loop, call: _Call, sock: socket.socket) -> None:
        if call.sock is not sock or call.finished:
            return
        # A starved loop runs this timer in the turn after the one that missed the connection
        # becoming writable (the timers run after a select that returned too early): look.
        probe = select.poll()  # not select.select: a busy worker's descriptors pass 1024
        probe.register(sock, select.POLLOUT)
        if probe.poll(0):
            return  # connected in time; its write event is seen in the next turn
        self._finish(loop, call, "timeout")

    def _connected(
        self, loop: Loop, call: _Call, sock: socket.socket, timer: Timer | None,
        address: tuple[int, Any],
    ) -> None:  # fmt: skip
        if timer is not None:
            timer.cancel()
        if call.sock is not sock or call.finished:
            return
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._next_address(loop, call)
            return
        self._addresses[call.track].worked(address)
        self._send(loop, call)

    def _send(self, loop: Loop, call: _Call) -> None:
        sock = call.sock
        assert sock is not None
        try:
            sent = sock.send(call.pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._failed(loop, call, stale=True)
            return
        call.pending = call.pending[sent:]
        if call.pending:
            loop.watch(sock, WRITE, lambda _s: self._writable(loop, call, sock))
        else:
            loop.watch(sock, READ, lambda _s: self._readable(loop, call, sock))

    def _writable(self, loop: Loop, call: _Call, sock: socket.socket) -> None:
        if call.sock is sock and not call.finished:
            self._send(loop, call)

    def _readable(self, loop: Loop, call: _Call, sock: socket.socket) -> None:
        if call.sock is not sock or call.finished:
            return
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._failed(loop, call, stale=not call.data)
            return
        call.data += chunk
        try:
            parsed = parse_answer(call.data, call.head, eof=not chunk)
        except _StaleError:
            self._failed(loop, call, stale=True)
            return
        except (_ProtocolError, ValueError):
            self._finish(loop, call, "protocol")
            return
        if parsed is None:
            return
        up, reusable = parsed
        self._finish(loop, call, None, up, keep=reusable)

    def _failed(self, loop: Loop, call: _Call, *, stale: bool) -> None:
        """The connection broke. A reused one that broke before any answer byte was closed by
        the upstream while idle: one fresh try. Anything else is the call's failure."""
        if stale and call.reused and not call.retried and not call.data:
            self._drop(loop, call)
            call.retried = True
            self._start(loop, call)
            return
        self._finish(loop, call, "connect")

    def _drop(self, loop: Loop, call: _Call) -> None:
        sock, call.sock = call.sock, None
        if sock is not None:
            loop.unwatch(sock)
            sock.close()

    def _finish(
        self, loop: Loop, call: _Call, error: str | None, up: Upstream | None = None,
        *, keep: bool = False,
    ) -> None:  # fmt: skip
        if call.finished:
            return
        call.finished = True
        timer, call.timer = call.timer, None  # the call and its deadline refer to each other
        if timer is not None:
            timer.cancel()
        sock = call.sock
        idle = self._idle[call.track]
        if keep and sock is not None and len(idle) < MAX_IDLE:
            # Stays watched: reusing it then changes only the callback (no system call), and
            # an upstream closing it while idle is noticed and dropped.
            track = call.track
            loop.watch(sock, READ, lambda _s: self._closed_while_idle(loop, track, sock))
            call.sock = None
            idle.append(sock)
        else:
            self._drop(loop, call)
        answer = up if up is not None else Upstream(0, b"", {}, error)
        try:
            call.done(answer)
        except Exception:  # the client's answer is the worker's business; the loop goes on
            log.exception("error finishing a routed answer")

    def _closed_while_idle(self, loop: Loop, track: str, sock: socket.socket) -> None:
        idle = self._idle[track]
        if sock not in idle:
            return  # taken by a call since this event was seen: that call reads it now
        idle.remove(sock)
        loop.unwatch(sock)
        sock.close()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
