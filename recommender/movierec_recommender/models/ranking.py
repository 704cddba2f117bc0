"""Ranking scorers for top-N lists: EASE item weights and cosine neighbour graphs on ratings.

The rating predictor (knn.py) is built for the error of one predicted rating: shrunk, baseline
-centred similarities. A top-N list needs something else: which unseen movies the user's ratings
point to at all. Both scorers here work on the rating-valued interaction matrix X (users x
movies, the raw ratings, no centring) and produce a ranking graph R whose row e holds the
weighted neighbours of entity e (a movie for item-item, a user for user-user):

- item-item, EASE (Steck 2019): B = argmin |X - XB|^2 + lambda |B|^2 with diag(B) = 0, in
  closed form from P = (X^T X + lambda I)^-1: B_ij = -P_ij / P_jj. R = B^T pruned to the
  `ease_neighbors` largest |w| per movie. score(u, i) = sum_j x_uj R_ij.
- cosine graph (user-user always, item-item on catalogues too large for a dense inverse):
  cosine of the rating vectors, no shrinkage, top `rank_neighbors` per row, raised to
  `rank_power` (sharpens towards the closest neighbours). score(u, i) = sum_v R_uv x_vi
  (user-user) or sum_j x_uj R_ij (item-item): summed similarity.

Scores are then divided by (ratings of the movie)^rank_popularity (popularity damping).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from movierec_recommender.models.similarity import topk_cosine

log = logging.getLogger(__name__)


def ease_graph(X: sp.csr_matrix, l2: float, k: int) -> sp.csr_matrix:
    """EASE weights of the movies (columns of X) as a ranking graph: row i = weights into i.

    `l2` multiplies the mean diagonal of X^T X, so the same value suits 64k and 80k ratings.
    """
    n = X.shape[1]
    G = np.asarray((X.T @ X).toarray(), dtype=np.float64)
    diag = np.diag(G).copy()
    lam = l2 * float(diag.mean()) if n else 0.0
    G[np.diag_indices(n)] = diag + max(lam, 1e-9)
    P = np.linalg.inv(G)
    B = P / -np.diag(P)[None, :]  # column j divided by -P_jj
    np.fill_diagonal(B, 0.0)
    del G, P
    return topk_abs(np.ascontiguousarray(B.T), k)


def topk_abs(W: np.ndarray, k: int) -> sp.csr_matrix:
    """The k entries of largest magnitude in each row of a dense matrix, signed, as sorted CSR."""
    rows, n = W.shape
    k = min(k, n)
    if k < n:
        idx = np.argpartition(-np.abs(W), k - 1, axis=1)[:, :k]
    else:
        idx = np.broadcast_to(np.arange(n), (rows, n))
    idx = np.sort(idx, axis=1)
    vals = np.take_along_axis(W, idx, axis=1)
    keep = vals != 0
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return sp.csr_matrix(
        (vals[keep].astype(np.float32), idx[keep].astype(np.int32), indptr), shape=(rows, n)
    )


def cosine_graph(
    rows: sp.csr_matrix,
    k: int,
    power: float,
    *,
    candidates: np.ndarray | None = None,
    chunk_nnz: int = 20_000_000,
) -> sp.csr_matrix:
    """Top-k cosine neighbours of each row of `rows` (rating vectors), similarities ** power."""
    R = topk_cosine(rows, k=k, candidates=candidates, chunk_nnz=chunk_nnz)
    if power != 1.0:
        R.data = np.power(R.data, np.float32(power))
    return R
