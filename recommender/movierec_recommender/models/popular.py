"""Most-popular baseline: ranks movies by rating count and predicts the global mean rating."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from movierec_recommender.data import RatingsData
from movierec_recommender.models.base import SingleFromBatch
from movierec_recommender.vocabulary import Vocabulary


class PopularConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MostPopular(SingleFromBatch):
    """The baseline every personalised model must beat: same top-N list for everyone."""

    algo = "popular"

    def __init__(self, config: PopularConfig | None = None) -> None:
        self._config = config or PopularConfig()
        self.users = Vocabulary()
        self.items = Vocabulary()
        self.counts = np.empty(0, dtype=np.int64)
        self.mu = 0.0
        self._seen: Any = None

    @property
    def config(self) -> PopularConfig:
        return self._config

    @property
    def nbytes(self) -> int:
        return int(self.items.ids.nbytes + self.counts.nbytes + self.users.ids.nbytes)

    def fit(self, data: RatingsData) -> MostPopular:
        import scipy.sparse as sp

        self.users, u = data.user_vocab.compact(data.user_codes)
        self.items, i = data.movie_vocab.compact(data.movie_codes)
        self.counts = np.bincount(i, minlength=len(self.items)).astype(np.int64)
        self.mu = float(np.mean(data.ratings, dtype=np.float64))
        self._seen = sp.csr_matrix(
            (np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(self.users), len(self.items))
        )
        return self

    def _order(self) -> np.ndarray:
        return np.argsort(-self.counts, kind="stable")

    def popular(self, n: int) -> list[str]:
        return [str(x) for x in self.items.id(self._order()[:n])]

    def known_user(self, user_id: str) -> bool:
        return user_id in self.users

    def predict(self, user_ids: Any, movie_ids: Any) -> np.ndarray:
        return np.full(len(np.asarray(user_ids).ravel()), self.mu)

    def recommend_batch(
        self, user_ids: Any, n: int = 20, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        u = self.users.index(user_ids)
        n = min(n, len(self.items))
        score = self.counts.astype(np.float64)
        scores = np.tile(score, (len(u), 1))
        if exclude_seen and self._seen is not None:
            known = np.flatnonzero(u >= 0)
            seen = self._seen[u[known]]
            scores[
                known[np.repeat(np.arange(len(known)), np.diff(seen.indptr))], seen.indices
            ] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        top_scores = np.take_along_axis(scores, top, axis=1)
        ids = np.where(np.isneginf(top_scores), "", self.items.id(top))
        return ids, top_scores

    def save(self, path: str | Path) -> None:
        raise NotImplementedError("the most-popular baseline is for evaluation only")
