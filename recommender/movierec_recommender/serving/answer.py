"""One answer within budget: cached or computed by the model on a bounded pool, else a fallback."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from movierec_recommender.serving.holder import Snapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    fallback: str | None  # None: the model's own list; else the reason for the fallback


class LRU:
    """A small thread-safe LRU of computed answers, keyed by (model version, user id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], tuple[tuple[str, ...], tuple[float, ...]]]
        self._data = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
        if self.size <= 0:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: tuple[tuple[str, ...], tuple[float, ...]]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


def _clean(ids: object, scores: object, n: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    id_list = [str(i) for i in list(ids)[:n]]  # type: ignore[call-overload]
    arr = np.asarray(scores, dtype=float)[: len(id_list)]
    arr = np.where(np.isfinite(arr), arr, 0.0)
    return tuple(id_list), tuple(float(s) for s in arr)


class Answerer:
    """Computes answers with a per-request time limit and a bound on pending model calls."""

    def __init__(self, n: int, threads: int, queue_max: int, cache_size: int) -> None:
        self.n = n
        self.queue_max = queue_max
        self.cache = LRU(cache_size)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="model")
        self._pending = 0
        self._lock = threading.Lock()

    def _compute(self, snap: Snapshot, uid: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
        try:
            ids, scores = snap.model.recommend(uid, n=self.n, exclude_seen=True)
            result = _clean(ids, scores, self.n)
            self.cache.put((snap.version, uid), result)
            return result
        finally:
            with self._lock:
                self._pending -= 1

    def fallback(self, snap: Snapshot, uid: str, reason: str) -> Answer:
        ids, scores, _kind = snap.fallback.for_user(uid)
        return Answer(tuple(ids[: self.n]), tuple(scores[: self.n]), reason)

    def answer_now(self, snap: Snapshot, uid: str) -> Answer | None:
        """The answer when it needs no model call (the answer table, an unknown user's
        fallback, the LRU), else None: what the event loop can answer without waiting."""
        table = snap.answers.table
        if table is not None:
            hit = table.get(uid)
            if hit is not None:
                return Answer(hit[0], hit[1], None) if hit[0] else self.fallback(snap, uid, "empty")
        if not snap.model.known_user(uid):
            return self.fallback(snap, uid, "unknown_user")
        cached = self.cache.get((snap.version, uid))
        if cached is not None:
            return Answer(cached[0], cached[1], None)
        return None

    def answer(self, snap: Snapshot, uid: str, time_left: float) -> Answer:
        """The model's list for a known user within `time_left` seconds, else a fallback."""
        now = self.answer_now(snap, uid)
        if now is not None:
            return now
        if time_left <= 0:
            return self.fallback(snap, uid, "budget")
        with self._lock:
            if self._pending >= self.queue_max:
                busy = True
            else:
                busy = False
                self._pending += 1
        if busy:
            return self.fallback(snap, uid, "busy")
        future: Future[tuple[tuple[str, ...], tuple[float, ...]]]
        try:
            future = self._pool.submit(self._compute, snap, uid)
        except RuntimeError:  # pool shut down
            with self._lock:
                self._pending -= 1
            return self.fallback(snap, uid, "error")
        try:
            ids, scores = future.result(timeout=time_left)
        except FutureTimeout:
            return self.fallback(snap, uid, "timeout")
        except Exception as exc:
            log.warning("model failed for user %s: %s", uid, exc)
            return self.fallback(snap, uid, "error")
        if not ids:
            return self.fallback(snap, uid, "empty")
        return Answer(ids, scores, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
