"""What the worker's event loop lends to a handler that answers in it: watching sockets and timers.

The loop itself (select, dispatch) stays the worker's; this holds the registrations and a timer
heap so a handler (the router's upstream calls) can wait for sockets and deadlines without a
thread. Everything here runs in the loop's thread, except that the worker's threads also register
client connections, hence the lock around the selector.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


class Timer:
    """A callback due at `when`; `cancel()` is cheap (the entry is skipped when due)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Skip it when due, and let go of the callback now: the heap keeps a cancelled entry
        until its time comes, and a callback that holds what holds this timer (a call and its
        deadline) would otherwise keep both alive as a cycle for the cycle collector, whose
        full passes stalled the router's loop for 40-100 ms every few seconds."""
        self.cancelled = True
        self.callback = _nothing


class Loop(Protocol):
    """What a handler may use of the loop (`LoopServices` is the worker's)."""

    def watch(self, sock: socket.socket, events: int, callback: Callable[[Any], None]) -> None: ...

    def unwatch(self, sock: socket.socket) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer: ...


class LoopServices:
    """Socket watches and timers on the worker's selector."""

    def __init__(self, poller: selectors.BaseSelector, lock: threading.RLock | threading.Lock):
        self.poller = poller
        self.lock = lock
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def watch(self, sock: socket.socket, events: int, callback: Callable[[Any], None]) -> None:
        """Call `callback(sock)` when `events` happen; replaces an earlier watch of `sock` (the
        selector makes no system call when only the callback changes)."""
        with self.lock:
            try:
                self.poller.modify(sock, events, callback)
            except KeyError:
                self.poller.register(sock, events, callback)

    def unwatch(self, sock: socket.socket) -> None:
        with self.lock, contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run `callback()` in the loop at `when` (time.monotonic()) or soon after."""
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def next_due(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            try:
                timer.callback()
            except Exception:  # one callback's failure must not stop the loop
                log.exception("error in a loop timer")
