"""The ingest loop: read a batch, validate, store it with its offsets, then tell the source."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import TypeVar

from movierec_ingestor.batch import Batch
from movierec_ingestor.metadata import MetadataSync
from movierec_ingestor.metrics import IngestMetrics
from movierec_ingestor.sources.base import Source
from movierec_ingestor.store import Store, StoreUnavailable, WriteResult

log = logging.getLogger(__name__)
T = TypeVar("T")

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
_PROGRESS_EVERY_S = 30.0


@dataclass
class RunTotals:
    """What this run did; `read == stored + duplicates + dead_letters + skipped`."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    # Valid provenance events that are not exposures (HEAD requests, shed answers).
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        """The CLI's one-line JSON summary."""
        return asdict(self)


@dataclass(frozen=True)
class JobOptions:
    """How long to run and how much to read at a time."""

    batch_size: int = 20_000
    poll_timeout_s: float = 1.0
    until_caught_up: bool = False
    max_seconds: float | None = None
    db_retry_s: float = 60.0
    # Parts of each batch committing at once, each on its own connection (split by user).
    writers: int = 1

    def __post_init__(self) -> None:
        if self.writers < 1:
            raise ValueError("writers must be at least 1")

    @property
    def bounded(self) -> bool:
        """CronJob mode: the run ends by itself (caught up or out of time)."""
        return self.until_caught_up or self.max_seconds is not None


@dataclass(frozen=True)
class _InFlight:
    batch: Batch
    parts: list[Future[WriteResult]]
    began: float


