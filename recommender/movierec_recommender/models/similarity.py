"""Top-k cosine similarities between the rows of a sparse matrix, in bounded-memory chunks.

For rows x_a, x_b (residuals over their raters), sim = <x_a, x_b> / (|x_a| |x_b|) — the adjusted
cosine when the residuals are baseline-centred — shrunk by co-support n / (n + shrinkage), dropped
below `min_support` co-raters, then pruned to the `k` largest per row. Every step is a sparse
product (sparse x dense when the right-hand side is small) or a flat numpy operation over a chunk
of rows; no Python loop visits a row.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)


def topk_dense(D: np.ndarray, k: int) -> sp.csr_matrix:
    """Top-k finite entries of each row of a dense block (-inf marks absent), as canonical CSR.

    A value-only `partition` finds each row's k-th largest value, a mask keeps what reaches it;
    rows with ties at the threshold fall back to `argpartition`. No Python loop over rows.
    """
    rows, n = D.shape
    k = min(k, n)
    if 0 < k < n:
        # select on -D with a small kth: numpy's introselect is far slower (10x measured) when
        # kth sits near the end of rows that are mostly one repeated value (-inf)
        kth = -np.partition(-D, k - 1, axis=1)[:, k - 1 : k]
        # a row with fewer than k finite entries has kth = -inf: lift it so -inf never passes
        np.maximum(kth, np.finfo(np.float32).min, out=kth)
        mask = kth <= D
        over = np.count_nonzero(mask, axis=1) > k
        if over.any():
            sub = np.argpartition(-D[over], k - 1, axis=1)[:, :k]
            fix = np.zeros((int(over.sum()), n), dtype=bool)
            np.put_along_axis(fix, sub, True, axis=1)
            mask[over] = fix & np.isfinite(D[over])
    else:
        mask = np.isfinite(D) if k else np.zeros(D.shape, dtype=bool)
    r, c = np.nonzero(mask)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
    return sp.csr_matrix((D[r, c].astype(np.float32), c.astype(np.int32), indptr), (rows, n))


def _rhs(M: sp.csr_matrix, dense: bool) -> np.ndarray | sp.csr_matrix:
    """M^T as the right-hand operand of the chunk products: a dense array or a CSR matrix."""
    if dense:
        out = np.zeros((M.shape[1], M.shape[0]), dtype=np.float32)
        out[M.indices, np.repeat(np.arange(M.shape[0]), np.diff(M.indptr))] = M.data
        return out
    return M.T.tocsr()


def _block(rows: sp.csr_matrix, rhs: np.ndarray | sp.csr_matrix, width: int) -> np.ndarray:
    """rows @ rhs as a dense float32 (rows x width) block (absent = 0)."""
    if isinstance(rhs, np.ndarray):
        return np.asarray(rows @ rhs, dtype=np.float32)
    S = sp.csr_matrix(rows @ rhs)
    D = np.zeros((S.shape[0], width), dtype=np.float32)
    D[np.repeat(np.arange(S.shape[0]), np.diff(S.indptr)), S.indices] = S.data
    return D


def _gram(M: sp.csr_matrix, MT: np.ndarray, parts: int = 4) -> np.ndarray:
    """M @ MT (MT = M^T, dense) as a dense float32 array, from block rows of its upper triangle.

    Block row r is multiplied only against columns from its own start on, and the part left of
    it is copied from the transpose of blocks already done: about 5/8 of the multiply-adds of
    the full product with 4 block rows.
    """
    n = M.shape[0]
    out = np.empty((n, n), dtype=np.float32)
    cuts = np.linspace(0, n, parts + 1).astype(np.int64)
    for a, b in itertools.pairwise(cuts):
        out[a:b, a:] = M[a:b] @ MT[:, a:]
        out[a:b, :a] = out[:a, a:b].T
    return out


def cap_row_entries(X: sp.csr_matrix, cap: int) -> sp.csr_matrix:
    """Keep at most `cap` entries per row, chosen by a fixed hash of the column (deterministic)."""
    counts = np.diff(X.indptr)
    if counts.max(initial=0) <= cap:
        return X
    rows = np.repeat(np.arange(X.shape[0]), counts)
    # Knuth multiplicative hash: a reproducible pseudo-random order inside each row
    h = (X.indices.astype(np.uint64) * np.uint64(2654435761) + rows.astype(np.uint64)) % np.uint64(
        2**32
    )
    order = np.lexsort((h, rows))
    rank = np.arange(len(order)) - np.repeat(X.indptr[:-1], counts)
    keep = np.sort(order[rank < cap])
    return sp.csr_matrix(
        (X.data[keep], X.indices[keep], np.r_[0, np.cumsum(np.minimum(counts, cap))]),
        shape=X.shape,
    )


def topk_cosine(
    X: sp.csr_matrix,
    k: int,
    *,
    shrinkage: float = 0.0,
    min_support: int = 1,
    min_similarity: float = 0.0,
    candidates: np.ndarray | None = None,
    chunk_nnz: int = 20_000_000,
) -> sp.csr_matrix:
    """Similarity graph of X's rows: an (n x n) float32 CSR with at most k entries a row.

    `candidates` (sorted row indices) restricts who may be a neighbour; `None` means every row.
    Self-similarity is excluded; only similarities strictly above `min_similarity` are kept.
    """
    n = X.shape[0]
    X = sp.csr_matrix(X, dtype=np.float32)
    X.sum_duplicates()
    row_of = np.repeat(np.arange(n), np.diff(X.indptr))
    norms = np.sqrt(np.bincount(row_of, weights=X.data.astype(np.float64) ** 2, minlength=n))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    Xn = sp.csr_matrix(((X.data * inv[row_of]).astype(np.float32), X.indices, X.indptr), X.shape)
    B = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), X.indices, X.indptr), X.shape)
    cand = np.arange(n) if candidates is None else np.asarray(candidates, dtype=np.int64)
    need_support = shrinkage > 0 or min_support > 1
    # The right-hand operand (contexts x candidates): dense when it is small (MovieLens-100K-sized
    # catalogues), so each chunk is one sparse x dense product straight into the dense block,
    # which costs far less than scipy's sparse x sparse product plus the scatter into a block.
    dense_rhs = X.shape[1] * len(cand) <= chunk_nnz
    XnT = _rhs(Xn if candidates is None else Xn[cand], dense_rhs)
    BT = _rhs(B if candidates is None else B[cand], dense_rhs) if need_support else None
    # rows per chunk so that one dense (rows x candidates) block stays within chunk_nnz cells
    step = max(1, chunk_nnz // max(1, len(cand)))
    parts = []
    # one block holding every pair of a symmetric product: compute its upper triangle only
    whole = candidates is None and dense_rhs and step >= n
    for a in range(0, n, step):
        b = min(n, a + step)
        D = _gram(Xn, XnT) if whole else _block(Xn[a:b], XnT, len(cand))
        if need_support:
            assert BT is not None
            support = _gram(B, BT) if whole else _block(B[a:b], BT, len(cand))
            drop = support < min_support
            if shrinkage > 0:
                # D *= n / (n + shrinkage), in place (blocks are large)
                D *= support
                support += np.float32(shrinkage)
                D /= support
            # absent pairs are 0 here; min_similarity >= 0 drops them with the weak ones
            drop |= min_similarity >= D
        else:
            drop = min_similarity >= D
        np.copyto(D, np.float32(-np.inf), where=drop)
        if candidates is None:
            D[np.arange(b - a), np.arange(a, b)] = -np.inf  # no self-similarity
        else:
            own = np.searchsorted(cand, np.arange(a, b))
            is_cand = own < len(cand)
            is_cand[is_cand] = cand[own[is_cand]] == np.arange(a, b)[is_cand]
            D[np.flatnonzero(is_cand), own[is_cand]] = -np.inf
        top = topk_dense(D, k)
        indices = top.indices if candidates is None else cand[top.indices].astype(np.int32)
        parts.append(sp.csr_matrix((top.data, indices, top.indptr), shape=(b - a, n)))
    log.debug("similarities: %d rows in chunks of %d", n, step)
    if not parts:
        return sp.csr_matrix((n, n), dtype=np.float32)
    out = sp.csr_matrix(sp.vstack(parts, format="csr"), dtype=np.float32)
    out.sort_indices()  # canonical: saved models are read-only memory maps scipy must not re-sort
    return out
