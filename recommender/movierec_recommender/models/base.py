"""The Recommender interface every model implements, and id<->index vocabulary helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from movierec_recommender.data import RatingsData


@runtime_checkable
class Recommender(Protocol):
    """What training, evaluation, the registry and serving rely on (docs/CONTRACTS-internal.md)."""

    algo: str

    @property
    def config(self) -> BaseModel: ...

    @property
    def nbytes(self) -> int: ...

    def fit(self, data: RatingsData) -> Any: ...

    def predict(self, user_ids: Any, movie_ids: Any) -> np.ndarray: ...

    def recommend(
        self, user_id: str, n: int = 20, exclude_seen: bool = True
    ) -> tuple[list[str], np.ndarray]: ...

    def recommend_batch(
        self, user_ids: Any, n: int = 20, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def known_user(self, user_id: str) -> bool: ...

    def popular(self, n: int) -> list[str]: ...

    def save(self, path: str | Path) -> None: ...


def lookup(vocab: np.ndarray, ids: Any) -> np.ndarray:
    """Index of each id in the sorted `vocab`, or -1 when unknown (vectorised binary search)."""
    ids = np.asarray(ids).astype(str).ravel()
    if len(vocab) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(vocab, ids)
    pos_c = np.minimum(pos, len(vocab) - 1)
    return np.where(vocab[pos_c] == ids, pos_c, -1).astype(np.int64)


def compact_codes(codes: np.ndarray, vocab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vocabulary entries no row uses; return (used vocab, remapped int32 codes)."""
    used = np.bincount(codes, minlength=len(vocab)) > 0
    remap = np.cumsum(used, dtype=np.int64) - 1
    return vocab[used], remap[codes].astype(np.int32)


class SingleFromBatch:
    """`recommend` for one user as the first row of `recommend_batch`, minus unfilled slots."""

    def recommend_batch(
        self, user_ids: Any, n: int = 20, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def recommend(
        self, user_id: str, n: int = 20, exclude_seen: bool = True
    ) -> tuple[list[str], np.ndarray]:
        ids, scores = self.recommend_batch([user_id], n, exclude_seen)
        keep = ids[0] != ""
        return [str(x) for x in ids[0][keep]], scores[0][keep]
