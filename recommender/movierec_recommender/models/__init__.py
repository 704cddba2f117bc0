"""Recommendation models: `build_model(algo, config)` and `load_model(dir)` (see docs/models.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from movierec_recommender.models.base import Recommender
from movierec_recommender.models.config import KNNConfig
from movierec_recommender.models.integrity import check_knn
from movierec_recommender.models.knn import ItemItemKNN, KNNRecommender, UserUserKNN
from movierec_recommender.models.popular import MostPopular

ALGOS: dict[str, type[KNNRecommender]] = {"user-user": UserUserKNN, "item-item": ItemItemKNN}

__all__ = [
    "ALGOS",
    "ItemItemKNN",
    "KNNConfig",
    "MostPopular",
    "Recommender",
    "UserUserKNN",
    "build_model",
    "load_model",
]


def build_model(algo: str, config: KNNConfig | dict[str, Any] | None = None) -> KNNRecommender:
    """A fresh, unfitted model; `config` may be a KNNConfig or a dict of its fields."""
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {', '.join(ALGOS)}")
    if isinstance(config, dict):
        config = KNNConfig.model_validate(config)
    return ALGOS[algo](config)


def load_model(path: str | Path, mmap: bool = True) -> KNNRecommender:
    """Load a model written by `save(dir)`; arrays are memory-mapped unless `mmap=False`."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no model at {path} (meta.json missing)")
    meta = json.loads(meta_file.read_text())
    algo = meta.get("algo")
    if algo not in ALGOS:
        raise ValueError(f"{meta_file}: unknown algo {algo!r}")
    model = ALGOS[algo]._load(path, meta, mmap=mmap)
    # Arrays are wrapped without scipy's checks: validate them all before anything uses them.
    check_knn(model)
    return model
