"""Admission control: refuse (503) what cannot be answered within budget instead of queueing it.

Two signals, both per worker process: how long the request waited in gunicorn's queue before a
thread picked it up (stamped by `serving.worker.QueueTimedWorker`), and how many requests are in
the app at once. Refusing is cheap, so under overload the queue drains fast and the requests that
are admitted still answer in budget.
"""

from __future__ import annotations

import threading
import time

_local = threading.local()


def mark_enqueued(when: float) -> None:
    """Called by the worker thread right before it handles a request that was queued at `when`."""
    _local.enqueued_at = when


def queue_wait() -> float:
    """Seconds the current request waited before a thread took it (0 outside gunicorn gthread)."""
    enqueued = getattr(_local, "enqueued_at", None)
    if enqueued is None:
        return 0.0
    return max(0.0, time.monotonic() - enqueued)


class InFlight:
    """A counter of requests inside the app with a limit; `enter` returns False past it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1
