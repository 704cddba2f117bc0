"""Tuning the ranking scorer on a validation split carved from the training data (never the test).

`tune_ranking(algo, train)` holds out a seeded random share of the *training* ratings, fits each
grid point on the rest, keeps the config with the best validation NDCG@10 and returns it with
the table of every point tried. The caller then fits that config on the whole training data.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from movierec_recommender.data import RatingsData
from movierec_recommender.models.config import KNNConfig

log = logging.getLogger(__name__)

# the grids around the defaults (docs/models.md, "How the defaults were chosen")
GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "item-item": {"ease_l2": (6.0, 12.0, 24.0), "rank_popularity": (0.0, 0.1, 0.2)},
    "user-user": {
        "rank_neighbors": (50, 100, 200),
        "rank_power": (1.0, 2.0, 3.0),
        "rank_popularity": (0.0, 0.1, 0.2),
    },
}


class TuningResult(BaseModel):
    """The chosen config and the validation score of every grid point (for the log)."""

    model_config = ConfigDict(frozen=True)

    config: KNNConfig
    metric: str
    best: float
    trials: list[tuple[dict[str, Any], float]]


def validation_split(
    train: RatingsData, fraction: float = 0.2, seed: int = 0
) -> tuple[RatingsData, RatingsData]:
    """(fit, validation): a seeded random `fraction` of the training rows is the validation set."""
    n = len(train)
    n_val = min(n - 1, max(1, round(n * fraction))) if n > 1 else 0
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return train.take(~mask), train.take(mask)


def tune_ranking(
    algo: str,
    train: RatingsData,
    base: KNNConfig | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    k: int = 10,
) -> TuningResult:
    """Grid search of the ranking scorer's knobs by NDCG@k on a validation split of `train`."""
    from movierec_recommender.evaluation import ranking_metrics
    from movierec_recommender.models import build_model

    base = base or KNNConfig()
    grid = GRIDS[algo] if grid is None else grid
    fit, val = validation_split(train, fraction, seed)
    metric = f"ndcg@{k}"
    trials: list[tuple[dict[str, Any], float]] = []
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values, strict=True))
        model = build_model(algo, base.model_copy(update=params)).fit(fit)
        score = float(ranking_metrics(model, fit, val, k=k)[metric])
        trials.append((params, score))
        log.debug("%s %s: validation %s %.4f", algo, params, metric, score)
    best_params, best = max(trials, key=lambda t: t[1]) if trials else ({}, float("nan"))
    log.info("%s: best validation %s %.4f at %s", algo, metric, best, best_params)
    return TuningResult(
        config=base.model_copy(update=best_params), metric=metric, best=best, trials=trials
    )
