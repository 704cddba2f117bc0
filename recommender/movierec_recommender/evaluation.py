"""Offline evaluation: time-based split, rating error (RMSE, MAE) and top-N ranking metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from movierec_recommender.data import RatingsData

_RANK_BATCH = 2048  # users per recommend_batch call
POPULAR_SHARE = 0.05  # "popular" = the most-rated 5% of the training catalogue (as online)


def time_split(
    data: RatingsData, test_fraction: float = 0.2, seed: int = 0
) -> tuple[RatingsData, RatingsData]:
    """(train, test): the latest `test_fraction` of ratings in global time order are the test set.

    Without timestamps the split is a seeded random permutation. Ties in time keep input order.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    # at least one rating on each side once there are two
    n_test = min(n - 1, max(1, round(n * test_fraction))) if n > 1 else 0
    if data.timestamps is not None:
        order = np.argsort(data.timestamps, kind="stable")
    else:
        order = np.random.default_rng(seed).permutation(n)
    test_mask = np.zeros(n, dtype=bool)
    test_mask[order[n - n_test :]] = True
    return data.take(~test_mask), data.take(test_mask)


def rating_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """{"rmse", "mae"} of predictions against true ratings."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    if len(t) == 0:
        return {"rmse": float("nan"), "mae": float("nan")}
    err = p - t
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def ranking_metrics(
    model: Any,
    train: RatingsData,
    test: RatingsData,
    k: int = 10,
    relevance_threshold: float = 4.0,
) -> dict[str, float]:
    """precision@k, recall@k, NDCG@k (binary relevance: test rating >= threshold), coverage and
    popular_share.

    Every movie is a candidate (seen ones excluded by the model). Users are those with at least
    one relevant test rating, including users unknown to the model (they get its fallback).
    Coverage = distinct movies recommended / movies in the training catalogue; popular_share =
    share of the filled slots given to the most-rated 5% of the training catalogue (the online
    evaluator's definition), so accuracy bought by a popularity collapse shows.
    """
    rel = test.ratings >= relevance_threshold
    rel_users = np.unique(test.user_ids[rel])
    out = {
        f"precision@{k}": 0.0,
        f"recall@{k}": 0.0,
        f"ndcg@{k}": 0.0,
        "coverage": 0.0,
        "popular_share": 0.0,
    }
    if len(rel_users) == 0:
        return out
    # relevant (user, movie) pairs as sorted string keys for a vectorised membership test
    rel_user_ids = test.user_ids[rel]
    rel_keys, first = np.unique(_pair_keys(rel_user_ids, test.movie_ids[rel]), return_index=True)
    n_rel = np.unique(rel_user_ids[first], return_counts=True)[1].astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    counts = np.bincount(train.movie_codes, minlength=len(train.movie_vocab))
    n_popular = max(1, round(POPULAR_SHARE * int((counts > 0).sum())))
    popular = np.sort(train.movie_vocab.id(np.argsort(-counts, kind="stable")[:n_popular]))
    hits_sum = ndcg_sum = recall_sum = 0.0
    popular_slots = filled_slots = 0
    recommended: list[np.ndarray] = []
    for a in range(0, len(rel_users), _RANK_BATCH):
        users = rel_users[a : a + _RANK_BATCH]
        ids, _ = model.recommend_batch(users, n=k, exclude_seen=True)
        ids = np.asarray(ids)
        if ids.shape[1] < k:  # tiny catalogues
            ids = np.pad(ids, ((0, 0), (0, k - ids.shape[1])), constant_values="")
        keys = _pair_keys(np.repeat(users, k), ids.ravel())
        pos = np.minimum(np.searchsorted(rel_keys, keys), len(rel_keys) - 1)
        hit = ((rel_keys[pos] == keys) & (ids.ravel() != "")).reshape(len(users), k)
        nr = n_rel[a : a + _RANK_BATCH]
        hits = hit.sum(axis=1)
        hits_sum += float(hits.sum())
        recall_sum += float((hits / nr).sum())
        dcg = (hit * discounts).sum(axis=1)
        ndcg_sum += float((dcg / ideal[np.minimum(nr, k).astype(int) - 1]).sum())
        filled = ids[ids != ""]
        recommended.append(np.unique(filled))
        filled_slots += len(filled)
        popular_slots += int(np.isin(filled, popular, assume_unique=False).sum())
    n_users = len(rel_users)
    catalogue = len(np.unique(train.movie_codes))
    covered = len(np.unique(np.concatenate(recommended))) if recommended else 0
    out[f"precision@{k}"] = hits_sum / (n_users * k)
    out[f"recall@{k}"] = recall_sum / n_users
    out[f"ndcg@{k}"] = ndcg_sum / n_users
    out["coverage"] = covered / max(1, catalogue)
    out["popular_share"] = popular_slots / max(1, filled_slots)
    return out


def _pair_keys(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    # "\x1f" (unit separator) cannot appear in a user id or a movie slug
    return np.char.add(np.char.add(users.astype(str), "\x1f"), movies.astype(str))


def evaluate(model: Any, train: RatingsData, test: RatingsData, k: int = 10) -> dict[str, float]:
    """Rating and ranking metrics of a model fitted on `train`, measured on `test`."""
    pred = model.predict(test.user_ids, test.movie_ids)
    return {**rating_metrics(test.ratings, pred), **ranking_metrics(model, train, test, k=k)}
