"""Admission: the one place that decides whether a request is answered or refused with 503.

Pure: the worker passes what it measured, the policy says admit (None) or why not. Two points:
on arrival (before the request is queued for a thread, or for one of the event loop's answer
slots) and on start (when a thread or a slot takes it).
"""

from __future__ import annotations

from dataclasses import dataclass

from movierec_recommender.web.settings import EdgeSettings


@dataclass(frozen=True)
class Load:
    """What the worker knows when a request arrives."""

    pending: int  # requests queued for or running in the worker's threads
    per_request_s: float  # moving average of handling time divided by the threads
    last_wait_s: float  # how long the request a thread took last had waited
    threads: int
    connections: int  # open connections of the worker (idle, reading, queued, running)


class AdmissionPolicy:
    """`on_connect`, `on_arrival`, `on_start`: None to admit, else the shed reason."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.shed_wait = settings.shed_wait_ms / 1000
        self.max_pending = settings.max_pending
        self.max_connections = settings.max_connections

    def on_connect(self, connections: int) -> str | None:
        """A new connection beyond the cap is refused at once (a socket, not a thread, each)."""
        return "connections" if connections >= self.max_connections else None

    def on_arrival(self, load: Load) -> str | None:
        """A complete request: refuse it when it would wait past the limit in the queue."""
        if load.pending >= self.max_pending:
            return "queue_full"
        # It waits for the requests queued ahead of it (those beyond the busy threads), one
        # finishing every `per_request_s`.
        ahead = load.pending - load.threads + 1
        if ahead > 0 and ahead * load.per_request_s >= self.shed_wait:
            return "queue_full"
        # Measured, not estimated: while requests are queued behind busy threads and the last
        # one a thread took had waited past the limit, a new one would wait at least as long.
        # (With no queue this is off, so it cannot stick.)
        if load.pending >= load.threads and load.last_wait_s > self.shed_wait:
            return "queue_full"
        return None

    def on_start(self, waited_s: float) -> str | None:
        """A request a thread takes after it waited past the limit: its budget is gone."""
        return "queue_wait" if waited_s > self.shed_wait else None
