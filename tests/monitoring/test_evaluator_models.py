"""The evaluator loads each served version for online RMSE: from the real MLflow server by
(model name, version) as provenance names them, or from a local folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from movierec_recommender import registry
from movierec_recommender.data import RatingsData
from movierec_recommender.models import build_model, load_model
from movierec_recommender.online.service import ModelCache
from movierec_recommender.pipeline.lineage import snapshot

from harness.session import MlflowNames

USERS = [str(u) for u in range(1, 41)]


@pytest.fixture(scope="module")
def data() -> RatingsData:
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(1, 41), 12).astype(str)
    movies = (rng.integers(0, 30, len(users))).astype(str)
    ratings = rng.integers(1, 6, len(users)).astype(float)
    return RatingsData.from_arrays(users, movies, ratings)


def test_versions_load_from_mlflow_and_failures_are_remembered(
    data: RatingsData, mlflow_uri: str, mlflow_names: MlflowNames, tmp_path: Path
) -> None:
    model = build_model("item-item").fit(data)
    version = registry.log_and_register(
        model,
        snapshot(data),
        {"rmse": 1.0},
        mlflow_names.model,
        mlflow_uri,
        experiment=mlflow_names.experiment,
    )
    cache = ModelCache({}, mlflow_uri)
    predict = cache(mlflow_names.model, version)
    assert predict is not None
    movies = ["1", "2", "3"]
    np.testing.assert_allclose(predict(USERS[:3], movies), model.predict(USERS[:3], movies))
    assert cache(mlflow_names.model, version) is predict  # loaded once
    # a version that does not exist costs one attempt, then waits for the retry period
    assert cache(mlflow_names.model, "999") is None
    assert (mlflow_names.model, "999") in cache._failed
    # provenance of a local model names no registered version
    assert cache("unknown", "unknown") is None


def test_local_folders_by_version(data: RatingsData, tmp_path: Path) -> None:
    build_model("user-user").fit(data).save(tmp_path / "m")
    cache = ModelCache({"3": str(tmp_path / "m")}, None)
    predict = cache("movies", "3")
    assert predict is not None
    expected = load_model(tmp_path / "m").predict(USERS[:2], ["1", "2"])
    np.testing.assert_allclose(predict(USERS[:2], ["1", "2"]), expected)
    assert cache("movies", "4") is None  # neither a folder nor MLflow
