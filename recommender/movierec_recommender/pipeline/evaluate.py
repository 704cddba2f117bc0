"""Offline evaluation on the holdout: rating error, top-k ranking quality, coverage and fairness."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from movierec_recommender.data import RatingsData
from movierec_recommender.pipeline.demographics import Groups

if TYPE_CHECKING:
    from movierec_recommender.models import Recommender

log = logging.getLogger(__name__)

FAIRNESS = "fairness_ratio"


def group_ratio(scores: Mapping[str, float]) -> float | None:
    """Worst group's score over the best group's; None with fewer than two groups or no signal."""
    if len(scores) < 2:
        return None
    best = max(scores.values())
    if not best > 0:
        return None
    return float(min(scores.values()) / best)


def fairness_metrics(
    model: Recommender,
    train: RatingsData,
    test: RatingsData,
    groups: Groups,
    *,
    k: int = 10,
    min_group_users: int = 5,
) -> dict[str, float]:
    """NDCG@k per demographic group of test users; ``fairness_ratio_<attribute>`` = worst / best,
    ``fairness_ratio`` = the lowest over attributes. Empty when no attribute has two groups."""
    from movierec_recommender.evaluation import ranking_metrics

    key = f"ndcg@{k}"
    test_users = test.user_ids.astype(str)
    out: dict[str, float] = {}
    for attribute, members in groups.items():
        labels = np.array([members.get(u, "") for u in test_users], dtype=object)
        per_group: dict[str, float] = {}
        for label in sorted({m for m in labels if m}):
            mask = labels == label
            if len(np.unique(test_users[mask])) < min_group_users:
                continue
            per_group[label] = float(ranking_metrics(model, train, test.take(mask), k=k)[key])
        ratio = group_ratio(per_group)
        log.debug("%s by %s: %s -> ratio %s", key, attribute, per_group, ratio)
        if ratio is not None:
            out[f"{FAIRNESS}_{attribute}"] = ratio
    if out:
        out[FAIRNESS] = min(out.values())
    return out


def evaluate_model(
    model: Recommender,
    train: RatingsData,
    test: RatingsData,
    groups: Groups,
    *,
    k: int = 10,
    min_group_users: int = 5,
) -> dict[str, float]:
    """rmse, mae, precision/recall/ndcg@k, coverage, popular_share, ranked_users and (when user
    metadata exists) fairness."""
    from movierec_recommender.evaluation import ranking_metrics, rating_metrics

    predictions = np.asarray(model.predict(test.user_ids, test.movie_ids), dtype=np.float64)
    metrics: dict[str, float] = {
        k_: float(v) for k_, v in rating_metrics(test.ratings, predictions).items()
    }
    ranking = ranking_metrics(model, train, test, k=k)
    metrics.update({k_: float(v) for k_, v in ranking.items()})
    # the ranking metrics' sample size: test users with a relevant movie
    metrics["ranked_users"] = float(len(np.unique(test.user_ids[test.ratings >= 4.0])))
    metrics.update(
        fairness_metrics(model, train, test, groups, k=k, min_group_users=min_group_users)
    )
    return metrics