class IngestJob:
    """Moves lines from a source into the store until told to stop (or caught up, or timed out).

    Each batch commits in one transaction together with the source offsets after it; the
    source only learns of the commit afterwards. A crash at any point therefore leaves the
    store at a batch boundary, and the next run resumes right after it.

    With `writers` > 1 a batch is split by user into parts that commit concurrently, and
    the offsets commit once every part has. A crash in between replays the batch: its events
    are keyed by content and the derived tables only take newly stored events, so the replay
    stores nothing twice, and nothing is lost because the offsets never move first.
    """

    def __init__(
        self,
        source: Source,
        store: Store,
        options: JobOptions,
        *,
        metrics: IngestMetrics | None = None,
        metadata: MetadataSync | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.options = options
        self.metrics = metrics or IngestMetrics()
        self.metadata = metadata
        self.stop = stop or threading.Event()
        self.totals = RunTotals()

    def run(self) -> RunTotals:
        """Ingest until stopped, caught up (`until_caught_up`) or out of time (`max_seconds`).

        Raises StoreUnavailable when the database stays unreachable (a bounded run gives up
        after `db_retry_s`; a continuous one only when stopped while waiting for it).
        """
        # Writer threads: batch N commits while batch N+1 is read and parsed, so the
        # database's work overlaps ours. Offsets commit in batch order, and the source hears
        # of each batch on this thread (Kafka consumers are not thread-safe).
        inflight: deque[_InFlight] = deque()
        with ThreadPoolExecutor(
            max_workers=self.options.writers, thread_name_prefix="ingest-writer"
        ) as writer:
            try:
                self._loop(writer, inflight)
                while inflight:
                    self._finish(inflight.popleft())
            except BaseException:
                self.stop.set()  # a writer waiting out a dead database must give up too
                raise
        log.info("ingest of %s done: %s", self.source.name, self.totals.as_dict())
        return self.totals

    def _loop(self, writer: ThreadPoolExecutor, inflight: deque[_InFlight]) -> None:
        opts = self.options
        # Split batches may have two in flight: the next one's parts start while the last part
        # of the one before finishes, so no writer idles. Its offsets still wait for every
        # part before them. A batch that commits its own offsets must wait its turn.
        depth = 1 if opts.writers == 1 else 2
        started = time.monotonic()
        deadline = started + opts.max_seconds if opts.max_seconds is not None else None
        last_progress = started
        last_short = True
        while not self.stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.info("time limit reached after %.1f s", now - started)
                break
            if opts.until_caught_up:
                if last_short:
                    while inflight:
                        self._finish(inflight.popleft())
                if not inflight and self._retrying(self.source.caught_up):
                    log.info("caught up with %s", self.source.name)
                    break
            timeout = opts.poll_timeout_s
            if deadline is not None:
                timeout = max(0.01, min(timeout, deadline - now))
            began = time.perf_counter()
            batch = self._retrying(partial(self.source.read, opts.batch_size, timeout))
            last_short = batch.read < opts.batch_size
            # An idle read acknowledges everything in flight; a full one makes room.
            while inflight and (len(inflight) >= depth or not batch.read):
                self._finish(inflight.popleft())
            if batch.read or batch.offsets:
                inflight.append(self._submit(writer, batch, began))
            if time.monotonic() - last_progress >= _PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                log.info("progress %s: %s", self.source.name, self.totals.as_dict())

    def _submit(self, writer: ThreadPoolExecutor, batch: Batch, began: float) -> _InFlight:
        if self.options.writers == 1:
            return _InFlight(batch, [writer.submit(self._write, batch, True)], began)
        # Part 0 always goes: it carries the dead letters, and an empty batch still commits.
        parts = [p for i, p in enumerate(batch.split(self.options.writers)) if i == 0 or p.valid]
        return _InFlight(batch, [writer.submit(self._write, p, False) for p in parts], began)

    def _write(self, batch: Batch, offsets: bool) -> WriteResult:
        return self._retrying(lambda: self.store.write(batch, offsets=offsets))

    def _finish(self, inflight: _InFlight) -> None:
        """Wait for a batch's commit (of every part, then of its offsets), then tell the
        source and account it."""
        batch = inflight.batch
        results = [part.result() for part in inflight.parts]
        if self.options.writers > 1:
            self._retrying(lambda: self.store.write_offsets(batch))
        result = WriteResult.combine(results)
        self.source.committed(batch)
        dead_by_reason = Counter(d.reason for d in batch.dead_letters)
        self.metrics.record_batch(
            read_by_type={
                "watch": len(batch.watch),
                "rate": len(batch.rate),
                "recommendation": len(batch.recommendation),
            },
            stored_by_type=result.stored_by_type,
            duplicates=result.duplicates,
            dead_by_reason=dead_by_reason,
            newest_time=batch.newest_time,
            seconds=time.perf_counter() - inflight.began,
            lag=self.source.lag(),
        )
        totals = self.totals
        totals.read += batch.read
        totals.stored += result.stored
        totals.duplicates += result.duplicates
        totals.dead_letters += len(batch.dead_letters)
        totals.skipped += batch.skipped
        log.debug(
            "committed %s: read=%d stored=%d duplicates=%d dead=%d offsets=%s",
            batch.source,
            batch.read,
            result.stored,
            result.duplicates,
            len(batch.dead_letters),
            batch.offsets,
        )
        if self.metadata is not None and batch.valid:
            self.metadata.sync(batch.user_ids(), batch.movie_ids())

    def _retrying(self, call: Callable[[], T]) -> T:
        """Run `call`, waiting out a database outage (bounded runs: up to `db_retry_s`)."""
        backoff = _BACKOFF_START_S
        first_failure: float | None = None
        while True:
            try:
                return call()
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                now = time.monotonic()
                first_failure = first_failure or now
                waited = now - first_failure
                if self.options.bounded and waited >= self.options.db_retry_s:
                    raise
                log.warning(
                    "%s; retrying in %.1f s (nothing committed, no offset moved)", exc, backoff
                )
            if self.stop.wait(backoff):
                raise StoreUnavailable(
                    "stopped while the database was unavailable: the last batch was not stored "
                    "(its offsets did not move, the next run reads it again)"
                )
            backoff = min(_BACKOFF_MAX_S, backoff * 2)
