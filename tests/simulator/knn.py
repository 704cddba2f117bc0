"""Small dense baselines for the learnability checks: item-item kNN ratings, user-kNN ranking."""

from __future__ import annotations

import numpy as np


def split(n: int, test_share: float, seed: int) -> np.ndarray:
    """A boolean test mask over n ratings."""
    return np.random.default_rng(seed).random(n) < test_share


def item_knn_rmse(
    users: np.ndarray,
    movies: np.ndarray,
    stars: np.ndarray,
    *,
    test: np.ndarray,
    shape: tuple[int, int],
    k: int = 30,
) -> tuple[float, float]:
    """(global-mean RMSE, item-item kNN RMSE) on the test ratings."""
    train = ~test
    mu = float(stars[train].mean())
    X = np.zeros(shape)
    X[users[train], movies[train]] = stars[train]
    seen = X > 0
    user_mean = np.where(seen.any(1), X.sum(1) / np.maximum(seen.sum(1), 1), mu)
    Xc = np.where(seen, X - user_mean[:, None], 0.0)
    norms = np.sqrt((Xc**2).sum(0))
    S = (Xc.T @ Xc) / np.maximum(np.outer(norms, norms), 1e-9)
    np.fill_diagonal(S, 0.0)
    preds = []
    for u, m in zip(users[test], movies[test], strict=True):
        rated = np.flatnonzero(seen[u])
        sims = S[m, rated]
        top = np.argsort(-sims)[:k]
        sims, top_items = sims[top], rated[top]
        pos = sims > 0
        if not pos.any():
            preds.append(user_mean[u])
            continue
        preds.append(user_mean[u] + sims[pos] @ Xc[u, top_items[pos]] / sims[pos].sum())
    y = stars[test]
    base = float(np.sqrt(((y - mu) ** 2).mean()))
    knn = float(np.sqrt(((y - np.clip(preds, 1, 5)) ** 2).mean()))
    return base, knn


def precision_at_10(
    users: np.ndarray, movies: np.ndarray, test: np.ndarray, shape: tuple[int, int]
) -> tuple[float, float]:
    """(most-popular precision@10, user-kNN precision@10) for held-out interactions."""
    train = ~test
    X = np.zeros(shape)
    X[users[train], movies[train]] = 1.0
    popularity = X.sum(0)
    norms = np.sqrt(X.sum(1))
    S = (X @ X.T) / np.maximum(np.outer(norms, norms), 1e-9)
    np.fill_diagonal(S, 0.0)
    held: dict[int, set[int]] = {}
    for u, m in zip(users[test], movies[test], strict=True):
        held.setdefault(int(u), set()).add(int(m))
    pop_hits, knn_hits = [], []
    for u, items in held.items():
        scores = popularity.copy()
        scores[X[u] > 0] = -1
        pop_hits.append(len(items & set(np.argsort(-scores)[:10].tolist())) / 10)
        neighbours = np.argsort(-S[u])[:50]
        scores = S[u, neighbours] @ X[neighbours]
        scores[X[u] > 0] = -1
        knn_hits.append(len(items & set(np.argsort(-scores)[:10].tolist())) / 10)
    return float(np.mean(pop_hits)), float(np.mean(knn_hits))
