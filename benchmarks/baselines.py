"""Reference top-N recommenders for the offline benchmark: plain cosine kNN, numpy EASE, implicit.

Each fits on `RatingsData` and answers `recommend_batch(user_ids, n, exclude_seen)` like our
models (ids, scores; "" for unfillable slots), on the binary interaction matrix (rated = 1), as
the published versions of these methods do. None predicts ratings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from movierec_recommender.data import RatingsData


class _Binary:
    """Vocabularies and the binary users x movies matrix; subclasses give `_scores(rows)`."""

    name = ""

    def fit(self, data: RatingsData) -> Any:
        self.users, u = np.unique(data.user_ids, return_inverse=True)
        self.items, i = np.unique(data.movie_ids, return_inverse=True)
        X = sp.csr_matrix(
            (np.ones(len(u), dtype=np.float32), (u, i)), shape=(len(self.users), len(self.items))
        )
        X.data[:] = 1.0  # duplicate pairs summed: back to "rated"
        self.X = X
        self.counts = np.asarray(X.sum(axis=0)).ravel()
        self._fit(X)
        return self

    def _fit(self, X: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def recommend_batch(
        self, user_ids: Any, n: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(user_ids).astype(str)
        pos = np.minimum(np.searchsorted(self.users, ids), len(self.users) - 1)
        known = self.users[pos] == ids
        scores = np.tile(self.counts.astype(np.float64) * 1e-9, (len(ids), 1))  # unknown: popular
        if known.any():
            rows = pos[known]
            scores[known] = self._scores(rows) + scores[known]
            if exclude_seen:
                seen = self.X[rows]
                r = np.flatnonzero(known)[np.repeat(np.arange(len(rows)), np.diff(seen.indptr))]
                scores[r, seen.indices] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :n]
        top_scores = np.take_along_axis(scores, top, axis=1)
        return np.where(np.isneginf(top_scores), "", self.items[top]), top_scores


def _topk_rows(S: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(S)
    if k < S.shape[1]:
        idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
        np.put_along_axis(out, idx, np.take_along_axis(S, idx, axis=1), axis=1)
        return out
    return S


class CosineKNN(_Binary):
    """Plain cosine kNN on the binary matrix, k neighbours, scored by summed similarity."""

    def __init__(self, kind: str = "item", k: int = 40) -> None:
        self.kind, self.k = kind, k
        self.name = f"plain cosine {kind} kNN (k={k}, binary)"

    def _fit(self, X: sp.csr_matrix) -> None:
        M = X.T.tocsr() if self.kind == "item" else X  # rows = entities that get neighbours
        G = np.asarray((M @ M.T).toarray(), dtype=np.float64)
        norms = np.sqrt(np.diag(G))
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        S = G * inv[:, None] * inv[None, :]
        np.fill_diagonal(S, 0.0)
        self.S = _topk_rows(S, self.k)

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        if self.kind == "item":  # sum over the user's movies j of sim(i, j)
            return np.asarray(self.X[rows] @ self.S.T)
        return np.asarray(self.X.T.dot(self.S[rows].T).T)  # sum over neighbours v of sim(u, v)


class EASE(_Binary):
    """EASE (Steck 2019) on the binary matrix with an absolute ridge penalty `lam`."""

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam
        self.name = f"numpy EASE (lambda={lam:g}, binary)"

    def _fit(self, X: sp.csr_matrix) -> None:
        G = np.asarray((X.T @ X).toarray(), dtype=np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / -np.diag(P)[None, :]
        np.fill_diagonal(B, 0.0)
        self.B = B

    def _scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[rows] @ self.B)


class ImplicitItemKNN(_Binary):
    """`implicit`'s CosineRecommender (item kNN, K neighbours) on the binary matrix."""

    def __init__(self, k: int = 40) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        self.model = CosineRecommender(K=k)
        self.name = f"implicit CosineRecommender (item kNN, K={k}, binary)"

    def _fit(self, X: sp.csr_matrix) -> None:
        self.model.fit(X, show_progress=False)

    def recommend_batch(
        self, user_ids: Any, n: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(user_ids).astype(str)
        pos = np.minimum(np.searchsorted(self.users, ids), len(self.users) - 1)
        known = self.users[pos] == ids
        order = np.argsort(-self.counts, kind="stable")[:n]
        out_ids = np.tile(self.items[order], (len(ids), 1))
        out_scores = np.zeros((len(ids), n))
        if known.any():
            rows = pos[known]
            idx, sc = self.model.recommend(
                rows, self.X[rows], N=n, filter_already_liked_items=exclude_seen
            )
            filled = idx >= 0
            out_ids[known] = np.where(filled, self.items[np.maximum(idx, 0)], "")
            out_scores[known] = np.where(filled, sc, -np.inf)
        return out_ids, out_scores


def implicit_available() -> str | None:
    """None when `implicit` imports, else the reason."""
    try:
        import implicit  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None
