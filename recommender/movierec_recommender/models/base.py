"""The Recommender interface every model implements, and `recommend` from `recommend_batch`."""

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
